// Issue 13 end to end: DPoP-bound tokens (RFC 9449) for an unmodified app. The AS requires
// DPoP for the client (dpop_bound_access_tokens) and, in the first scenario, a server nonce
// in every proof; the client certificate stays on the connection, so tokens are bound both
// ways. The app keeps sending `Authorization: Bearer`; the egress listener makes the proofs.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import { calculateJwkThumbprint } from 'jose';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue, waitFor, get, WORK } from './lib/stack.mjs';

async function fullLogin(s, user = 'alice') {
  const b = new Browser({ ca: s.ca });
  const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, user);
  const page = await b.navigate(cb);
  return { b, page };
}

/** A direct call to the AS with the sidecar's transport certificate (as an attacker with a
 * stolen token and proof, but the right certificate, would). */
function directGet(s, url, headers) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      headers, ca: s.ca, agent: false,
      cert: fs.readFileSync(path.join(s.dir, 'transport.crt')),
      key: fs.readFileSync(path.join(s.dir, 'transport.key')),
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('DPoP with required nonces: in-memory key, resource server on another origin', () => {
  let s;
  before(async () => {
    s = await startStack({ alg: 'ES256', pkce: 'none', resourceViaSidecar: 'port2', dpop: { nonce: true } });
  });
  after(async () => { await s?.stop(); });

  test('whole login, userinfo and a resource call with a DPoP-bound token; nonce challenges answered once', async () => {
    const { page } = await fullLogin(s, 'alice');
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">alice<\/p>/);
    assert.match(page.body, /<p id="resource">200 alice<\/p>/);
    assert.match(page.body, /<p id="token-type">Bearer<\/p>/, 'token_type_to_app defaults to bearer');

    const ev = await s.events();
    const par = ev.filter((e) => e.path === '/request').pop();
    const jkt = par.request_claims.dpop_jkt;
    assert.match(jkt, /^[A-Za-z0-9_-]{43}$/, 'dpop_jkt inside the request object');

    // Token endpoint: a proof without a nonce is challenged, the retry carries the nonce, a
    // new proof and a new client assertion.
    const tok = ev.filter((e) => e.path === '/token');
    assert.equal(tok.length, 2, JSON.stringify(tok));
    assert.equal(tok[0].status, 400);
    assert.equal(tok[0].error, 'use_dpop_nonce');
    assert.ok(tok[0].dpop_nonce_sent);
    assert.equal(tok[1].status, 200, JSON.stringify(tok[1]));
    assert.equal(tok[1].token_type, 'DPoP');
    assert.equal(tok[1].dpop_proof_claims.nonce, tok[0].dpop_nonce_sent);
    assert.notEqual(tok[0].assertion_jti, tok[1].assertion_jti, 'fresh assertion on the retry');
    assert.notEqual(tok[0].dpop_proof_claims.jti, tok[1].dpop_proof_claims.jti, 'fresh proof on the retry');
    assert.ok(tok[1].cert_fingerprint, 'the mTLS transport stays');
    const h = tok[1].dpop_proof_header;
    assert.equal(h.typ, 'dpop+jwt');
    assert.equal(h.alg, 'ES256');
    assert.equal(h.jwk.d, undefined, 'public key only');
    assert.equal(await calculateJwkThumbprint(h.jwk), jkt, 'the PAR binding and the proof key agree');
    assert.equal(tok[1].dpop_proof_claims.htm, 'POST');
    assert.equal(tok[1].dpop_proof_claims.htu, `${s.issuer}/token`);

    // Userinfo (same origin as the token endpoint: the nonce is known) and the resource on
    // the AS's second port (another origin: one challenge, then the retry).
    const me = ev.filter((e) => e.path === '/me');
    const ui = me.filter((e) => e.port === s.asPort);
    const rs = me.filter((e) => e.port === s.asPort2);
    assert.deepEqual(ui.map((e) => e.status), [200], JSON.stringify(ui));
    assert.equal(ui[0].authorization_scheme, 'DPoP', 'Bearer from the app became DPoP');
    assert.deepEqual(rs.map((e) => e.status), [401, 200], JSON.stringify(rs));
    assert.match(rs[0].www_authenticate, /^DPoP .*error="use_dpop_nonce"/);
    const proof = JSON.parse(Buffer.from(rs[1].dpop_proof.split('.')[1], 'base64url'));
    const token = rs[1].authorization.split(' ')[1];
    assert.equal(proof.ath, crypto.createHash('sha256').update(token).digest('base64url'));
    assert.equal(proof.htu, `https://localhost:${s.asPort2}/me`);
    assert.ok(proof.nonce);

    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_dpop_nonce_retries_total', { route: 'token' }), 1);
    assert.equal(metricValue(m, 'par_sidecar_dpop_nonce_retries_total', { route: 'resource' }), 1);
    assert.equal(metricValue(m, 'par_sidecar_dpop_nonce_retries_total', { route: 'userinfo' }), null);
    assert.equal(metricValue(m, 'par_sidecar_dpop_proofs_total', { route: 'token' }), 2);
    assert.equal(metricValue(m, 'par_sidecar_dpop_proofs_total', { route: 'userinfo' }), 1);
    assert.equal(metricValue(m, 'par_sidecar_dpop_proofs_total', { route: 'resource' }), 2);
    assert.equal(metricValue(m, 'par_sidecar_dpop_errors_total', {}), 0);
    assert.equal(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'resource', outcome: 'success' }), 1);
  });

  test('a refresh is DPoP-proofed too, with the remembered nonce', async () => {
    const { b, page } = await fullLogin(s, 'carol');
    assert.match(page.body, /<p id="sub">carol<\/p>/);
    const before = (await s.events()).length;
    const r = await b.navigate(`${s.publicBase}/refresh`);
    assert.match(r.body, /id="refreshed"/, r.body);
    const tok = (await s.events()).slice(before).filter((e) => e.path === '/token');
    assert.deepEqual(tok.map((e) => [e.grant_type, e.status]), [['refresh_token', 200]], 'no challenge: the nonce is known');
    assert.equal(tok[0].token_type, 'DPoP');
    assert.ok(tok[0].dpop_proof_claims.nonce);
  });

  test('a replayed proof is refused by the AS', async () => {
    const ev = await s.events();
    const used = ev.filter((e) => e.path === '/me' && e.status === 200 && e.port === s.asPort2).pop();
    const r = await directGet(s, `https://localhost:${s.asPort2}/me`, { authorization: used.authorization, dpop: used.dpop_proof });
    assert.equal(r.status, 401, r.body);
    assert.match(r.headers['www-authenticate'], /^DPoP .*error="invalid_token"/);
    const refused = (await s.events()).filter((e) => e.path === '/me').pop();
    assert.match(String(refused.error_detail), /replay/i, JSON.stringify(refused));
    // Without a proof the stolen token is useless, and through the sidecar (a fresh proof)
    // the same token still works: it was the replay that was refused.
    const token = used.authorization.split(' ')[1];
    const bare = await directGet(s, `https://localhost:${s.asPort2}/me`, { authorization: `Bearer ${token}` });
    assert.equal(bare.status, 401, bare.body);
    const viaSidecar = await get(`${s.egressBase}/rs/me`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(viaSidecar.status, 200, viaSidecar.body);
    assert.ok(['alice', 'carol'].includes(JSON.parse(viaSidecar.body).sub));
  });

  test('the sidecar never logs a proof or a token', async () => {
    const log = s.sidecar.log();
    const ev = await s.events();
    for (const e of ev.filter((x) => x.dpop_proof)) {
      assert.ok(!log.includes(e.dpop_proof.split('.')[2]), 'no proof signature in the log');
      assert.ok(!log.includes(e.authorization.split(' ')[1]), 'no access token in the log');
    }
    assert.doesNotMatch(log, /dpop\+jwt|eyJ0eXAiOiJkcG9w/);
  });
});

describe('DPoP key from a file, rotated while running; token_type passed as DPoP', () => {
  let s;
  const keyFile = path.join(WORK, `dpop-key-${process.pid}.pem`);
  const writeKey = () => {
    const pem = crypto.generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
    fs.mkdirSync(WORK, { recursive: true });
    fs.writeFileSync(`${keyFile}.tmp`, pem, { mode: 0o600 });
    fs.renameSync(`${keyFile}.tmp`, keyFile);
  };
  before(async () => {
    writeKey();
    s = await startStack({
      alg: 'ES256', pkce: 'none', reloadInterval: 1,
      dpop: { key: { path: keyFile, alg: 'EdDSA' }, tokenTypeToApp: 'dpop' },
    });
  });
  after(async () => { await s?.stop(); });

  test('the next login after a key swap binds to the new key and works', async () => {
    const first = await fullLogin(s, 'alice');
    assert.match(first.page.body, /<p id="sub">alice<\/p>/, first.page.body);
    assert.match(first.page.body, /<p id="token-type">DPoP<\/p>/);
    const jkt1 = (await s.events()).filter((e) => e.path === '/request').pop().request_claims.dpop_jkt;
    const tok1 = (await s.events()).filter((e) => e.path === '/token').pop();
    assert.equal(tok1.status, 200, 'no nonce required: no challenge');
    assert.equal(tok1.dpop_proof_header.alg, 'EdDSA');

    writeKey();
    await waitFor('DPoP key reload', async () => metricValue(await s.metrics(), 'par_sidecar_reloads_total', { material: 'dpop_key', outcome: 'success' }) === 1, 15000, s.sidecar);

    const second = await fullLogin(s, 'bob');
    assert.match(second.page.body, /<p id="sub">bob<\/p>/, second.page.body);
    const ev = await s.events();
    const jkt2 = ev.filter((e) => e.path === '/request').pop().request_claims.dpop_jkt;
    assert.notEqual(jkt2, jkt1, 'new key, new dpop_jkt');
    const tok2 = ev.filter((e) => e.path === '/token').pop();
    assert.equal(tok2.status, 200);
    assert.equal(await calculateJwkThumbprint(tok2.dpop_proof_header.jwk), jkt2);

    // The first login's token is bound to the old key: the egress listener proves the new
    // key, is told invalid_token, and proves the previous one (kept for an hour) once.
    const oldToken = ev.filter((e) => e.path === '/me' && e.status === 200)[0].authorization.split(' ')[1];
    const ui = await get(`${s.egressBase}/userinfo`, { headers: { authorization: `Bearer ${oldToken}` } });
    assert.equal(ui.status, 200, ui.body);
    assert.equal(JSON.parse(ui.body).sub, 'alice');
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_dpop_previous_key_retries_total', { route: 'userinfo' }), 1);
  });
});
