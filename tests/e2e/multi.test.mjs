// Several authorization servers (banks) behind one sidecar, end to end: one unmodified app
// that lets the user pick their bank, two real strict FAPI 2.0 ASs (each with its own
// client_id for the sidecar), and the checks that keep them apart: per-AS PAR and token
// calls, mix-up defence at the callback, failure isolation, and per-AS egress routes.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startMultiStack, metricValue, waitFor } from './lib/stack.mjs';

const callbackOf = (s) => `${s.publicBase}/callback`;

/** A whole login at `bank` in browser `b`: returns the AS's callback URL and the app page. */
async function loginAt(s, b, bank, user) {
  const cb = await b.loginUntil(`${s.publicBase}/login?bank=${bank.name}`, callbackOf(s), user);
  const page = await b.navigate(cb);
  return { cb: new URL(cb), page };
}

function assertWelcome(page, bank, user) {
  assert.equal(page.status, 200, page.body.slice(0, 500));
  assert.match(page.body, new RegExp(`<p id="sub">${user}</p>`), page.body.slice(0, 500));
  assert.match(page.body, new RegExp(`<p id="bank">${bank.name}</p>`));
}

/** The sidecar's own error page (not the app's), with the given status and error code. */
function assertSidecarError(r, status, code, what = code) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.body.slice(0, 500)}`);
  assert.match(r.body, new RegExp(`\\b${code}\\b`), `${what}: ${r.body.slice(0, 500)}`);
  assert.doesNotMatch(r.body, /<p id="(sub|error|bank)">/, `${what}: the sidecar's page, not the app's`);
  assert.equal(r.headers.location, undefined, `${what}: no redirect anywhere`);
}

/** No response in the browser's history sent it to `bank`'s authorize endpoint with a plain query. */
function assertNoPlainAuthorize(b, bank) {
  for (const t of b.trace) {
    if (!t.location) continue;
    const leaked = t.location.startsWith(bank.authorizationEndpoint) && /[?&]response_type=/.test(t.location);
    assert.ok(!leaked, `plain authorize redirect to ${bank.name}: ${t.location}`);
  }
}

/** An issuer, not followed by more port digits (https://localhost:4000 vs :40001). */
const issuerRe = (issuer) => new RegExp(`${issuer.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(?![0-9])`);

/** Every `aud` value names this bank: its issuer or one of its endpoints. */
function assertAudIsBank(aud, bank, what) {
  const auds = [].concat(aud ?? []);
  assert.ok(auds.length > 0, `${what}: aud present`);
  for (const a of auds) assert.ok(a === bank.issuer || a.startsWith(`${bank.issuer}/`), `${what}: aud ${a} is not ${bank.name}`);
}

const tokenCalls = async (bank) => (await bank.events()).filter((e) => e.path === '/token');

describe('two banks behind one sidecar', () => {
  let s;
  before(async () => { s = await startMultiStack(); });
  after(async () => { await s?.stop(); });

  test('a whole login at each bank, one after the other in the same browser', async () => {
    const [A, B] = s.banks;
    const seen = { [A.name]: (await A.events()).length, [B.name]: (await B.events()).length };
    const b = new Browser({ ca: s.ca });
    const users = { [A.name]: 'alice', [B.name]: 'bob' };
    for (const bank of [A, B]) {
      const { cb, page } = await loginAt(s, b, bank, users[bank.name]);
      assert.equal(cb.searchParams.get('iss'), bank.issuer, 'the response names the bank that issued it');
      assertWelcome(page, bank, users[bank.name]);
    }
    assertNoPlainAuthorize(b, A);
    assertNoPlainAuthorize(b, B);

    for (const [bank, other] of [[A, B], [B, A]]) {
      const ev = (await bank.events()).slice(seen[bank.name]);
      const pars = ev.filter((e) => e.path === '/request');
      assert.equal(pars.length, 1, `${bank.name}: exactly one PAR: ${JSON.stringify(pars)}`);
      const par = pars[0];
      assert.equal(par.status, 201, JSON.stringify(par));
      assert.equal(par.client_id, bank.clientId);
      assert.equal(par.request_claims.aud, bank.issuer, 'request object audience is this bank');
      assert.equal(par.request_claims.iss, bank.clientId, 'request object issuer is our client at this bank');
      assert.equal(par.request_claims.client_id, bank.clientId);
      assert.equal(par.assertion_iss, bank.clientId, 'client assertion issuer');
      assertAudIsBank(par.assertion_aud, bank, `${bank.name} PAR assertion`);
      assert.ok(par.cert_fingerprint, 'PAR over mTLS');
      const toks = ev.filter((e) => e.path === '/token');
      assert.equal(toks.length, 1, `${bank.name}: exactly one token call: ${JSON.stringify(toks)}`);
      assert.equal(toks[0].status, 200, JSON.stringify(toks[0]));
      assert.equal(toks[0].grant_type, 'authorization_code');
      assert.equal(toks[0].client_id, bank.clientId);
      assert.equal(toks[0].assertion_iss, bank.clientId);
      assertAudIsBank(toks[0].assertion_aud, bank, `${bank.name} token assertion`);
      assert.ok(toks[0].cert_fingerprint, 'token call over mTLS');
      assert.notEqual(toks[0].assertion_jti, par.assertion_jti, 'fresh assertion per call');
      // Neither AS ever saw the other's client or issuer.
      for (const e of ev) {
        const text = JSON.stringify(e);
        assert.ok(!text.includes(other.clientId), `${bank.name} saw ${other.clientId}: ${text}`);
        assert.doesNotMatch(text, issuerRe(other.issuer), `${bank.name} saw ${other.name}'s issuer`);
      }
    }

    const m = await s.metrics();
    for (const bank of [A, B]) {
      assert.equal(metricValue(m, 'par_sidecar_callback_checks_total', { as: bank.name, outcome: 'success' }), 1, bank.name);
    }
  });

  test("the app's refresh goes through its bank's route to that bank only", async () => {
    const [A, B] = s.banks;
    const b = new Browser({ ca: s.ca });
    const { page } = await loginAt(s, b, B, 'bob');
    assertWelcome(page, B, 'bob');
    const refreshesAtA = (await tokenCalls(A)).filter((e) => e.grant_type === 'refresh_token').length;
    const r = await b.navigate(`${s.publicBase}/refresh`);
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /refreshed/);
    const tok = (await tokenCalls(B)).filter((e) => e.grant_type === 'refresh_token').pop();
    assert.equal(tok?.status, 200, JSON.stringify(tok));
    assert.equal(tok.client_id, B.clientId);
    assert.ok(tok.cert_fingerprint);
    assert.equal((await tokenCalls(A)).filter((e) => e.grant_type === 'refresh_token').length, refreshesAtA);
  });

  test('mix-up: a response from one bank never completes a login started at another', async () => {
    const [A, B] = s.banks;
    const mixups = async () => metricValue(await s.metrics(), 'par_sidecar_callback_checks_total', { as: A.name, outcome: 'iss_mixup' }) || 0;
    const mix0 = await mixups();
    const b = new Browser({ ca: s.ca });
    // Bank B first, then bank A: like any plain OAuth client, the app keeps one login per
    // browser session (the latest), so bank A's genuine response is the one it expects.
    const cbB = new URL(await b.loginUntil(`${s.publicBase}/login?bank=${B.name}`, callbackOf(s), 'bob'));
    const cbA = new URL(await b.loginUntil(`${s.publicBase}/login?bank=${A.name}`, callbackOf(s), 'alice'));
    assert.equal(cbA.searchParams.get('iss'), A.issuer);
    assert.equal(cbB.searchParams.get('iss'), B.issuer);
    const tokens0 = { a: (await tokenCalls(A)).length, b: (await tokenCalls(B)).length };
    const appCallbacks0 = (await s.appCallbacks()).length;

    const forged = (params) => {
      const u = new URL(callbackOf(s));
      for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
      return u.toString();
    };
    const p = (u, k) => u.searchParams.get(k);
    for (const [what, url] of [
      ["bank A's state with bank B's code and iss", forged({ code: p(cbB, 'code'), state: p(cbA, 'state'), iss: p(cbB, 'iss') })],
      ["bank A's state and code with bank B's iss", forged({ code: p(cbA, 'code'), state: p(cbA, 'state'), iss: B.issuer })],
    ]) {
      assertSidecarError(await b.request(url), 400, 'iss_mixup', what);
    }
    assert.equal(await mixups(), mix0 + 2, 'par_sidecar_callback_checks_total{as="bank-a",outcome="iss_mixup"} counts both');
    assert.equal((await tokenCalls(A)).length, tokens0.a, 'no token call reached bank A');
    assert.equal((await tokenCalls(B)).length, tokens0.b, 'no token call reached bank B');
    assert.equal((await s.appCallbacks()).length, appCallbacks0, 'the app never saw a code');

    // The refusals come before the replay cache: bank A's untouched response still completes.
    const page = await b.navigate(cbA.toString());
    assertWelcome(page, A, 'alice');
    const toks = (await tokenCalls(A)).slice(tokens0.a);
    assert.equal(toks.length, 1);
    assert.equal(toks[0].status, 200, JSON.stringify(toks[0]));
    assert.equal(toks[0].client_id, A.clientId);
    assert.equal((await tokenCalls(B)).length, tokens0.b);
  });

  // Last in this stack: it stops bank B's AS (and starts it again at the end).
  test('a bank that goes down fails alone, and comes back', async () => {
    const [A, B] = s.banks;
    await B.stop();
    const b = new Browser({ ca: s.ca });
    const r = await b.navigate(`${s.publicBase}/login?bank=${B.name}`);
    assertSidecarError(r, 502, 'as_unavailable');
    assert.match(r.body, /bank-b/, 'the page names the bank');
    assertNoPlainAuthorize(b, B);

    const { page } = await loginAt(s, new Browser({ ca: s.ca }), A, 'alice');
    assertWelcome(page, A, 'alice');
    const rz = await s.readyz();
    assert.equal(rz.status, 200, rz.body);
    assert.match(rz.body, /^bank-a: ready$/m, rz.body);
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_as_metadata_loaded', { as: A.name }), 1);

    await B.start();
    await waitFor('bank-b ready again', async () => /^bank-b: ready$/m.test((await s.readyz()).body), 30000, s.sidecar);
    const again = await loginAt(s, new Browser({ ca: s.ca }), B, 'bob');
    assertWelcome(again.page, B, 'bob');
  });
});

describe('a bank that is down when the sidecar starts', () => {
  let s;
  before(async () => { s = await startMultiStack({ downBanks: ['bank-b'] }); });
  after(async () => { await s?.stop(); });

  test('the sidecar is ready with the other bank; the down one fails closed', async () => {
    const [A, B] = s.banks;
    const rz = await s.readyz();
    assert.equal(rz.status, 200, rz.body);
    assert.equal(rz.body.split('\n')[0], 'ready', rz.body);
    assert.match(rz.body, /^bank-a: ready$/m, rz.body);
    assert.match(rz.body, /^bank-b: not ready\b/m, rz.body);

    const { page } = await loginAt(s, new Browser({ ca: s.ca }), A, 'alice');
    assertWelcome(page, A, 'alice');

    const b = new Browser({ ca: s.ca });
    const appCallbacks0 = (await s.appCallbacks()).length;
    const first = await b.request(`${s.publicBase}/login?bank=${B.name}`);
    const loc = first.headers.location;
    assert.ok(!(loc && loc.startsWith(B.authorizationEndpoint) && loc.includes('response_type=')), `plain authorize redirect: ${loc}`);
    assertSidecarError(first, 503, 'not_ready');
    assert.match(first.body, /bank-b/, 'the page names the bank');
    assertNoPlainAuthorize(b, B);
    assert.equal((await s.appCallbacks()).length, appCallbacks0);

    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_as_metadata_loaded', { as: A.name }), 1);
    assert.equal(metricValue(m, 'par_sidecar_as_metadata_loaded', { as: B.name }) || 0, 0);
  });

  test('when the bank comes up, the sidecar picks it up without a restart', async () => {
    const B = s.bank('bank-b');
    await B.start();
    await waitFor('bank-b ready', async () => /^bank-b: ready$/m.test((await s.readyz()).body), 30000, s.sidecar);
    const { page } = await loginAt(s, new Browser({ ca: s.ca }), B, 'bob');
    assertWelcome(page, B, 'bob');
    assert.equal(metricValue(await s.metrics(), 'par_sidecar_as_metadata_loaded', { as: B.name }), 1);
  });
});

describe('egress routes with several banks', () => {
  let s;
  before(async () => { s = await startMultiStack({ tokenRoute: 'unprefixed' }); });
  after(async () => { await s?.stop(); });

  test('an app posting every code to plain /token: each code goes to the bank that issued it', async () => {
    const b = new Browser({ ca: s.ca });
    for (const [bank, user] of [[s.banks[0], 'alice'], [s.banks[1], 'bob']]) {
      const { page } = await loginAt(s, b, bank, user);
      // The welcome page needs userinfo at /as/NAME/userinfo with this bank's access token.
      assertWelcome(page, bank, user);
      const toks = await tokenCalls(bank);
      assert.equal(toks.length, 1, JSON.stringify(toks));
      assert.equal(toks[0].status, 200, JSON.stringify(toks[0]));
      assert.equal(toks[0].client_id, bank.clientId);
    }
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'userinfo', outcome: 'success' }), 2);
  });

  test('a refresh on plain /token is refused with a pointer to the per-bank routes', async () => {
    const before = (await Promise.all(s.banks.map(tokenCalls))).map((t) => t.length);
    const A = s.banks[0];
    const res = await fetch(`${s.egressBase}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${A.clientId}:the-apps-old-secret`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=refresh_token&refresh_token=some-refresh-token',
    });
    assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
    assert.match(res.headers.get('content-type') || '', /application\/json/);
    const body = await res.json();
    assert.ok(body.error, JSON.stringify(body));
    assert.match(body.error_description || '', /\/as\//, JSON.stringify(body));
    const afterCalls = (await Promise.all(s.banks.map(tokenCalls))).map((t) => t.length);
    assert.deepEqual(afterCalls, before, 'no token call reached any AS');
  });

  test('an unknown bank prefix is 404', async () => {
    const before = (await Promise.all(s.banks.map(tokenCalls))).map((t) => t.length);
    const res = await fetch(`${s.egressBase}/as/nope/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${s.banks[0].clientId}:the-apps-old-secret`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=refresh_token&refresh_token=some-refresh-token',
    });
    assert.equal(res.status, 404);
    const afterCalls = (await Promise.all(s.banks.map(tokenCalls))).map((t) => t.length);
    assert.deepEqual(afterCalls, before);
  });
});
