// Issue 18 H1 end to end: no unchecked code reaches the app on any spelling of its callback.
// App stacks percent-decode paths before routing, collapse `//`, resolve dot segments, strip
// `;params` and extensions, read `%20code` and `code[]` as `code`, and read form, multipart
// and JSON bodies as parameters. Every such request is checked or refused by the sidecar,
// ordinary traffic elsewhere is untouched, and a code the app did not take is withdrawn.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue } from './lib/stack.mjs';

/** A request with the path exactly as given (Node's URL would normalise it first). */
function raw(base, rawPath, { method = 'GET', headers = {}, body } = {}) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
    const req = http.request({ host: u.hostname, port: u.port, path: rawPath, method, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error(`timeout ${rawPath}`)));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const isSidecarPage = (r) => /Sign-in error/.test(r.body);

describe('callback spellings: what an app framework routes and parses as its callback', () => {
  let s;
  before(async () => {
    s = await startStack({ alg: 'ES256' });
    // One login teaches the sidecar the callback path (as in production without callback.paths).
    const b = new Browser({ ca: s.ca });
    assert.match((await b.navigate(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`))).body, /id="sub"/);
  });
  after(async () => { await s?.stop(); });

  test('every path spelling a framework routes to the callback is checked, never forwarded', async () => {
    for (const p of [
      '/%63allback', '/%2563allback', '/CALLBACK', '//callback', '/x/../callback', '/./callback',
      '/callback.json', '/callback;jsessionid=1', '/callback/', '/%2Fcallback', '/callback%2F', '/callback.',
      '/index.php/callback', '/callback.php/x', '/%u0063allback', '/x/%252e%252e/../callback',
    ]) {
      const r = await raw(s.publicBase, `${p}?code=planted`);
      assert.equal(r.status, 400, `${p}: ${r.body.slice(0, 120)}`);
      assert.ok(isSidecarPage(r), `${p} reached the app: ${r.body.slice(0, 120)}`);
      assert.match(r.body, /state_missing/, p);
      assert.ok(r.headers['x-fapi-interaction-id'], p);
    }
  });

  test('every parameter-name spelling a parser reads as a response parameter is checked', async () => {
    for (const q of ['%20code=planted', 'code[]=planted', '[code]=planted', '%5Bcode%5D=planted', '%u0063ode=planted', 'Code=planted', 'c%6Fde=planted', 'x=1;code=planted', 'ISS=x', 'response=x']) {
      const r = await raw(s.publicBase, `/callback?${q}`);
      assert.ok(isSidecarPage(r), `${q} reached the app: ${r.body.slice(0, 120)}`);
      assert.equal(r.status, 400, q);
    }
  });

  test('a cookie an app could read as the code is refused on the callback path', async () => {
    const r = await raw(s.publicBase, '/callback', { headers: { cookie: 'a=1; code=planted' } });
    assert.ok(isSidecarPage(r), r.body.slice(0, 120));
    assert.match(r.body, /callback_malformed/);
    const elsewhere = await raw(s.publicBase, '/search', { headers: { cookie: 'code=mine' } });
    assert.ok(!isSidecarPage(elsewhere));
  });

  test('ordinary traffic on other paths keeps working', async () => {
    for (const p of ['/search?state=CA', '/callbackx?code=1', '/other/callback?code=1', '/big?n=10&error=none']) {
      const r = await raw(s.publicBase, p);
      assert.ok(!isSidecarPage(r), `${p} was refused: ${r.body.slice(0, 120)}`);
    }
    // A body without response parameters on another path, and on the callback path, reaches the app.
    const other = await raw(s.publicBase, '/search', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'code=search-term' });
    assert.ok(!isSidecarPage(other), other.body);
    const harmless = await raw(s.publicBase, '/callback', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'note=hello' });
    assert.ok(!isSidecarPage(harmless), harmless.body);
    assert.match(harmless.body, /no session/, 'the app itself answered');
  });

  test('a response parameter in a body of any type is refused on every callback spelling', async () => {
    const bodies = [
      ['application/x-www-form-urlencoded', 'code=planted&state=x'],
      ['application/x-www-form-urlencoded', '%20code=planted'],
      ['multipart/form-data; boundary=XyZ', '--XyZ\r\nContent-Disposition: form-data; name="code"\r\n\r\nplanted\r\n--XyZ--\r\n'],
      ['application/json', '{"code":"planted"}'],
      ['text/plain', 'code=planted'],
    ];
    for (const p of ['/callback', '/%63allback', '//callback']) {
      for (const [ct, body] of bodies) {
        const r = await raw(s.publicBase, p, { method: 'POST', headers: { 'content-type': ct }, body });
        assert.equal(r.status, 400, `${p} ${ct}: ${r.body.slice(0, 120)}`);
        assert.match(r.body, /callback_body_refused/, `${p} ${ct}`);
      }
    }
    const gz = await raw(s.publicBase, '/callback', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip' }, body: 'xx' });
    assert.match(gz.body, /callback_body_refused/);
    const m = await s.metrics();
    assert.ok(metricValue(m, 'par_sidecar_errors_total', { code: 'callback_body_refused' }) >= 16, m);
  });

  test('a checked code the app did not take is withdrawn: it cannot be planted for a token call', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    const code = new URL(cb).searchParams.get('code');
    // The app refuses the (checked) callback without redeeming it: here, no app session.
    b.cookies = b.cookies.filter((c) => c.name !== 'legacy_sid');
    const page = await b.request(cb);
    assert.equal(page.status, 400);
    assert.match(page.body, /no session/);
    const basic = Buffer.from('legacy-app:the-apps-old-secret').toString('base64');
    const res = await fetch(`${s.egressBase}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=authorization_code&code=${encodeURIComponent(code)}&redirect_uri=${encodeURIComponent(`${s.publicBase}/callback`)}`,
    });
    assert.equal(res.status, 400, 'the withdrawn code must not reach the AS');
    assert.equal((await res.json()).error, 'invalid_grant');
    const m = await s.metrics();
    assert.equal(metricValue(m, 'par_sidecar_callback_checks_total', { as: 'default', outcome: 'code_withdrawn' }), 1, m);
  });
});
