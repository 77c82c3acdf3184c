// An unmodified app on a real third-party OAuth library: openid-client 6, written as its
// README shows (discovery, PKCE, state and nonce, authorizationCodeGrant, fetchUserInfo).
// Its only par-sidecar-specific setting is a URL: the discovery document is read from the
// sidecar's egress listener instead of the AS.
//
// With `response_mode: "form_post"` in its config it asks for that mode and hands the
// callback POST to authorizationCodeGrant as a Request, as openid-client's API docs show
// ("Using an incoming Request instance": `currentUrl` is a URL or a Request).
//
// Usage: node openid-client-app.mjs CONFIG.json   (the same config as legacy-app.mjs, plus
// discovery_url, id_token_alg and optionally response_mode)
import fs from 'node:fs';
import http from 'node:http';
import crypto from 'node:crypto';
import * as client from 'openid-client';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const redirectUri = `${cfg.base_url}/callback`;
const sessions = new Map();
let config;

async function getConfig() {
  // Lazily: the sidecar may start after the app, as in a pod.
  config ??= await client.discovery(
    new URL(cfg.discovery_url),
    cfg.client_id,
    { client_secret: cfg.client_secret, id_token_signed_response_alg: cfg.id_token_alg },
    client.ClientSecretBasic(cfg.client_secret),
    { execute: [client.allowInsecureRequests] },
  );
  return config;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
  res.end(body);
}
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The callback as openid-client wants it: the URL, or for a form_post the POST itself. */
async function currentUrl(req, u) {
  if (req.method !== 'POST') return u;
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return new Request(u, { method: 'POST', headers: { 'content-type': req.headers['content-type'] || '' }, body: Buffer.concat(chunks) });
}

async function handle(req, res) {
  const u = new URL(req.url, cfg.base_url);
  const sid = /(?:^|;\s*)oc_sid=([^;]+)/.exec(req.headers.cookie || '')?.[1];
  if (u.pathname === '/') return send(res, 200, '<h1>openid-client app</h1><a href="/login">Log in</a>');
  if (u.pathname === '/login') {
    const c = await getConfig();
    const s = { verifier: client.randomPKCECodeVerifier(), state: client.randomState(), nonce: client.randomNonce() };
    const url = client.buildAuthorizationUrl(c, {
      redirect_uri: redirectUri,
      scope: cfg.scope || 'openid email',
      code_challenge: await client.calculatePKCECodeChallenge(s.verifier),
      code_challenge_method: 'S256',
      state: s.state,
      nonce: s.nonce,
      ...(cfg.response_mode ? { response_mode: cfg.response_mode } : {}),
    });
    const id = crypto.randomBytes(16).toString('hex');
    sessions.set(id, s);
    return send(res, 302, 'Redirecting...', { location: url.href, 'set-cookie': `oc_sid=${id}; Path=/; HttpOnly; SameSite=Lax` });
  }
  if (u.pathname === '/callback') {
    const s = sessions.get(sid);
    if (!s) return send(res, 400, '<p id="error">no session</p>');
    const c = await getConfig();
    let tokens;
    try {
      tokens = await client.authorizationCodeGrant(c, await currentUrl(req, u), { pkceCodeVerifier: s.verifier, expectedState: s.state, expectedNonce: s.nonce, idTokenExpected: true });
    } catch (e) {
      return send(res, 400, `<p id="error">${esc(e.code || e.name)}: ${esc(e.message)}</p>`);
    }
    const claims = tokens.claims();
    const info = await client.fetchUserInfo(c, tokens.access_token, claims.sub);
    return send(res, 200, `<h1>Welcome</h1><p id="sub">${esc(info.sub)}</p><p id="token-type">${esc(tokens.token_type)}</p><p id="callback-method">${esc(req.method)}</p>`);
  }
  return send(res, 404, 'not found');
}

http.createServer((req, res) => {
  handle(req, res).catch((e) => { console.error(e); send(res, 500, `<p id="error">app error: ${esc(e.message)}</p>`); });
}).listen(cfg.port, '127.0.0.1', () => console.log(`openid-client app on http://127.0.0.1:${cfg.port}`));
