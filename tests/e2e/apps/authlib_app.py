"""An unmodified app on a real third-party OAuth library: Flask + Authlib 1.9.

Written as Authlib's "Flask OAuth Client" documentation shows (its OpenID Connect example:
``oauth = OAuth(app)``, ``oauth.register(name=..., server_metadata_url=..., client_kwargs=
{'scope': 'openid email profile'})``, ``authorize_redirect(url_for(..., _external=True))``,
``authorize_access_token()`` with ``token['userinfo']`` parsed from the ID token, then
``oauth.<name>.userinfo()``).

Its only par-sidecar-specific setting is one URL: ``server_metadata_url`` is the sidecar's
discovery document on the egress listener. Authlib lays the loaded metadata over explicit
endpoint kwargs, so pointing it at the AS's own document would send the back channel past the
sidecar; the rewritten document names the egress routes and keeps
``id_token_signing_alg_values_supported`` (joserfc refuses PS256 ID tokens without it).

Usage: python authlib_app.py CONFIG.json   (the config of tests/e2e/lib/stack.mjs)
"""
import html
import json
import os
import sys

from authlib.integrations.flask_client import OAuth
from flask import Flask, url_for

cfg = json.load(open(sys.argv[1], encoding="utf-8"))

app = Flask(__name__)
app.secret_key = os.urandom(24)
oauth = OAuth(app)
oauth.register(
    name="bank",
    client_id=cfg["client_id"],
    client_secret=cfg["client_secret"],
    server_metadata_url=cfg["discovery_url"],
    client_kwargs={"scope": "openid email profile"},
)


@app.route("/")
def homepage():
    return '<h1>Authlib app</h1><a href="/login">Log in</a>'


@app.route("/login")
def login():
    redirect_uri = url_for("auth", _external=True)
    return oauth.bank.authorize_redirect(redirect_uri)


@app.route("/callback")
def auth():
    token = oauth.bank.authorize_access_token()
    claims = token["userinfo"]
    profile = oauth.bank.userinfo()
    return (
        f'<h1>Welcome</h1><p id="sub">{html.escape(profile["sub"])}</p>'
        f'<p id="id-token-sub">{html.escape(claims["sub"])}</p>'
    )


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=cfg["port"])
