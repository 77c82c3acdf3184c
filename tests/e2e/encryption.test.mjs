// Issue 20 item 1 end to end: the real AS (oidc-provider, features.encryption) encrypts the
// ID token to the sidecar's encryption key, Singpass-style (ECDH-ES+A256KW, A256GCM, the kid
// of the client's key), and the unmodified app receives the verified inner JWS. An AS that
// encrypts to a key the sidecar does not hold gets the login refused (invalid_token_response).
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
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
