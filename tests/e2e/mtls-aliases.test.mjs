// Issue 20 item 2 end to end: an AS whose top-level back-channel endpoints take no client
// certificate and whose mtls_endpoint_aliases (another port) do. With the default
// `par_endpoint: auto` and private_key_jwt, every call (PAR, token, userinfo) goes to the
// aliases, and the login works; /readyz names the URL each call uses.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startStack, get, aliasesOnSecondPort } from './lib/stack.mjs';

const aliases = aliasesOnSecondPort;

describe('mTLS endpoint aliases on another port, private_key_jwt', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'PS256', pkce: 'none', asTopLevelNoCert: true, rewriteMetadata: aliases }); });
  after(async () => { await s?.stop(); });

  test('every back-channel call goes to the aliases and the login works', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`, 'alice');
    const page = await b.navigate(cb);
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /<p id="sub">alice<\/p>/);

    const ev = await s.events();
    assert.deepEqual(ev.filter((e) => e.error === 'mtls_required'), [], 'nothing went to a top-level back-channel URL');
    for (const p of ['/request', '/token', '/me']) {
      const calls = ev.filter((e) => e.path === p);
      assert.ok(calls.length > 0, `${p} was called`);
      for (const c of calls) assert.equal(c.port, s.asPort2, `${p} went to the alias port: ${JSON.stringify(c)}`);
    }
    assert.ok(ev.find((e) => e.path === '/token').cert_fingerprint, 'token call over mTLS');

    const ready = (await get(`http://127.0.0.1:${s.adminPort}/readyz`)).body;
    for (const call of ['par', 'token', 'userinfo', 'introspection', 'revocation']) {
      assert.match(ready, new RegExp(`${call}: https://localhost:${s.asPort2}/\\S* \\(mtls alias\\)`), ready);
    }
  });
});
