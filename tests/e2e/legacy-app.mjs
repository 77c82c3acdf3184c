// A small, unmodified "legacy" OAuth web app: plain authorization-code flow with query
// parameters, client_secret_basic at the token endpoint, no PAR, no JAR, no mTLS. It knows
// nothing about par-sidecar; only its URLs are configured (its public base URL, and where
// its back-channel calls go).
//
// Usage: node legacy-app.mjs CONFIG.json
//   { port, base_url, client_id, client_secret, authorization_endpoint,
//     token_endpoint?, userinfo_endpoint?, pkce: "none" | "S256" | "plain", scope?,
//     banks?: [{ name, client_id, client_secret, authorization_endpoint, token_endpoint,
//                userinfo_endpoint }] }
// With `banks`, the user picks their bank: GET /login?bank=NAME starts the login there (the
// same redirect_uri for every bank); the session remembers the bank, and the callback uses
// that bank's endpoints and client credentials. Without `banks`, the top-level settings are
// the one and only AS. Either way it stays a plain OAuth client.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const sessions = new Map();
const redirectUri = `${cfg.base_url}/callback`;
const banks = cfg.banks ? new Map(cfg.banks.map((b) => [b.name, b])) : null;
// What reached the app's own callback (test fixture, served at /__test/callbacks).
const callbacks = [];
/** The client settings for a session: its bank's, or the single top-level ones. */
const clientFor = (s) => (banks ? banks.get(s.bank) : cfg);

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
  res.end(body);
}
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function call(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method, headers }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const u = new URL(req.url, cfg.base_url);
  const sid = /(?:^|;\s*)legacy_sid=([^;]+)/.exec(req.headers.cookie || '')?.[1];
  if (u.pathname === '/') return send(res, 200, '<h1>Legacy app</h1><a href="/login">Log in</a>');
  if (u.pathname === '/__test/callbacks') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(callbacks));
  }
  if (u.pathname === '/login') {
    const id = crypto.randomUUID();
    const s = { state: crypto.randomBytes(16).toString('base64url'), nonce: crypto.randomBytes(16).toString('base64url') };
    if (banks) {
      s.bank = u.searchParams.get('bank');
      if (!banks.has(s.bank)) return send(res, 400, '<p id="error">unknown bank</p>');
    }
    const c = clientFor(s);
    const q = new URLSearchParams({
      response_type: 'code', client_id: c.client_id, redirect_uri: redirectUri,
      scope: cfg.scope || 'openid email', state: s.state, nonce: s.nonce,
    });
    if (cfg.response_mode) q.set('response_mode', cfg.response_mode);
    if (cfg.pkce === 'S256' || cfg.pkce === 'plain') {
      s.verifier = crypto.randomBytes(32).toString('base64url');
      q.set('code_challenge', cfg.pkce === 'S256' ? crypto.createHash('sha256').update(s.verifier).digest('base64url') : s.verifier);
      q.set('code_challenge_method', cfg.pkce);
    }
    sessions.set(id, s);
    return send(res, 302, 'Redirecting to the login page...', {
      location: `${c.authorization_endpoint}?${q}`,
      'set-cookie': `legacy_sid=${id}; Path=/; HttpOnly; SameSite=Lax`,
    });
  }
  if (u.pathname === '/callback') {
    const s = sessions.get(sid);
    // `response_mode=form_post`: the response is the POST body (OAuth 2.0 Form Post).
    const params = req.method === 'POST' && cfg.response_mode === 'form_post' ? new URLSearchParams(await readBody(req)) : u.searchParams;
    callbacks.push({ at: Date.now(), bank: s?.bank, method: req.method, query: Object.fromEntries(u.searchParams), form: req.method === 'POST' ? Object.fromEntries(params) : undefined });
    if (!s) return send(res, 400, '<p id="error">no session</p>');
    if (params.get('state') !== s.state) return send(res, 400, '<p id="error">state mismatch</p>');
    if (params.get('error')) return send(res, 200, `<p id="error">${esc(params.get('error'))}</p>`);
    const code = params.get('code');
    const c = clientFor(s);
    if (!c.token_endpoint) return send(res, 200, `<p id="code-received">yes</p>`);
    const form = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri });
    if (s.verifier) form.set('code_verifier', s.verifier);
    const basic = Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64');
    const tok = await call('POST', c.token_endpoint, { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' }, form.toString());
    if (tok.status !== 200) return send(res, 502, `<p id="error">token endpoint said ${tok.status}: ${esc(tok.body)}</p>`);
    const t = JSON.parse(tok.body);
    s.tokens = t;
    const ui = await call('GET', c.userinfo_endpoint, { authorization: `Bearer ${t.access_token}` });
    if (ui.status !== 200) return send(res, 502, `<p id="error">userinfo said ${ui.status}: ${esc(ui.body)}</p>`);
    const info = JSON.parse(ui.body);
    let resource = '';
    if (cfg.resource_url) {
      // A resource API call with the (certificate-bound) access token.
      const rs = await call('GET', cfg.resource_url, { authorization: `Bearer ${t.access_token}` });
      resource = `<p id="resource">${rs.status} ${esc(rs.status === 200 ? JSON.parse(rs.body).sub : rs.body)}</p>`;
    }
    // What kind of ID token the app got (parts and header alg; 3 and a JWS alg for a JWS).
    const idt = t.id_token ? String(t.id_token).split('.') : [];
    let idtAlg = '';
    try { idtAlg = JSON.parse(Buffer.from(idt[0] || '', 'base64url').toString()).alg || ''; } catch { idtAlg = '?'; }
    const idTokenInfo = idt.length ? `<p id="id-token">${idt.length} ${esc(idtAlg)}</p>` : '';
    return send(res, 200, `<h1>Welcome</h1><p id="sub">${esc(info.sub)}</p><p id="token-type">${esc(t.token_type)}</p>${idTokenInfo}${banks ? `<p id="bank">${esc(s.bank)}</p>` : ''}${resource}`);
  }
  if (u.pathname === '/refresh') {
    const s = sessions.get(sid);
    if (!s?.tokens?.refresh_token) return send(res, 400, '<p id="error">no refresh token</p>');
    const c = clientFor(s);
    const basic = Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64');
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: s.tokens.refresh_token });
    const tok = await call('POST', c.token_endpoint, { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' }, form.toString());
    if (tok.status !== 200) return send(res, 502, `<p id="error">refresh said ${tok.status}: ${esc(tok.body)}</p>`);
    s.tokens = { ...s.tokens, ...JSON.parse(tok.body) };
    return send(res, 200, '<p id="refreshed">yes</p>');
  }
  // Test fixture: this session's access token (tests of the egress with the app's token).
  if (u.pathname === '/__test/access_token') {
    const s = sessions.get(sid);
    return send(res, s?.tokens ? 200 : 404, s?.tokens?.access_token || 'none', { 'content-type': 'text/plain' });
  }
  // Test fixture for a misbehaving app: redirect to whatever `to` (base64url) says.
  if (u.pathname === '/__redirect') {
    const to = Buffer.from(u.searchParams.get('to') || '', 'base64url').toString('latin1');
    res.writeHead(Number(u.searchParams.get('status') || 302), { location: to, 'content-type': 'text/plain' });
    return res.end('redirect body from the app');
  }
  // A typical legacy open redirect: `/go?next=URL` sends the browser wherever `next` says.
  if (u.pathname === '/go') {
    res.writeHead(302, { location: u.searchParams.get('next') || '/', 'content-type': 'text/plain' });
    return res.end('redirecting');
  }
  // A slow page (a long report, a slow database): keeps a request in flight for `ms`.
  if (u.pathname === '/__test/slow') {
    await new Promise((r) => setTimeout(r, Math.min(Number(u.searchParams.get('ms') || 1000), 30000)));
    return send(res, 200, 'slow');
  }
  if (u.pathname === '/big') return send(res, 200, 'x'.repeat(Number(u.searchParams.get('n') || 100000)));
  return send(res, 404, 'not found');
}

http.createServer((req, res) => {
  handle(req, res).catch((e) => { console.error(e); send(res, 500, 'app error'); });
}).listen(cfg.port, '127.0.0.1', () => console.log(`legacy app on http://127.0.0.1:${cfg.port}`));
