// Issue 20 item 3 end to end: ecosystem profiles against the real strict AS.
// - `profile: cbuae` on an AS whose top-level back-channel endpoints take no client
//   certificate: every call goes to the mTLS aliases, PS256 signs the request object and the
//   client assertion, and a config that asks for the top-level PAR URL (or an ES256 key) is
//   refused before anything starts.
// - `profile: singpass` with only an EC key and an encryption key configured: the profile
//   turns on DPoP and plain PAR parameters; the AS encrypts the ID token; the app logs in.
// - `profile: uk-openbanking` with app authentication: the egress forwards client_credentials
//   (consent creation) without `egress.allowed_grant_types` being set.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { Browser } from './lib/browser.mjs';
import { startStack, BIN, aliasesOnSecondPort } from './lib/stack.mjs';

async function fullLogin(s, user) {
  const b = new Browser({ ca: s.ca });
  const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, user);
  return b.navigate(cb);
}

/** check-config --offline on a variant of the stack's config; returns { status, out }. */
function checkVariant(s, edit) {
  const file = s.sidecarConfig.replace(/\.yaml$/, '-variant.yaml');
  fs.writeFileSync(file, edit(fs.readFileSync(s.sidecarConfig, 'utf8')));
  const r = spawnSync(BIN, ['check-config', '--offline', '--config', file], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

const aliases = aliasesOnSecondPort;

describe('profile: cbuae', () => {
  let s;
  before(async () => {
    s = await startStack({ alg: 'PS256', pkce: 'none', asTopLevelNoCert: true, rewriteMetadata: aliases, extraYaml: 'profile: cbuae\n' });
  });
  after(async () => { await s?.stop(); });

  test('every call goes to the mTLS aliases, PS256 signs, and the login works', async () => {
    const page = await fullLogin(s, 'alice');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
    const ev = await s.events();
    assert.deepEqual(ev.filter((e) => e.error === 'mtls_required'), [], 'nothing went to a top-level URL');
    const par = ev.filter((e) => e.path === '/request' && e.status === 201).pop();
    assert.ok(par, 'PAR succeeded');
    assert.equal(par.port, s.asPort2, 'PAR went to its alias');
    assert.equal(par.request_alg, 'PS256', 'signed request object, PS256');
    assert.equal(par.assertion_alg, 'PS256', 'private_key_jwt assertion, PS256');
    const tok = ev.filter((e) => e.path === '/token' && e.status === 200).pop();
    assert.equal(tok.port, s.asPort2);
    assert.equal(tok.assertion_alg, 'PS256');
    assert.ok(tok.cert_fingerprint, 'mTLS-bound');
  });

  test('check-config names the profile and the defaults it applied', () => {
    const out = execFileSync(BIN, ['check-config', '--offline', '--config', s.sidecarConfig], { encoding: 'utf8' });
    assert.match(out, /profile:\s+cbuae \(defaults applied: client\.sender_constraint=mtls\)/);
    assert.match(out, /PAR body:\s+signed request object \(JAR\)/);
  });

  test('a top-level PAR URL or an ES256 key is refused at load, naming key, rule and source', () => {
    const top = checkVariant(s, (y) => y.replace(/authorization_server:\n/, 'authorization_server:\n  par_endpoint: top_level\n'));
    assert.equal(top.status, 2, top.out);
    assert.match(top.out, /`authorization_server\.par_endpoint`: refused by profile `cbuae` at AS `default`/);
    assert.match(top.out, /source: CS-MTLS/);
    const es = checkVariant(s, (y) => y.replace(/alg: PS256/, 'alg: ES256'));
    assert.equal(es.status, 2, es.out);
    assert.match(es.out, /`client\.signing_keys\[0\]\.alg`: refused by profile `cbuae`.*PS256.*source: UAE-SP/);
    // Without the profile the same top-level setting loads (today's behaviour).
    const plain = checkVariant(s, (y) => y.replace('profile: cbuae\n', '').replace(/authorization_server:\n/, 'authorization_server:\n  par_endpoint: top_level\n'));
    assert.equal(plain.status, 0, plain.out);
  });
});

const ENC = { alg: 'ECDH-ES+A256KW', enc: 'A256GCM' };

describe('profile: singpass (EC keys, encrypted ID token; DPoP and plain PAR from the profile)', () => {
  let s;
  before(async () => {
    s = await startStack({
      alg: 'ES256', encryptIdToken: ENC, asDpop: true, asPlainPar: true, extraYaml: 'profile: singpass\n',
      clientOverrides: { require_signed_request_object: false },
    });
  });
  after(async () => { await s?.stop(); });

  test('plain PAR parameters, DPoP-bound tokens, an encrypted ID token: the app logs in', async () => {
    const yaml = fs.readFileSync(s.sidecarConfig, 'utf8');
    assert.doesNotMatch(yaml, /sender_constraint|request_object:/, 'only the profile turns these on');
    const page = await fullLogin(s, 'alice');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
    assert.match(page.body, /<p id="id-token">3 ES256<\/p>/, 'the app sees the verified inner JWS');
    const ev = await s.events();
    const par = ev.filter((e) => e.path === '/request' && e.status === 201).pop();
    assert.ok(par, 'PAR succeeded');
    assert.equal(par.request_alg, undefined, 'no request object');
    for (const p of ['redirect_uri', 'scope', 'dpop_jkt', 'client_assertion']) assert.ok(par.form_params.includes(p), `${p} as a form field: ${par.form_params}`);
    assert.equal(par.assertion_alg, 'ES256');
    const tok = ev.filter((e) => e.path === '/token' && e.status === 200).pop();
    assert.equal(tok.token_type, 'DPoP', 'the AS bound the token to the DPoP key');
    assert.equal(tok.dpop_proof_header.alg, 'ES256');
    assert.equal(tok.id_token_parts, 5, 'the AS really sent a JWE');
  });

  test('check-config shows the defaults; an RSA key or a missing encryption key is refused', () => {
    const out = execFileSync(BIN, ['check-config', '--offline', '--config', s.sidecarConfig], { encoding: 'utf8' });
    assert.match(out, /profile:\s+singpass \(defaults applied: client\.sender_constraint=dpop, par\.request_object=false\)/);
    assert.match(out, /PAR body:\s+plain parameters/);
    assert.match(out, /sender binding:\s+DPoP/);
    const rsa = checkVariant(s, (y) => y.replace(/alg: ES256/, 'alg: PS256'));
    assert.equal(rsa.status, 2, rsa.out);
    assert.match(rsa.out, /refused by profile `singpass`.*ES256, ES384, ES512.*source: SP-DOCS/);
    const noEnc = checkVariant(s, (y) => y.replace(/ {2}encryption_key: .*\n/, ''));
    assert.equal(noEnc.status, 2, noEnc.out);
    assert.match(noEnc.out, /`client\.encryption_key`: refused by profile `singpass`/);
  });
});

describe('profile: uk-openbanking, the app authenticating to the egress', () => {
  let s;
  const digest = crypto.createHash('sha256').update('the-apps-old-secret').digest('hex');
  const basic = `Basic ${Buffer.from('legacy-app:the-apps-old-secret').toString('base64')}`;
  before(async () => {
    s = await startStack({
      alg: 'PS256', pkce: 'none', asClientCredentials: true,
      clientOverrides: { grant_types: ['authorization_code', 'refresh_token', 'client_credentials'] },
      extraYaml: `profile: uk-openbanking\negress:\n  app_client_secret_sha256: "${digest}"\n`,
    });
  });
  after(async () => { await s?.stop(); });

  test('client_credentials (consent creation) is forwarded without allowed_grant_types', async () => {
    const res = await fetch(`${s.egressBase}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
      body: 'grant_type=client_credentials',
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.ok(body.access_token);
    assert.equal(body.id_token, undefined);
    const cc = (await s.events()).filter((e) => e.path === '/token' && e.grant_type === 'client_credentials').pop();
    assert.equal(cc.status, 200);
    assert.ok(cc.cert_fingerprint, 'over mTLS');
    const out = execFileSync(BIN, ['check-config', '--offline', '--config', s.sidecarConfig], { encoding: 'utf8' });
    assert.match(out, /profile:\s+uk-openbanking \(defaults applied: egress\.allowed_grant_types\+=client_credentials\)/);
  });

  test('without the app secret the grant stays refused and check-config warns', () => {
    const v = checkVariant(s, (y) => y.replace(/egress:\n {2}app_client_secret_sha256: .*\n/, ''));
    assert.equal(v.status, 0, v.out);
    assert.match(v.out, /profile `uk-openbanking` creates consents with a client_credentials token/);
  });
});
