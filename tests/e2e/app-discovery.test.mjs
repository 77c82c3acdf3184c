// Issue 19 item 1 end to end: discovery for the app on the egress listener. A discovery-first
// app on a real OAuth library (openid-client 6, tests/e2e/apps/openid-client-app.mjs) logs in
// through the sidecar with nothing but the discovery URL changed; the document it reads
// points its back channel at the egress and leaves the front channel to the AS.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue, get } from './lib/stack.mjs';

describe('discovery for the app', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', appScript: 'apps/openid-client-app.mjs' }); });
  after(async () => { await s?.stop(); });

  test('the document is the AS metadata rewritten for the app', async () => {
    const asDoc = JSON.parse((await get(`${s.issuer}/.well-known/openid-configuration`, { ca: s.ca })).body);
    const r = await get(`${s.egressBase}/.well-known/openid-configuration`);
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['cache-control'], /^max-age=\d+$/);
    const doc = JSON.parse(r.body);
    assert.equal(doc.issuer, asDoc.issuer);
    assert.equal(doc.authorization_endpoint, asDoc.authorization_endpoint, 'the front channel stays at the AS');
    assert.equal(doc.token_endpoint, `${s.egressBase}/token`);
    assert.equal(doc.userinfo_endpoint, `${s.egressBase}/userinfo`);
    assert.equal(doc.jwks_uri, `${s.egressBase}/jwks`);
    assert.deepEqual(doc.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'none']);
    for (const f of ['pushed_authorization_request_endpoint', 'require_pushed_authorization_requests', 'mtls_endpoint_aliases', 'dpop_signing_alg_values_supported']) {
      assert.ok(!(f in doc), `${f} must not reach the app`);
    }
    assert.ok('pushed_authorization_request_endpoint' in asDoc, 'the AS itself does publish PAR');
    // The per-AS document and the AS's keys from the sidecar's cache.
    const per = JSON.parse((await get(`${s.egressBase}/as/default/.well-known/openid-configuration`)).body);
    assert.equal(per.token_endpoint, `${s.egressBase}/as/default/token`);
    const jwks = JSON.parse((await get(`${s.egressBase}/jwks`)).body);
    const asJwks = JSON.parse((await get(asDoc.jwks_uri, { ca: s.ca })).body);
    assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), asJwks.keys.map((k) => k.kid).sort());
    assert.equal((await get(`${s.egressBase}/as/nope/.well-known/openid-configuration`)).status, 404);
  });

  test('an openid-client app configured only by discovery logs in unmodified', async () => {
    const b = new Browser({ ca: s.ca });
    const page = await b.navigate(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`));
    assert.match(page.body, /<p id="sub">alice<\/p>/, page.body);
    const m = await s.metrics();
    assert.ok(metricValue(m, 'par_sidecar_egress_requests_total', { as: 'default', route: 'discovery', outcome: 'success', as_error: '' }) >= 1, m);
    assert.equal(metricValue(m, 'par_sidecar_token_response_checks_total', { grant: 'authorization_code', outcome: 'valid' }), 1);
  });
});
