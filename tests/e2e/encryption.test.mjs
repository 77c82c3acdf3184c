// Issue 20 item 1 end to end: the real AS (oidc-provider, features.encryption) encrypts the
// ID token to the sidecar's encryption key, Singpass-style (ECDH-ES+A256KW, A256GCM, the kid
// of the client's key), and the unmodified app receives the verified inner JWS. An AS that
// encrypts to a key the sidecar does not hold gets the login refused (invalid_token_response).
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue, BIN } from './lib/stack.mjs';

async function fullLogin(s, user = 'alice') {
  const b = new Browser({ ca: s.ca });
  const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, user);
  return b.navigate(cb);
}

const ENC = { alg: 'ECDH-ES+A256KW', enc: 'A256GCM' };

describe('encrypted ID token (ECDH-ES+A256KW / A256GCM)', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', encryptIdToken: ENC }); });
  after(async () => { await s?.stop(); });

  test('the AS encrypts, the app gets the verified inner JWS and logs in', async () => {
    const page = await fullLogin(s, 'alice');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
    assert.match(page.body, /<p id="id-token">3 ES256<\/p>/, 'the app sees a JWS, not the JWE');
    const tok = (await s.events()).filter((e) => e.path === '/token' && e.status === 200).pop();
    assert.equal(tok.id_token_parts, 5, 'the AS really sent a JWE');
    assert.equal(tok.id_token_header.alg, ENC.alg);
    assert.equal(tok.id_token_header.enc, ENC.enc);
    // The kid the AS encrypted to is the one the sidecar publishes with use: enc.
    const jwks = JSON.parse(execFileSync(BIN, ['jwks', '--config', s.sidecarConfig], { encoding: 'utf8' }));
    const enc = jwks.keys.filter((k) => k.use === 'enc');
    assert.equal(enc.length, 1);
    assert.equal(enc[0].alg, ENC.alg);
    assert.equal(enc[0].kid, tok.id_token_header.kid);
    assert.equal(enc[0].d, undefined, 'public members only');
    const admin = JSON.parse((await (await fetch(`http://127.0.0.1:${s.adminPort}/jwks.json`)).text()));
    assert.ok(admin.keys.some((k) => k.use === 'enc' && k.kid === enc[0].kid));
    assert.equal(metricValue(await s.metrics(), 'par_sidecar_token_response_checks_total', { outcome: 'valid' }) >= 1, true);
  });

  test('check-config lists the encryption key', () => {
    const out = execFileSync(BIN, ['check-config', '--offline', '--config', s.sidecarConfig], { encoding: 'utf8' });
    assert.match(out, /encryption key:\s+kid=\S+ alg=ECDH-ES\+A256KW use=enc/);
  });
});

describe('encrypted ID token to a key the sidecar does not hold', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', encryptIdToken: { ...ENC, wrongKey: true } }); });
  after(async () => { await s?.stop(); });

  test('refused as invalid_token_response (jwe_decrypt); the app never sees a token', async () => {
    const page = await fullLogin(s, 'alice');
    assert.equal(page.status, 502, page.body);
    assert.match(page.body, /invalid_token_response/);
    assert.match(page.body, /jwe_decrypt/);
    assert.doesNotMatch(page.body, /<p id="sub">/);
    const tok = (await s.events()).filter((e) => e.path === '/token' && e.status === 200).pop();
    assert.equal(tok.id_token_parts, 5);
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_token_response_checks_total', { outcome: 'jwe_decrypt' }), 1);
    // Never logged: the JWE itself.
    assert.doesNotMatch(s.sidecar.log(), /eyJhbGciOiJFQ0RILUVT/);
  });
});

describe('encrypted ID token, direct key agreement (ECDH-ES / A128CBC-HS256)', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', encryptIdToken: { alg: 'ECDH-ES', enc: 'A128CBC-HS256' } }); });
  after(async () => { await s?.stop(); });

  test('decrypted and verified; the app gets the JWS', async () => {
    const page = await fullLogin(s, 'bob');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">bob<\/p>/);
    assert.match(page.body, /<p id="id-token">3 ES256<\/p>/);
    const tok = (await s.events()).filter((e) => e.path === '/token' && e.status === 200).pop();
    assert.deepEqual([tok.id_token_parts, tok.id_token_header.alg, tok.id_token_header.enc], [5, 'ECDH-ES', 'A128CBC-HS256']);
  });
});

describe('userinfo as a JWT, signed then encrypted (Myinfo-like)', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', encryptIdToken: { ...ENC, userinfo: 'encrypted' } }); });
  after(async () => { await s?.stop(); });

  test('the app asked for JSON and gets the verified claims as JSON', async () => {
    const page = await fullLogin(s, 'carol');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">carol<\/p>/, 'the legacy app parsed JSON userinfo');
    const me = (await s.events()).filter((e) => e.path === '/me' && e.status === 200).pop();
    assert.match(me.content_type, /^application\/jwt/);
    assert.equal(me.body_parts, 5, 'the AS really sent an encrypted JWT');
    assert.equal(metricValue(await s.metrics(), 'par_sidecar_token_response_checks_total', { grant: 'userinfo', outcome: 'valid' }), 1);
  });
});

describe('userinfo as a signed JWT', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', encryptIdToken: { ...ENC, userinfo: 'signed' } }); });
  after(async () => { await s?.stop(); });

  test('verified and handed over as JSON', async () => {
    const page = await fullLogin(s, 'dave');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">dave<\/p>/);
    const me = (await s.events()).filter((e) => e.path === '/me' && e.status === 200).pop();
    assert.equal(me.body_parts, 3);
  });
});

// JARM §2.3: the AS signs the authorization response, then encrypts it to the client's key.
describe('encrypted JARM response (signed, then ECDH-ES+A256KW / A256GCM)', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none', responseMode: 'jwt', encryptIdToken: { ...ENC, jarm: true } }); });
  after(async () => { await s?.stop(); });

  test('decrypted, verified with the AS JWKS, and the app gets code and state', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, 'erin');
    const response = new URL(cb).searchParams.get('response');
    assert.equal(response.split('.').length, 5, 'the AS really encrypted the JARM response');
    const header = JSON.parse(Buffer.from(response.split('.')[0], 'base64url'));
    assert.deepEqual([header.alg, header.enc], [ENC.alg, ENC.enc]);
    // Tampered ciphertext: refused as jarm_invalid (jwe_decrypt), the app never sees a code.
    const parts = response.split('.');
    const ct = Buffer.from(parts[3], 'base64url');
    ct[0] ^= 1;
    parts[3] = ct.toString('base64url');
    const bad = new URL(cb);
    bad.searchParams.set('response', parts.join('.'));
    const r = await b.request(bad.toString(), { headers: { accept: 'application/json' } });
    assert.equal(r.status, 400, r.body);
    assert.equal(JSON.parse(r.body).error, 'jarm_invalid');
    assert.match(s.sidecar.log(), /encrypted response JWT refused \(jwe_decrypt\)/);
    // The genuine one logs in.
    const page = await b.navigate(cb);
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">erin<\/p>/);
    assert.doesNotMatch(s.sidecar.log(), new RegExp(parts[1].slice(0, 40)), 'never the JWE in the logs');
  });
});

describe('encrypted JARM response to a key the sidecar does not hold', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none', responseMode: 'jwt', encryptIdToken: { ...ENC, jarm: true, wrongKey: true } }); });
  after(async () => { await s?.stop(); });

  test('refused as jarm_invalid naming jwe_decrypt', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    const r = await b.request(cb, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 400, r.body);
    assert.equal(JSON.parse(r.body).error, 'jarm_invalid');
    assert.match(s.sidecar.log(), /\(jwe_decrypt\)/);
    assert.equal(metricValue(await s.metrics(), 'par_sidecar_callback_checks_total', { outcome: 'jarm_invalid' }), 1);
  });
});

// public_jwks_path: the AS knows the client only by a jwks_uri on the sidecar's public
// listener (Singpass-style hosted JWKS): it verifies the client assertion and request object
// and encrypts the ID token with keys fetched from there.
describe('hosted client JWKS on the public listener', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', encryptIdToken: ENC, hostedJwks: true }); });
  after(async () => { await s?.stop(); });

  test('the AS fetches it and the login works end to end', async () => {
    const page = await fullLogin(s, 'frank');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">frank<\/p>/);
    const tok = (await s.events()).filter((e) => e.path === '/token' && e.status === 200).pop();
    assert.equal(tok.id_token_parts, 5, 'encrypted to a key from the hosted JWKS');
  });

  test('GET serves the admin JWKS with Cache-Control; public members only; nothing else is taken', async () => {
    const r = await fetch(`${s.publicBase}/.well-known/jwks.json`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/jwk-set+json');
    assert.equal(r.headers.get('cache-control'), 'public, max-age=300');
    const hosted = await r.json();
    const admin = await (await fetch(`http://127.0.0.1:${s.adminPort}/jwks.json`)).json();
    assert.deepEqual(hosted, admin);
    assert.ok(hosted.keys.some((k) => k.use === 'enc') && hosted.keys.some((k) => k.use === 'sig'));
    for (const k of hosted.keys) for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k[m], undefined);
    const head = await fetch(`${s.publicBase}/.well-known/jwks.json`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    // Another method, or a neighbouring path, is the app's as before.
    for (const [method, p] of [['POST', '/.well-known/jwks.json'], ['GET', '/.well-known/jwks.json/x'], ['GET', '/jwks.json']]) {
      const other = await fetch(`${s.publicBase}${p}`, { method });
      assert.notEqual(other.headers.get('content-type'), 'application/jwk-set+json', `${method} ${p}`);
    }
  });
});

// Singpass-like whole: a P-384 signing key (ES384 client assertion and request object), a
// P-521 DPoP key (ES512 proofs), PAR, an encrypted ID token and an encrypted userinfo JWT.
describe('Singpass-like login with P-384 and P-521 client keys', () => {
  let s;
  before(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ps-ec-'));
    const sign = path.join(dir, 'sign-p384.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', sign], { stdio: 'pipe' });
    fs.chmodSync(sign, 0o600);
    s = await startStack({
      alg: 'ES256',
      signingKeys: [{ path: sign, alg: 'ES384' }],
      ecP384P521: true,
      dpop: { alg: 'ES512' },
      encryptIdToken: { ...ENC, userinfo: 'encrypted' },
      clientOverrides: { token_endpoint_auth_signing_alg: 'ES384', request_object_signing_alg: 'ES384' },
    });
  });
  after(async () => { await s?.stop(); });

  test('the AS verifies ES384 and ES512 and the app logs in', async () => {
    const page = await fullLogin(s, 'grace');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">grace<\/p>/);
    const ev = await s.events();
    const par = ev.filter((e) => e.path === '/request' && e.status === 201).pop();
    assert.deepEqual([par.request_alg, par.request_kid === par.assertion_kid], ['ES384', true]);
    const tok = ev.filter((e) => e.path === '/token' && e.status === 200).pop();
    assert.equal(tok.dpop_proof_header.alg, 'ES512');
    assert.equal(tok.dpop_proof_header.jwk.crv, 'P-521');
    assert.equal(tok.id_token_parts, 5);
    const jwks = JSON.parse(execFileSync(BIN, ['jwks', '--config', s.sidecarConfig], { encoding: 'utf8' }));
    const sig = jwks.keys.find((k) => k.use === 'sig');
    assert.deepEqual([sig.alg, sig.crv], ['ES384', 'P-384']);
  });
});
