// Issue 19 item 2 end to end: an app that asks for `response_mode=form_post` (ASP.NET Core's
// default) logs in. The sidecar keeps the query mode to the AS, checks the response exactly
// like a query one, and delivers it to the app as the form POST it asked for; the negative
// callback cases are refused as for query logins; a POSTed response is never trusted.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startStack, get, metricValue } from './lib/stack.mjs';

const refusedWith = (r, code) => {
  assert.equal(r.status, 400, r.body.slice(0, 200));
  assert.match(r.body, /Sign-in error/);
  assert.match(r.body, new RegExp(code));
};

describe('form_post apps', () => {
  let s;
  const appCallbacks = async () => JSON.parse((await get(`http://127.0.0.1:${s.appPort}/__test/callbacks`)).body);
  before(async () => { s = await startStack({ alg: 'ES256', appResponseMode: 'form_post' }); });
  after(async () => { await s?.stop(); });

  test('a form_post login succeeds; the app receives the checked response as a POST body', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = new URL(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`));
    assert.ok(cb.searchParams.get('code'), 'the AS answered in the query mode');
    const page = await b.navigate(cb.toString());
    assert.match(page.body, /<p id="sub">alice<\/p>/, page.body);
    const last = (await appCallbacks()).at(-1);
    assert.equal(last.method, 'POST');
    assert.deepEqual(Object.keys(last.query), [], 'nothing of the response in the URL');
    assert.equal(last.form.code, cb.searchParams.get('code'));
    assert.equal(last.form.iss, s.issuer);
    assert.ok(last.form.state && !last.form.state.startsWith('ps1.'), "the app's own state");
    assert.equal(page.headers['referrer-policy'], 'no-referrer');
  });

  test('the negative callback cases are refused as for query logins', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = new URL(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`));
    const tampered = new URL(cb);
    tampered.searchParams.set('state', `${cb.searchParams.get('state')}x`);
    refusedWith(await b.request(tampered.toString()), 'state_');
    const noIss = new URL(cb);
    noIss.searchParams.delete('iss');
    refusedWith(await b.request(noIss.toString()), 'iss_missing');
    refusedWith(await new Browser({ ca: s.ca }).request(cb.toString()), 'browser_mismatch');
    // The AS's own form_post shape, POSTed by anyone: refused, never forwarded.
    refusedWith(await b.request(`${s.publicBase}/callback`, { method: 'POST', body: cb.searchParams.toString() }), 'callback_body_refused');
    assert.match((await b.navigate(cb.toString())).body, /id="sub"/, 'the genuine response still works');
    // Used once: the binding cookie is gone, so a replay is refused before the replay cache.
    refusedWith(await b.request(cb.toString()), '(callback_replayed|browser_mismatch)');
  });

  test('a form_post delivery for a request that brought a body is refused, and counted once', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = new URL(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`));
    const count = async () => metricValue(await s.metrics(), 'par_sidecar_errors_total', { code: 'callback_malformed' }) || 0;
    const before = await count();
    // A harmless body (nothing an app could read as a response parameter) with the genuine query.
    refusedWith(await b.request(cb.toString(), { method: 'POST', body: 'note=hello' }), 'callback_malformed');
    assert.equal(await count(), before + 1, 'the error page is counted in par_sidecar_errors_total');
  });
});
