// Issue 2 end to end: the unmodified app's authorize redirect becomes a signed PAR over mTLS
// that a strict FAPI 2.0 AS accepts; the browser is sent with only client_id + request_uri.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue, get } from './lib/stack.mjs';

for (const alg of ['PS256', 'ES256', 'EdDSA']) {
  describe(`PAR rewrite with ${alg} + private_key_jwt`, () => {
    let s;
    before(async () => { s = await startStack({ alg, pkce: 'S256' }); });
    after(async () => { await s?.stop(); });

    test('GET /login through the sidecar redirects with only client_id and request_uri', async () => {
      const b = new Browser({ ca: s.ca });
      const r = await b.request(`${s.publicBase}/login`);
      assert.equal(r.status, 302, r.body);
      const loc = new URL(r.headers.location);
      assert.equal(`${loc.origin}${loc.pathname}`, s.discovery.authorization_endpoint);
      assert.deepEqual([...loc.searchParams.keys()].sort(), ['client_id', 'request_uri']);
      assert.equal(loc.searchParams.get('client_id'), 'legacy-app');
      assert.match(loc.searchParams.get('request_uri'), /^urn:ietf:params:oauth:request_uri:/);
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.equal(r.headers['referrer-policy'], 'no-referrer');
      assert.match(r.headers['strict-transport-security'], /max-age=\d+/);
      assert.match(r.headers['x-fapi-interaction-id'], /^[0-9a-f-]{36}$/);
      assert.equal(r.body, '', 'the app redirect body is dropped');
      assert.match(r.headers['set-cookie'][0], /legacy_sid=/, "the app's own cookie still reaches the browser");

      // Following it reaches the AS's login page, not an error.
      const page = await b.navigate(r.headers.location);
      assert.equal(page.status, 200, page.body.slice(0, 500));
      assert.match(page.body, /name="prompt" value="login"/);

      // From the AS side: it verified a request object signed with our key and alg,
      // saw our client certificate, and the interaction id we sent.
      const ev = (await s.events()).filter((e) => e.path === '/request');
      const last = ev[ev.length - 1];
      assert.equal(last.status, 201);
      assert.equal(last.request_alg, alg);
      assert.ok(last.cert_fingerprint, 'the AS saw a client certificate');
      assert.equal(last.interaction_id, r.headers['x-fapi-interaction-id']);
      assert.equal(last.request_claims.aud, s.issuer);
      assert.equal(last.request_claims.state !== undefined, true, 'state travels inside the request object');
      assert.equal(last.request_claims.sub, undefined, 'no sub in the request object');
    });

    test('each login gets a fresh assertion jti and a fresh request_uri', async () => {
      const b = new Browser({ ca: s.ca });
      const r1 = await b.request(`${s.publicBase}/login`);
      const r2 = await b.request(`${s.publicBase}/login`);
      assert.notEqual(new URL(r1.headers.location).searchParams.get('request_uri'), new URL(r2.headers.location).searchParams.get('request_uri'));
      const jtis = (await s.events()).filter((e) => e.path === '/request').map((e) => e.assertion_jti);
      assert.equal(new Set(jtis).size, jtis.length);
    });

    test('pre-signed (pooled) client assertions are accepted, each jti once', { skip: alg !== 'PS256' && 'the pool is on by default for PS256 keys only' }, async () => {
      // client.assertion_pool defaults to 4 with a PS256 key: after the first login, PARs carry assertions
      // signed ahead in the background; the AS verifies each and records its jti.
      const b = new Browser({ ca: s.ca });
      const pooled = async () => metricValue(await s.metrics(), 'par_sidecar_client_assertions_total', { source: 'pooled' }) || 0;
      const before = await pooled();
      for (let i = 0; i < 6; i++) {
        const r = await b.request(`${s.publicBase}/login`);
        assert.equal(r.status, 302, r.body);
        await new Promise((ok) => setTimeout(ok, 50)); // the background refill
      }
      assert.ok((await pooled()) - before >= 5, 'logins used pooled assertions');
      const ev = (await s.events()).filter((e) => e.path === '/request');
      assert.ok(ev.length >= 6);
      for (const e of ev) assert.equal(e.status, 201, `${e.error}: ${e.error_description}`);
      const jtis = ev.map((e) => e.assertion_jti);
      assert.equal(new Set(jtis).size, jtis.length, 'no jti sent twice');
    });

    test('metrics count the PAR and the rewrite', async () => {
      const m = await s.metrics();
      assert.ok(metricValue(m, 'par_sidecar_par_requests_total', { outcome: 'success' }) >= 1);
      assert.ok(metricValue(m, 'par_sidecar_redirects_total', { action: 'rewritten' }) >= 1);
      assert.ok(metricValue(m, 'par_sidecar_signing_duration_seconds_count', { alg, purpose: 'request_object' }) >= 1);
      assert.equal(metricValue(m, 'par_sidecar_discovery_loaded'), 1);
      assert.ok(metricValue(m, 'par_sidecar_transport_certificate_not_after_timestamp_seconds') > Date.now() / 1000);
    });
  });
}

describe('without the sidecar', () => {
  let s;
  before(async () => { s = await startStack({ withSidecar: false, pkce: 'S256' }); });
  after(async () => { await s?.stop(); });

  test('the same app is refused by the strict AS', async () => {
    const b = new Browser({ ca: s.ca });
    const r = await b.request(`${s.publicBase}/login`);
    assert.equal(r.status, 302);
    assert.ok(new URL(r.headers.location).searchParams.get('redirect_uri'), 'plain query parameters');
    const refusal = await b.request(r.headers.location);
    assert.equal(refusal.status, 303);
    const back = new URL(refusal.headers.location);
    assert.equal(back.searchParams.get('error'), 'invalid_request');
    assert.match(back.searchParams.get('error_description'), /Pushed Authorization Request must be used/);
    assert.equal(back.searchParams.get('code'), null);
  });
});

describe('tls_client_auth', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', authMethod: 'tls_client_auth' }); });
  after(async () => { await s?.stop(); });

  test('PAR authenticates with the certificate alone', async () => {
    const b = new Browser({ ca: s.ca });
    const r = await b.request(`${s.publicBase}/login`);
    assert.equal(r.status, 302, r.body);
    const page = await b.navigate(r.headers.location);
    assert.match(page.body, /name="prompt" value="login"/);
    const ev = (await s.events()).filter((e) => e.path === '/request').pop();
    assert.equal(ev.status, 201);
    assert.equal(ev.assertion_kid, undefined, 'no client assertion with tls_client_auth');
  });
});

describe('pass-through and fail-closed', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256' }); });
  after(async () => { await s?.stop(); });
  const via = (to, status = 302) => `${s.publicBase}/__redirect?status=${status}&to=${Buffer.from(to, 'latin1').toString('base64url')}`;

  test('redirects elsewhere pass through byte for byte', async () => {
    const b = new Browser({ ca: s.ca });
    for (const to of ['/home', 'https://cdn.example.com/x?y=1', `${s.discovery.authorization_endpoint}?client_id=someone-else&x=1`]) {
      const r = await b.request(via(to));
      assert.equal(r.status, 302);
      assert.equal(r.headers.location, to);
      assert.equal(r.body, 'redirect body from the app');
    }
    const big = await b.request(`${s.publicBase}/big?n=300000`);
    assert.equal(big.body.length, 300000);
  });

  test('a hostile authorize redirect from the app fails closed with a code and interaction id', async () => {
    const b = new Browser({ ca: s.ca });
    const ep = s.discovery.authorization_endpoint;
    for (const [to, code] of [
      [`${ep}?client_id=legacy-app&state=a&state=b`, 'duplicate_parameter'],
      [`${ep}?client_id=legacy-app&request_uri=urn:x`, 'forbidden_parameter'],
      [`${ep}?client_id=legacy-app&state=%zz`, 'malformed_authorize_redirect'],
      [`${ep.replace('https:', 'http:')}?client_id=legacy-app`, 'authorize_redirect_rejected'],
    ]) {
      const r = await b.request(via(to), { headers: { accept: 'application/json' } });
      assert.equal(r.status, 502, to);
      const body = JSON.parse(r.body);
      assert.equal(body.error, code, to);
      assert.match(body.interaction_id, /^[0-9a-f-]{36}$/);
      assert.equal(r.headers.location, undefined, 'never the plain redirect');
    }
    const html = await b.request(via(`${ep}?client_id=legacy-app&claims=notjson`));
    assert.equal(html.status, 502);
    assert.match(html.headers['content-type'], /text\/html/);
    assert.match(html.body, /malformed_authorize_redirect/);
  });

  test('an AS rejection fails closed without echoing the AS', async () => {
    const b = new Browser({ ca: s.ca });
    const ep = s.discovery.authorization_endpoint;
    // Unregistered redirect_uri (on the app's own origin, so the sidecar pushes it): the AS
    // refuses the PAR with invalid_request.
    const unregistered = encodeURIComponent(`${s.publicBase}/not-registered`);
    const r = await b.request(via(`${ep}?client_id=legacy-app&response_type=code&redirect_uri=${unregistered}&scope=openid&code_challenge=${'a'.repeat(43)}&code_challenge_method=S256`), { headers: { accept: 'application/json' } });
    assert.equal(r.status, 502);
    const body = JSON.parse(r.body);
    assert.equal(body.error, 'par_rejected');
    assert.doesNotMatch(r.body, /redirect_uri/, 'AS error_description is not echoed');
    const m = await s.metrics();
    assert.ok(metricValue(m, 'par_sidecar_par_requests_total', { outcome: 'par_rejected', as_error: 'invalid_request' }) >= 1);
    // The process keeps serving.
    assert.equal((await b.request(`${s.publicBase}/`)).status, 200);
  });

  test('admin endpoints are not on the public listener', async () => {
    for (const p of ['/metrics', '/healthz', '/readyz', '/jwks.json']) {
      const r = await get(`${s.publicBase}${p}`);
      assert.equal(r.status, 404, p);
    }
    const jwks = JSON.parse((await get(`http://127.0.0.1:${s.adminPort}/jwks.json`)).body);
    assert.equal(jwks.keys[0].kty, 'EC');
    assert.equal(jwks.keys[0].d, undefined, 'no private part');
  });
});
