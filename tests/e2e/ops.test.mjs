// Issue 4 end to end: hot rotation of the signing key and the transport certificate the
// Kubernetes way while logins run, a broken new file, SIGHUP, and SIGTERM during PARs.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue, pki, waitFor } from './lib/stack.mjs';

/** A Secret volume as kubelet writes it: files are symlinks through `..data`. */
class SecretVolume {
  constructor(dir) { this.dir = dir; this.gen = 0; fs.mkdirSync(dir, { recursive: true }); }
  write(files) {
    this.gen += 1;
    const ts = `..2026_11_25_00_00_0${this.gen}`;
    fs.mkdirSync(path.join(this.dir, ts));
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(this.dir, ts, name), content, { mode: 0o600 });
    const tmp = path.join(this.dir, '..data_tmp');
    fs.symlinkSync(ts, tmp);
    fs.renameSync(tmp, path.join(this.dir, '..data')); // atomic swap
    for (const name of Object.keys(files)) {
      const link = path.join(this.dir, name);
      if (!fs.existsSync(link)) fs.symlinkSync(path.join('..data', name), link);
    }
    if (this.prev) fs.rmSync(path.join(this.dir, this.prev), { recursive: true });
    this.prev = ts;
  }
}

async function login(s, user) {
  const b = new Browser({ ca: s.ca });
  const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, user);
  const page = await b.navigate(cb);
  if (!page.body.includes(`<p id="sub">${user}</p>`)) throw new Error(`login failed: ${page.status} ${page.body.slice(0, 300)}`);
}

describe('hot rotation under load, the Kubernetes way', () => {
  let s;
  let vol;
  const dir = pki();
  const read = (f) => fs.readFileSync(path.join(dir, f));
  before(async () => {
    vol = new SecretVolume(path.join(dir, `secret-${process.pid}`));
    vol.write({ 'signing.pem': read('sign-ps256.pem'), 'tls.crt': read('transport.crt'), 'tls.key': read('transport.key') });
    s = await startStack({
      alg: 'PS256',
      pkce: 'none',
      reloadInterval: 1,
      signingKeys: [{ path: path.join(vol.dir, 'signing.pem'), alg: 'PS256' }],
      transportCert: path.join(vol.dir, 'tls.crt'),
      transportKey: path.join(vol.dir, 'tls.key'),
      registerKeys: [{ path: path.join(dir, 'sign-ps256.pem'), alg: 'PS256' }, { path: path.join(dir, 'sign-ps256-next.pem'), alg: 'PS256' }],
    });
  });
  after(async () => { await s?.stop(); });

  test('logins keep succeeding while key and certificate are swapped; the new ones are used', async () => {
    const before = (await s.events()).filter((e) => e.path === '/request').length;
    let stop = false;
    let ok = 0;
    const failures = [];
    const worker = async (w) => {
      for (let i = 0; !stop; i += 1) {
        try { await login(s, `user${w}x${i}`); ok += 1; } catch (e) { failures.push(e.message); }
      }
    };
    const workers = [0, 1, 2].map(worker);
    await new Promise((r) => setTimeout(r, 1500));
    const oldKid = (await s.events()).filter((e) => e.path === '/request').pop().request_kid;
    vol.write({ 'signing.pem': read('sign-ps256-next.pem'), 'tls.crt': read('transport2.crt'), 'tls.key': read('transport2.key') });
    const newFp = new crypto.X509Certificate(read('transport2.crt')).fingerprint256;
    await waitFor('new kid and certificate at the AS', async () => {
      const last = (await s.events()).filter((e) => e.path === '/request').pop();
      return last.request_kid !== oldKid && last.cert_fingerprint === newFp;
    }, 15000);
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failures, [], 'no failed logins');
    assert.ok(ok >= 6, `logins completed: ${ok}`);
    const pars = (await s.events()).filter((e) => e.path === '/request').slice(before);
    const last = pars[pars.length - 1];
    assert.notEqual(last.request_kid, oldKid);
    assert.equal(last.cert_fingerprint, newFp);
    assert.ok(pars.every((p) => p.status === 201), 'every PAR accepted');
    const m = await s.metrics();
    assert.ok(metricValue(m, 'par_sidecar_reloads_total', { material: 'transport', outcome: 'success' }) >= 1);
    assert.ok(metricValue(m, 'par_sidecar_reloads_total', { material: 'signing_keys', outcome: 'success' }) >= 1);
    const notAfter = Math.floor(new Date(new crypto.X509Certificate(read('transport2.crt')).validTo).getTime() / 1000);
    assert.equal(metricValue(m, 'par_sidecar_transport_certificate_not_after_timestamp_seconds'), notAfter);
  });

  test('a broken new key keeps the current material and raises the failure metric', async () => {
    const kidBefore = (await s.events()).filter((e) => e.path === '/request').pop().request_kid;
    vol.write({ 'signing.pem': Buffer.from('-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n'), 'tls.crt': read('transport2.crt'), 'tls.key': read('transport2.key') });
    await waitFor('failure metric', async () => metricValue(await s.metrics(), 'par_sidecar_reloads_total', { material: 'keys', outcome: 'failure' }) >= 1, 10000);
    await login(s, 'after-broken');
    assert.equal((await s.events()).filter((e) => e.path === '/request').pop().request_kid, kidBefore);
    assert.match(s.sidecar.log(), /reload failed; keeping the current keys/);
  });

  test('SIGHUP reloads instead of killing the process', async () => {
    vol.write({ 'signing.pem': read('sign-ps256.pem'), 'tls.crt': read('transport.crt'), 'tls.key': read('transport.key') });
    s.sidecar.child.kill('SIGHUP');
    await waitFor('sighup reload', async () => /"trigger":"sighup"/.test(s.sidecar.log()), 10000);
    assert.equal(s.sidecar.child.exitCode, null, 'still running');
    await login(s, 'after-hup');
  });
});

describe('graceful shutdown', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none', parDelayMs: 1500, gracePeriod: 3 }); });
  after(async () => { await s?.stop(); });

  test('SIGTERM during in-flight PARs: they complete and the process exits 0', async () => {
    const b = new Browser({ ca: s.ca });
    const inflight = [1, 2, 3].map(() => b.request(`${s.publicBase}/login`));
    await new Promise((r) => setTimeout(r, 300));
    s.sidecar.child.kill('SIGTERM');
    const results = await Promise.all(inflight);
    for (const r of results) {
      assert.equal(r.status, 302);
      assert.deepEqual([...new URL(r.headers.location).searchParams.keys()].sort(), ['client_id', 'request_uri']);
    }
    const { code, signal } = await s.sidecar.exited;
    assert.equal(signal, null);
    assert.equal(code, 0);
  });
});
