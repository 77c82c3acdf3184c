// The egress listener's refusals end to end, checked from the strict AS's side (every /token
// call it sees is recorded at /__test/events): grants outside the allowlist, resource paths
// that would leave their target, and (when configured) calls without the app's secret never
// reach the AS. The legacy app's own flows keep working.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue } from './lib/stack.mjs';

const form = { 'content-type': 'application/x-www-form-urlencoded' };
const basic = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const tokenCalls = async (s) => (await s.events()).filter((e) => e.path === '/token').length;

// fetch() would resolve `%2e%2e` itself (WHATWG URL rules): send the path byte for byte.
function rawPost(s, rawPath, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.egressPort, method: 'POST', path: rawPath, headers: { ...headers, 'content-length': Buffer.byteLength(body) }, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function login(s, user) {
  const b = new Browser({ ca: s.ca });
  const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, user);
  const page = await b.navigate(cb);
  assert.match(page.body, new RegExp(`<p id="sub">${user}</p>`));
  return { b, page };
}

describe('egress: tokens in the wrong place', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256' }); });
  after(async () => { await s?.stop(); });

  test('an access token in the query or a form body is sent in the Authorization header', async () => {
    const { b } = await login(s, 'alice');
    const token = (await b.request(`${s.publicBase}/__test/access_token`)).body;
    assert.ok(token.length > 20, token);
    // node-oauth's habit (passport-oauth2): GET with the token in the query.
    const q = await fetch(`${s.egressBase}/userinfo?access_token=${encodeURIComponent(token)}`);
    assert.equal(q.status, 200, await q.clone().text());
    assert.equal((await q.json()).sub, 'alice');
    // RFC 6750 §2.2: a form-encoded body.
    const f = await fetch(`${s.egressBase}/userinfo`, { method: 'POST', headers: form, body: `access_token=${encodeURIComponent(token)}` });
    assert.equal(f.status, 200);
    assert.equal((await f.json()).sub, 'alice');
    // Two tokens in one request: refused before the AS.
    const two = await fetch(`${s.egressBase}/userinfo?access_token=${encodeURIComponent(token)}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(two.status, 400);
    assert.equal((await two.json()).error, 'invalid_request');
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'userinfo', outcome: 'token_misplaced' }), 1);
    // The token never reached a log line.
    assert.ok(!s.sidecar.log().includes(token), 'the access token was logged');
  });
});

describe('egress: grant allowlist and resource path confinement', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none', resourceViaSidecar: true }); });
  after(async () => { await s?.stop(); });

  test('client_credentials and password grants never reach the AS', async () => {
    const before = await tokenCalls(s);
    for (const body of ['grant_type=client_credentials&scope=openid', 'grant_type=password&username=alice&password=x', 'scope=openid']) {
      const res = await fetch(`${s.egressBase}/token`, {
        method: 'POST',
        headers: { ...form, authorization: basic('legacy-app', 'the-apps-old-secret') },
        body,
      });
      assert.equal(res.status, 400, body);
      assert.equal((await res.json()).error, 'unsupported_grant_type', body);
    }
    assert.equal(await tokenCalls(s), before, 'the AS saw no token call');
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'token', outcome: 'grant_not_allowed' }), 3);
  });

  test('an encoded traversal on a resource prefix is refused without reaching the AS', async () => {
    // `/rs/` maps to the AS root: `/rs/x/%2e%2e/token` would be the AS's token endpoint.
    const before = await tokenCalls(s);
    for (const p of ['/rs/x/%2e%2e/token', '/rs/x/%2E%2E/token', '/rs/x/.%2e/token', '/rs/x%5c..%5ctoken', '/rs/x%2f..%2ftoken']) {
      const res = await rawPost(s, p, form, 'grant_type=client_credentials');
      assert.equal(res.status, 400, `${p}: ${res.body}`);
      assert.equal(JSON.parse(res.body).error, 'invalid_request', p);
    }
    assert.equal(await tokenCalls(s), before, 'the AS saw no token call');
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'resource', outcome: 'bad_path' }), 5);
  });

  test('the app still logs in, refreshes and calls its resource API', async () => {
    const { b, page } = await login(s, 'alice');
    assert.match(page.body, /<p id="resource">200 alice<\/p>/, 'the resource call through /rs/ still works');
    const r = await b.navigate(`${s.publicBase}/refresh`);
    assert.equal(r.status, 200, r.body);
    const ok = (await s.events()).filter((e) => e.path === '/token' && e.status === 200).map((e) => e.grant_type);
    assert.deepEqual([...new Set(ok)].sort(), ['authorization_code', 'refresh_token']);
  });
});

describe('egress: the app secret, when configured', () => {
  let s;
  const digest = crypto.createHash('sha256').update('the-apps-old-secret').digest('hex');
  before(async () => {
    s = await startStack({ alg: 'ES256', pkce: 'none', extraYaml: `egress:\n  app_client_secret_sha256: "${digest}"\n` });
  });
  after(async () => { await s?.stop(); });

  test('token, introspection and revocation calls without it or with a wrong one never reach the AS', async () => {
    const before = await tokenCalls(s);
    const calls = [
      ['/token', {}, 'grant_type=refresh_token&refresh_token=x'],
      ['/token', {}, 'grant_type=refresh_token&refresh_token=x&client_id=legacy-app'],
      ['/token', { authorization: basic('legacy-app', 'wrong') }, 'grant_type=refresh_token&refresh_token=x'],
      ['/token', {}, 'grant_type=refresh_token&refresh_token=x&client_id=legacy-app&client_secret=wrong'],
      ['/introspect', {}, 'token=x'],
      ['/revoke', {}, 'token=x'],
    ];
    for (const [p, h, body] of calls) {
      const res = await fetch(`${s.egressBase}${p}`, { method: 'POST', headers: { ...form, ...h }, body });
      assert.equal(res.status, 401, `${p} ${body}`);
      assert.equal((await res.json()).error, 'invalid_client');
    }
    assert.equal(await tokenCalls(s), before, 'the AS saw no token call');
    const m = await s.metrics();
    const refused = ['app_auth_missing', 'app_auth_failed']
      .map((outcome) => metricValue(m, 'par_sidecar_egress_requests_total', { outcome }) || 0)
      .reduce((a, b) => a + b);
    assert.equal(refused, calls.length);
  });

  test('the app, presenting its secret, logs in and refreshes as before', async () => {
    const { b } = await login(s, 'bob');
    const r = await b.navigate(`${s.publicBase}/refresh`);
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /refreshed/);
  });
});
