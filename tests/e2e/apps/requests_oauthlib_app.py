"""An unmodified app on a real third-party OAuth library: Flask + requests-oauthlib 2.0.

Written as requests-oauthlib's "Web App Example of OAuth 2 web application flow" shows (a
Flask app: ``OAuth2Session(client_id)``, ``authorization_url(authorization_base_url)`` with
the state kept in the Flask session; at the callback a new ``OAuth2Session(client_id,
state=session['oauth_state'])`` and ``fetch_token(token_url, client_secret=...,
authorization_response=request.url)``; then ``OAuth2Session(client_id, token=...).get(...)``),
with explicit endpoints. The login's session gets ``redirect_uri`` and ``scope`` as the
"OAuth 2 Workflow" docs show (``OAuth2Session(client_id, redirect_uri=redirect_uri,
scope=scope)``); the callback's session, as in the Web App Example, has no redirect_uri, so
the token call sends none (the egress adds the pushed one, RFC 6749 section 4.1.3). The
token call authenticates with HTTP Basic (client_id, client_secret).

The "Web App Example" itself passes no ``redirect_uri`` at all: a FAPI 2.0 AS refuses such a
PAR ("missing required parameter 'redirect_uri'") and the sidecar does not guess one, so
that variant cannot log in; the login here keeps the workflow docs' ``redirect_uri=``.

par-sidecar-specific settings: only URLs. ``token_url`` and the userinfo URL are the egress
listener's routes; ``authorization_base_url`` is the AS's real one.

Usage: python requests_oauthlib_app.py CONFIG.json   (the config of tests/e2e/lib/stack.mjs)
"""
import html
import json
import os
import sys

from flask import Flask, redirect, request, session, url_for
from requests_oauthlib import OAuth2Session

cfg = json.load(open(sys.argv[1], encoding="utf-8"))

client_id = cfg["client_id"]
client_secret = cfg["client_secret"]
authorization_base_url = cfg["authorization_endpoint"]
token_url = cfg["token_endpoint"]
userinfo_url = cfg["userinfo_endpoint"]
redirect_uri = cfg["base_url"] + "/callback"
scope = ["openid"]

app = Flask(__name__)


@app.route("/")
def index():
    return '<h1>requests-oauthlib app</h1><a href="/login">Log in</a>'


@app.route("/login")
def demo():
    bank = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=scope)
    authorization_url, state = bank.authorization_url(authorization_base_url)
    session["oauth_state"] = state
    return redirect(authorization_url)


@app.route("/callback", methods=["GET"])
def callback():
    bank = OAuth2Session(client_id, state=session["oauth_state"])
    token = bank.fetch_token(token_url, client_secret=client_secret, authorization_response=request.url)
    session["oauth_token"] = token
    return redirect(url_for(".profile"))


@app.route("/profile", methods=["GET"])
def profile():
    bank = OAuth2Session(client_id, token=session["oauth_token"])
    info = bank.get(userinfo_url).json()
    return f'<h1>Welcome</h1><p id="sub">{html.escape(info["sub"])}</p>'


if __name__ == "__main__":
    # As the docs' example: plain http on a loopback address for the app behind the sidecar.
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    app.secret_key = os.urandom(24)
    app.run(host="127.0.0.1", port=cfg["port"])
