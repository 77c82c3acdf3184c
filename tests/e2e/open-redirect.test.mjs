// Issue 18 M4 end to end: an open redirect in the unmodified app (`/go?next=URL`) must not
// become a PAR signed with the TPP's key, and a redirect_uri off the app's origin is never
// pushed; the app's own login route keeps working.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue } from './lib/stack.mjs';

describe('open redirects in the app', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'S256' }); });
  after(async () => { await s?.stop(); });

  const pars = async () => (await s.events()).filter((e) => e.path === '/request').length;
  const authorize = (params) => `${s.discovery.authorization_endpoint}?${new URLSearchParams({
    response_type: 'code', client_id: 'legacy-app', redirect_uri: `${s.publicBase}/callback`,
    scope: 'openid email', state: 'st', nonce: 'nonce-12345678',
    code_challenge: 'E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8', code_challenge_method: 'S256', ...params,
  })}`;
  const refused = async (url, code) => {
    const n = await pars();
    const r = await new Browser({ ca: s.ca }).request(url, { headers: { accept: 'application/json' } });
    assert.equal(JSON.parse(r.body).error, code, `${url}: ${r.status} ${r.body}`);
    assert.equal(r.headers.location, undefined, 'the app\'s Location never reaches the browser');
    assert.equal(await pars(), n, 'nothing pushed');
  };

  test('a ?next= open redirect choosing a payment and a login_hint is refused with open_redirect', async () => {
    const attack = authorize({
      authorization_details: JSON.stringify([{ type: 'payment', creditor: 'ATTACKER-IBAN', amount: '9999.00' }]),
      login_hint: 'victim@bank', prompt: 'login',
    });
    await refused(`${s.publicBase}/go?next=${encodeURIComponent(attack)}`, 'open_redirect');
    await refused(`${s.publicBase}/go?next=${encodeURIComponent(attack)}&x=1`, 'open_redirect');
    const m = await s.metrics();
    assert.ok(metricValue(m, 'par_sidecar_errors_total', { code: 'open_redirect' }) >= 2, m);
  });

  test('a redirect_uri on another origin is refused with redirect_uri_foreign', async () => {
    // Built by the app (base64 fixture: not reflected), but the callback would never come here.
    const via = (to) => `${s.publicBase}/__redirect?to=${Buffer.from(to).toString('base64url')}`;
    await refused(via(authorize({ redirect_uri: 'https://evil.example/callback' })), 'redirect_uri_foreign');
    await refused(via(authorize({ redirect_uri: 'http://127.0.0.2:1/callback' })), 'redirect_uri_foreign');
  });

  test('the app\'s own login route is still pushed and the login completes', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    assert.match((await b.navigate(cb)).body, /<p id="sub">alice<\/p>/);
  });
});
