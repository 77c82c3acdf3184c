// Issue 10 end to end: par-sidecar is the relying party. The real strict AS, switched to
// misbehave (tests/e2e/as.mjs: /__test/id_token_fault, /__test/authz_fault), sends one bad
// thing at a time; the sidecar refuses each before the unmodified app sees a token, counts
// it by the failed check, revokes what the AS issued, and the next good login works.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue, get } from './lib/stack.mjs';

function post(s, path, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = https.request(`${s.issuer}${path}`, {
      method: 'POST', ca: s.ca, agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end(data);
  });
}

async function login(s) {
  const b = new Browser({ ca: s.ca });
  const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
  return { b, cb, page: await b.navigate(cb) };
}

// Each AS fault and the check that must refuse it (the metric label, README conformance map).
const ID_TOKEN_FAULTS = {
  iss: 'iss',
  aud: 'aud',
  aud_extra: 'azp',
  exp: 'exp',
  iat: 'iat',
  nonce: 'nonce',
  nonce_missing: 'nonce',
  alg_none: 'alg',
  hs256: 'alg',
  tampered: 'signature',
  unknown_kid: 'unknown_kid',
  rs256: 'alg',
  exp_missing: 'exp',
  aud_missing: 'aud',
  iss_missing: 'iss',
  sub_missing: 'sub',
  nbf: 'nbf',
  // The login pushed a nonce and scope openid: its code response must carry an ID token.
  id_token_missing: 'id_token_missing',
};

describe('ID token validation on the egress token route', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'PS256', pkce: 'none' }); });
  after(async () => { await s?.stop(); });

  test('a good login passes the checks; the callback page keeps the code out of Referer and caches', async () => {
    const { page } = await login(s);
    assert.match(page.body, /<p id="sub">alice<\/p>/, page.body);
    assert.equal(page.headers['referrer-policy'], 'no-referrer');
    assert.equal(page.headers['cache-control'], 'no-store');
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_token_response_checks_total', { grant: 'authorization_code', outcome: 'valid' }), 1);
  });

  for (const [fault, check] of Object.entries(ID_TOKEN_FAULTS)) {
    test(`ID token fault ${fault}: refused as ${check}, tokens revoked, next login works`, async () => {
      assert.equal(await post(s, '/__test/id_token_fault', { fault }), 200);
      try {
        const before = await s.metrics();
        const { page } = await login(s);
        // The app got an OAuth error instead of tokens, so it never showed a user.
        assert.doesNotMatch(page.body, /id="sub"/);
        assert.match(page.body, /token endpoint said 502/, page.body);
        assert.match(page.body, /invalid_token_response/);
        assert.match(page.body, new RegExp(`check \`${check}\``), page.body);
        assert.doesNotMatch(page.body, /access_token|refresh_token|eyJ/, 'no token reaches the app');
        const after = await s.metrics();
        const n = (m) => metricValue(m, 'par_sidecar_token_response_checks_total', { as: 'default', outcome: check }) || 0;
        assert.equal(n(after) - n(before), 1);
        // Best effort revocation of the access and refresh tokens the AS issued.
        const revoked = async () => metricValue(await s.metrics(), 'par_sidecar_token_revocations_total', { outcome: 'success' }) || 0;
        const r0 = metricValue(before, 'par_sidecar_token_revocations_total', { outcome: 'success' }) || 0;
        for (let i = 0; i < 50 && (await revoked()) < r0 + 2; i += 1) await new Promise((r) => setTimeout(r, 100));
        assert.equal(await revoked(), r0 + 2);
      } finally {
        assert.equal(await post(s, '/__test/id_token_fault', { fault: null }), 200);
      }
      const { page } = await login(s);
      assert.match(page.body, /<p id="sub">alice<\/p>/, page.body);
    });
  }

  test('refresh: the new ID token is checked too (no nonce required), a bad one is refused', async () => {
    const { b, page } = await login(s);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
    const ok = await b.navigate(`${s.publicBase}/refresh`);
    assert.match(ok.body, /id="refreshed"/, ok.body);
    const m0 = await s.metrics();
    assert.ok(metricValue(m0, 'par_sidecar_token_response_checks_total', { grant: 'refresh_token', outcome: 'valid' }) >= 1);
    assert.equal(await post(s, '/__test/id_token_fault', { fault: 'aud' }), 200);
    try {
      const bad = await b.navigate(`${s.publicBase}/refresh`);
      assert.match(bad.body, /refresh said 502/, bad.body);
      assert.match(bad.body, /check `aud`/);
    } finally {
      assert.equal(await post(s, '/__test/id_token_fault', { fault: null }), 200);
    }
    const m1 = await s.metrics();
    assert.equal(metricValue(m1, 'par_sidecar_token_response_checks_total', { grant: 'refresh_token', outcome: 'aud' }), 1);
  });

  test("refresh: an ID token naming another user than the refresh token's is refused (sub_mismatch)", async () => {
    const { b, page } = await login(s);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
    // Rotation keeps the subject: a second refresh with the rotated token still passes.
    for (let i = 0; i < 2; i += 1) {
      const ok = await b.navigate(`${s.publicBase}/refresh`);
      assert.match(ok.body, /id="refreshed"/, ok.body);
    }
    assert.equal(await post(s, '/__test/id_token_fault', { fault: 'sub_other' }), 200);
    try {
      const bad = await b.navigate(`${s.publicBase}/refresh`);
      assert.match(bad.body, /refresh said 502/, bad.body);
      assert.match(bad.body, /check `sub_mismatch`/);
      assert.doesNotMatch(bad.body, /access_token|refresh_token|eyJ/, 'no token reaches the app');
    } finally {
      assert.equal(await post(s, '/__test/id_token_fault', { fault: null }), 200);
    }
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_token_response_checks_total', { grant: 'refresh_token', outcome: 'sub_mismatch' }), 1);
  });

  for (const fault of ['aud_array', 'no_expires_in', 'token_type_lower']) {
    test(`legal variation ${fault}: accepted`, async () => {
      assert.equal(await post(s, '/__test/id_token_fault', { fault }), 200);
      try {
        const { page } = await login(s);
        assert.match(page.body, /<p id="sub">alice<\/p>/, page.body);
        if (fault === 'token_type_lower') assert.match(page.body, /<p id="token-type">bearer<\/p>/);
        const applied = (await s.events()).filter((e) => e.id_token_fault === fault);
        assert.ok(applied.length >= 1, 'the AS applied the variation');
      } finally {
        assert.equal(await post(s, '/__test/id_token_fault', { fault: null }), 200);
      }
    });
  }

  for (const [fault, code] of [['iss_wrong', 'iss_mismatch'], ['iss_missing', 'iss_missing']]) {
    test(`authorization response fault ${fault}: refused as ${code} before the app sees a code`, async () => {
      assert.equal(await post(s, '/__test/authz_fault', { fault }), 200);
      const tokensBefore = (await s.events()).filter((e) => e.path === '/token').length;
      try {
        const { page } = await login(s);
        assert.equal(page.status, 400);
        assert.match(page.body, new RegExp(code));
        assert.doesNotMatch(page.body, /Welcome/);
      } finally {
        assert.equal(await post(s, '/__test/authz_fault', { fault: null }), 200);
      }
      assert.equal((await s.events()).filter((e) => e.path === '/token').length, tokensBefore, 'no token call');
      const { page } = await login(s);
      assert.match(page.body, /<p id="sub">alice<\/p>/);
    });
  }
});

describe('request-side rules at login start', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none' }); });
  after(async () => { await s?.stop(); });

  const authorize = (params) => {
    const q = new URLSearchParams({
      response_type: 'code', client_id: 'legacy-app', redirect_uri: `${s.publicBase}/callback`,
      scope: 'openid', state: 'st', nonce: 'nn', ...params,
    });
    return `${s.discovery.authorization_endpoint}?${q}`;
  };
  const viaApp = (to, status = 302) => `${s.publicBase}/__redirect?status=${status}&to=${Buffer.from(to).toString('base64url')}`;
  const pars = async () => (await s.events()).filter((e) => e.path === '/request').length;

  test('a 307 from the app becomes a 303 to the AS (the browser must not re-POST the form)', async () => {
    const r = await new Browser({ ca: s.ca }).request(viaApp(authorize({}), 307), { method: 'POST', body: 'a=1' });
    assert.equal(r.status, 303);
    assert.match(r.headers.location, /request_uri=/);
    assert.doesNotMatch(r.headers.location, /response_type=/);
  });

  test('RP-initiated logout at the discovered end_session_endpoint passes through with our client_id', async () => {
    assert.ok(s.discovery.end_session_endpoint, 'the AS publishes end_session_endpoint');
    const to = `${s.discovery.end_session_endpoint}?client_id=legacy-app&post_logout_redirect_uri=${encodeURIComponent(`${s.publicBase}/`)}`;
    const n = await pars();
    const r = await new Browser({ ca: s.ca }).request(viaApp(to));
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, to, 'byte for byte');
    assert.equal(await pars(), n);
  });

  test('near misses of the real discovered endpoint with our client_id fail closed', async () => {
    const ep = new URL(s.discovery.authorization_endpoint);
    const q = new URL(authorize({})).search;
    const variants = [
      `${ep.origin}${ep.pathname}/${q}`, // trailing slash
      `${ep.origin}${ep.pathname.toUpperCase()}${q}`, // letter case
      `\\\\${ep.host}${ep.pathname}${q}`, // \\host: scheme-relative to a browser
      `/\\${ep.host}${ep.pathname}${q}`, // /\host
      `https:${ep.host}${ep.pathname}${q}`, // no slashes
    ];
    for (const v of variants) {
      const n = await pars();
      const r = await new Browser({ ca: s.ca }).request(viaApp(v));
      assert.equal(r.status, 502, `${v}: ${r.status} ${r.headers.location || ''}`);
      assert.match(r.body, /authorize_redirect_rejected/, v);
      assert.equal(r.headers.location, undefined, v);
      assert.equal(await pars(), n, v);
    }
    // The percent-encoded form of the same path is the endpoint: pushed, not refused.
    const enc = `${ep.origin}${ep.pathname.replace(/a/, '%61')}${q}`;
    const r = await new Browser({ ca: s.ca }).request(viaApp(enc));
    assert.equal(r.status, 302, enc);
    assert.match(r.headers.location, /request_uri=/);
  });

  for (const [name, params, code] of [
    ['response_type token (implicit)', { response_type: 'token' }, 'unsupported_response_type'],
    ['response_type code id_token (hybrid)', { response_type: 'code id_token' }, 'unsupported_response_type'],
    ['plain http redirect_uri on another host', { redirect_uri: 'http://app.example/callback' }, 'insecure_redirect_uri'],
  ]) {
    test(`${name}: refused with ${code}, nothing pushed, nothing forwarded`, async () => {
      const n = await pars();
      const r = await new Browser({ ca: s.ca }).request(viaApp(authorize(params)));
      assert.equal(r.status, 502);
      assert.match(r.body, new RegExp(code));
      assert.equal(r.headers.location, undefined);
      assert.equal(await pars(), n);
    });
  }
});

describe('separate keys per purpose (client.request_object_signing_key)', () => {
  let s;
  before(async () => {
    s = await startStack({
      alg: 'PS256', pkce: 'none',
      requestObjectKey: { file: 'sign-es256.pem', alg: 'ES256' },
      clientOverrides: { request_object_signing_alg: 'ES256' },
    });
  });
  after(async () => { await s?.stop(); });

  test('the request object is signed with its own key, the assertion with the signing key', async () => {
    const { page } = await login(s);
    assert.match(page.body, /<p id="sub">alice<\/p>/, page.body);
    const par = (await s.events()).filter((e) => e.path === '/request').pop();
    assert.equal(par.status, 201, JSON.stringify(par));
    assert.equal(par.request_alg, 'ES256');
    assert.ok(par.request_kid && par.assertion_kid && par.request_kid !== par.assertion_kid, JSON.stringify(par));
    // Both keys are published (the AS was registered with `par-sidecar jwks`).
    const jwks = JSON.parse((await get(`http://127.0.0.1:${s.adminPort}/jwks.json`)).body);
    const kids = jwks.keys.map((k) => k.kid);
    assert.ok(kids.includes(par.request_kid) && kids.includes(par.assertion_kid));
  });
});

describe('callback hardening: what an app framework may read as its callback', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none' }); });
  after(async () => { await s?.stop(); });

  const sidecarPage = (r, code) => {
    assert.equal(r.status, 400, r.body.slice(0, 200));
    assert.match(r.body, /Sign-in error/);
    assert.match(r.body, new RegExp(code));
  };

  test('a form POST to the redirect_uri is refused (frameworks read form fields as parameters)', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = new URL(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`));
    const r = await b.request(`${s.publicBase}/callback`, { method: 'POST', body: cb.searchParams.toString() });
    sidecarPage(r, 'callback_body_refused');
    // The genuine response still works.
    assert.match((await b.navigate(cb.toString())).body, /id="sub"/);
  });

  test('case and trailing-slash variants of the callback path are checked too', async () => {
    for (const p of ['/Callback', '/callback/', '/callback;jsessionid=x']) {
      const r = await new Browser({ ca: s.ca }).request(`${s.publicBase}${p}?code=injected&state=not-ours&iss=${encodeURIComponent(s.issuer)}`);
      sidecarPage(r, 'state_');
    }
  });

  test('a response parameter in another letter case (a smuggled second code) is refused', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = new URL(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`));
    const smuggled = new URL(cb);
    smuggled.searchParams.set('Code', 'attackers-code');
    sidecarPage(await b.request(smuggled.toString()), 'callback_malformed');
    const huge = new URL(cb);
    huge.searchParams.set('code', 'x'.repeat(5000));
    sidecarPage(await b.request(huge.toString()), 'callback_malformed');
    assert.match((await b.navigate(cb.toString())).body, /id="sub"/);
  });

  test('an id_token that is not a JWS string is refused, not handed on', async () => {
    assert.equal(await post(s, '/__test/id_token_fault', { fault: 'id_token_number' }), 200);
    try {
      const { page } = await login(s);
      assert.match(page.body, /invalid_token_response/, page.body);
      assert.match(page.body, /check `malformed`/);
    } finally {
      assert.equal(await post(s, '/__test/id_token_fault', { fault: null }), 200);
    }
  });
});
