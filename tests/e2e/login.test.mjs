// Issue 3 end to end: an unmodified app (client_secret_basic, no PKCE, no mTLS) completes a
// whole login against the strict FAPI 2.0 AS through par-sidecar and calls userinfo with a
// certificate-bound access token; plus the negative cases at the callback and token call.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue, get } from './lib/stack.mjs';

async function fullLogin(s, user = 'alice') {
  const b = new Browser({ ca: s.ca });
  const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, user);
  const page = await b.navigate(cb);
  return { b, cb, page };
}

const variants = [
  { name: 'PS256 + private_key_jwt, app without PKCE, resource API via egress', opts: { alg: 'PS256', pkce: 'none', resourceViaSidecar: true }, pkce: 'injected', resource: true },
  { name: 'ES256 + JARM', opts: { alg: 'ES256', pkce: 'none', responseMode: 'jwt' }, pkce: 'injected', jarm: true },
  { name: 'EdDSA + private_key_jwt', opts: { alg: 'EdDSA', pkce: 'none' }, pkce: 'injected' },
  { name: 'tls_client_auth', opts: { alg: 'ES256', authMethod: 'tls_client_auth', pkce: 'none' }, pkce: 'injected' },
  { name: 'app with its own S256 PKCE', opts: { alg: 'ES256', pkce: 'S256' }, pkce: 'passed' },
  { name: 'app with plain PKCE', opts: { alg: 'PS256', pkce: 'plain' }, pkce: 'upgraded' },
];

for (const v of variants) {
  describe(`full login: ${v.name}`, () => {
    let s;
    before(async () => { s = await startStack(v.opts); });
    after(async () => { await s?.stop(); });

    test('the app shows the user from userinfo', async () => {
      const { cb, page } = await fullLogin(s, 'alice');
      assert.equal(page.status, 200, page.body);
      assert.match(page.body, /<p id="sub">alice<\/p>/);
      if (v.resource) {
        // The AS's /me as a resource server: it takes the certificate-bound token only
        // with the same client certificate, which the egress listener presents.
        assert.match(page.body, /<p id="resource">200 alice<\/p>/);
        const m = await s.metrics();
        assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'resource', outcome: 'success' }), 1);
      }
      const cbUrl = new URL(cb);
      if (v.jarm) {
        assert.ok(cbUrl.searchParams.get('response'), 'JARM response parameter');
        assert.equal(cbUrl.searchParams.get('code'), null);
      } else {
        assert.equal(cbUrl.searchParams.get('iss'), s.issuer);
      }

      const ev = await s.events();
      const tok = ev.filter((e) => e.path === '/token').pop();
      assert.equal(tok.status, 200, JSON.stringify(tok));
      assert.ok(tok.cert_fingerprint, 'token call over mTLS');
      if (v.opts.authMethod === 'tls_client_auth') assert.equal(tok.assertion_jti, undefined);
      else assert.ok(tok.assertion_jti);
      const par = ev.filter((e) => e.path === '/request').pop();
      if (tok.assertion_jti) assert.notEqual(par.assertion_jti, tok.assertion_jti, 'fresh assertion per call');
      assert.equal(par.request_claims.code_challenge_method, 'S256');
      if (v.jarm) assert.equal(par.request_claims.response_mode, 'jwt');

      const m = await s.metrics();
      assert.equal(metricValue(m, 'par_sidecar_pkce_total', { action: v.pkce }), 1);
      assert.equal(metricValue(m, 'par_sidecar_callback_checks_total', { outcome: 'success' }), 1);
      assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'token', outcome: 'success' }), 1);
      assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'userinfo', outcome: 'success' }), 1);
      if (v.jarm) assert.ok(metricValue(m, 'par_sidecar_jwks_refreshes_total', { outcome: 'success' }) >= 1);
    });
  });
}

describe('negative cases at the callback and the token call', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none' }); });
  after(async () => { await s?.stop(); });

  const expectError = async (b, url, code) => {
    const r = await b.request(url, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 400, `${code}: ${r.body}`);
    const body = JSON.parse(r.body);
    assert.equal(body.error, code);
    assert.match(body.interaction_id, /^[0-9a-f-]{36}$/);
    return r;
  };

  test('tampered state, wrong or missing iss are rejected; the genuine response still works', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    const u = new URL(cb);
    const st = u.searchParams.get('state');
    const tampered = new URL(cb);
    tampered.searchParams.set('state', st.slice(0, -4) + (st.endsWith('AAAA') ? 'BBBB' : 'AAAA'));
    await expectError(b, tampered.toString(), 'state_tampered');
    const foreign = new URL(cb);
    foreign.searchParams.set('state', 'the-apps-plain-state');
    await expectError(b, foreign.toString(), 'state_foreign');
    const wrongIss = new URL(cb);
    wrongIss.searchParams.set('iss', `${s.issuer}/`);
    await expectError(b, wrongIss.toString(), 'iss_mismatch');
    const noIss = new URL(cb);
    noIss.searchParams.delete('iss');
    await expectError(b, noIss.toString(), 'iss_missing');
    // None of that consumed the response: the genuine one completes the login.
    const binding = b.cookies.filter((c) => c.name.startsWith('par_sidecar_tx_'));
    assert.equal(binding.length, 1, 'the rewritten redirect set a browser-binding cookie');
    const page = await b.navigate(cb);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
    // Replaying it is refused and never reaches the app: without the (now cleared) binding
    // cookie as a wrong browser, and even with the cookie kept, by the replay cache.
    await expectError(b, cb, 'browser_mismatch');
    b.cookies.push(...binding);
    await expectError(b, cb, 'callback_replayed');
  });

  test('an authorization response replayed into another browser is refused (login CSRF)', async () => {
    const attacker = new Browser({ ca: s.ca });
    const cb = await attacker.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, 'mallory');
    const victim = new Browser({ ca: s.ca });
    await victim.request(`${s.publicBase}/`);
    await expectError(victim, cb, 'browser_mismatch');
    // The attacker's own browser still completes: the wrong browser did not burn it.
    const page = await attacker.navigate(cb);
    assert.match(page.body, /<p id="sub">mallory<\/p>/);
    assert.ok(!attacker.cookies.some((c) => c.name.startsWith('par_sidecar_tx_')), 'binding cookie cleared after use');
  });

  test("another app's non-ASCII cookie does not hide the binding cookie", async () => {
    const b = new Browser({ ca: s.ca });
    // Sent as raw bytes (node writes header strings as latin1): 0xE9 alone is not UTF-8;
    // the second is UTF-8 but not ASCII. Either made the whole Cookie header unreadable.
    b.cookies.push({ host: '127.0.0.1', path: '/', name: 'other_app_theme', value: 'caf\u00e9', secure: false });
    b.cookies.push({ host: '127.0.0.1', path: '/', name: 'other_app_user', value: 'J\u00c3\u00bcrgen', secure: false });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, 'dave');
    assert.ok(b.cookies.some((c) => c.name.startsWith('par_sidecar_tx_')));
    const page = await b.navigate(cb);
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">dave<\/p>/);
  });

  test('the binding cookie is found in any of several Cookie header fields', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, 'erin');
    const u = new URL(cb);
    // HTTP/2 may split cookies over several fields; send two Cookie lines by hand.
    const lines = b.cookies.filter((c) => c.host === '127.0.0.1').map((c) => `cookie: ${c.name}=${c.value}`);
    lines.unshift('cookie: unrelated=1');
    const raw = await new Promise((resolve, reject) => {
      const sock = net.connect(Number(u.port), '127.0.0.1', () => {
        sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\naccept: application/json\r\n${lines.join('\r\n')}\r\nconnection: close\r\n\r\n`);
      });
      const chunks = [];
      sock.on('data', (c) => chunks.push(c));
      sock.on('end', () => resolve(Buffer.concat(chunks).toString()));
      sock.on('error', reject);
      sock.setTimeout(15000, () => sock.destroy(new Error('timeout')));
    });
    assert.ok(lines.length >= 3, lines.join('\n'));
    assert.match(raw, /^HTTP\/1\.1 200/, raw.slice(0, 400));
    assert.match(raw, /<p id="sub">erin<\/p>/);
  });

  test('binding cookies do not pile up: a browser keeps the newest three', async () => {
    const b = new Browser({ ca: s.ca });
    const binding = () => b.cookies.filter((c) => c.name.startsWith('par_sidecar_tx_')).map((c) => c.name);
    const started = [];
    for (let i = 0; i < 6; i += 1) {
      // Abandoned login starts: the redirect to the AS is never followed.
      const r = await b.request(`${s.publicBase}/login`);
      assert.match(r.headers.location || '', /request_uri=/, `start ${i}: ${r.status}`);
      const set = [].concat(r.headers['set-cookie'] || []).filter((c) => c.startsWith('par_sidecar_tx_'));
      started.push(set.find((c) => !/Max-Age=0/.test(c)).split('=')[0]);
      assert.ok(binding().length <= 3, `start ${i}: ${binding().join(', ')}`);
    }
    assert.deepEqual(binding(), started.slice(-3), 'the oldest were cleared with Max-Age=0');
    // A login in the same browser still completes, and leaves no more than three behind.
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, 'frank');
    assert.equal(binding().length, 3);
    const page = await b.navigate(cb);
    assert.match(page.body, /<p id="sub">frank<\/p>/);
    assert.equal(binding().length, 2, 'the used one is cleared at the callback');
  });

  test("the app's own pages at its callback path pass through untouched", async () => {
    const b = new Browser({ ca: s.ca });
    for (const q of ['', '?login', '?logout=1']) {
      const r = await b.request(`${s.publicBase}/callback${q}`, { headers: { accept: 'application/json' } });
      // The legacy app's own answer (it has no session here), not a sidecar error page.
      assert.equal(r.status, 400, r.body);
      assert.match(r.body, /<p id="error">no session<\/p>/, `${q}: ${r.body}`);
    }
    // An authorization response there is still checked.
    await expectError(b, `${s.publicBase}/callback?code=x`, 'state_missing');
  });

  test('an AS error response reaches the app after the iss check', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    const u = new URL(cb);
    const err = new URL(`${s.publicBase}/callback`);
    err.searchParams.set('error', 'access_denied');
    err.searchParams.set('state', u.searchParams.get('state'));
    err.searchParams.set('iss', s.issuer);
    const page = await b.navigate(err.toString());
    assert.equal(page.status, 200);
    assert.match(page.body, /<p id="error">access_denied<\/p>/, "the app's own error page, with its own state restored");
  });

  test('a token call with a code the sidecar never saw is refused', async () => {
    const basic = Buffer.from('legacy-app:the-apps-old-secret').toString('base64');
    const res = await fetch(`${s.egressBase}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=authorization_code&code=never-seen&redirect_uri=${encodeURIComponent(`${s.publicBase}/callback`)}`,
    });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error, 'invalid_grant');
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'token', outcome: 'unknown_code' }), 1);
    // Another client's credentials are not laundered through the sidecar.
    const other = await fetch(`${s.egressBase}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('someone-else:x').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=refresh_token&refresh_token=x',
    });
    assert.equal(other.status, 401);
  });

  test('refresh-token grant through the egress listener', async () => {
    const { b, page } = await fullLogin(s, 'bob');
    assert.match(page.body, /<p id="sub">bob<\/p>/);
    const r = await b.navigate(`${s.publicBase}/refresh`);
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /refreshed/);
    const tok = (await s.events()).filter((e) => e.path === '/token' && e.grant_type === 'refresh_token').pop();
    assert.equal(tok.status, 200);
    assert.ok(tok.cert_fingerprint);
  });

  test('metrics record each rejection and the process keeps serving', async () => {
    const m = await s.metrics();
    for (const outcome of ['state_tampered', 'state_foreign', 'iss_mismatch', 'iss_missing', 'callback_replayed']) {
      assert.ok(metricValue(m, 'par_sidecar_callback_checks_total', { outcome }) >= 1, outcome);
    }
    const { page } = await fullLogin(s, 'carol');
    assert.match(page.body, /<p id="sub">carol<\/p>/);
  });
});

describe('forged JARM', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none', responseMode: 'jwt' }); });
  after(async () => { await s?.stop(); });

  test('a response JWT signed with another key is rejected, a plain response is a downgrade', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    const u = new URL(cb);
    const genuine = u.searchParams.get('response');
    const [h, p] = genuine.split('.');
    const header = JSON.parse(Buffer.from(h, 'base64url'));
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const signingInput = `${h}.${p}`;
    const sig = crypto.sign('sha256', Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    const forged = new URL(cb);
    forged.searchParams.set('response', `${signingInput}.${sig.toString('base64url')}`);
    assert.equal(header.alg, 'ES256');
    const r = await b.request(forged.toString(), { headers: { accept: 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.body).error, 'jarm_invalid');
    // alg=none is never accepted.
    const none = new URL(cb);
    none.searchParams.set('response', `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${p}.`);
    const rn = await b.request(none.toString(), { headers: { accept: 'application/json' } });
    assert.equal(rn.status, 400);
    // Plain code+state where JARM was requested: a downgrade.
    const claims = JSON.parse(Buffer.from(p, 'base64url'));
    const plain = new URL(`${s.publicBase}/callback`);
    plain.searchParams.set('code', claims.code);
    plain.searchParams.set('state', claims.state);
    plain.searchParams.set('iss', s.issuer);
    const rp = await b.request(plain.toString(), { headers: { accept: 'application/json' } });
    assert.equal(rp.status, 400);
    assert.equal(JSON.parse(rp.body).error, 'jarm_missing');
    // The genuine one still works.
    const page = await b.navigate(cb);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
  });
});
