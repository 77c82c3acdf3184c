// Issue 19 item 5: the compatibility matrix. Real OAuth client libraries, each in a small app
// written as its own docs show (tests/e2e/apps/, versions pinned in package-lock.json and
// requirements.txt), log in through the sidecar against the strict FAPI 2.0 AS with only
// their URLs changed. One login per library: the user reaches the app's page and the
// sidecar checked one valid token response. README "Works with" lists the same rows.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue } from './lib/stack.mjs';

/** One library, one stack, one login as alice. */
function library(name, stackOpts, { check } = {}) {
  describe(name, () => {
    let s;
    before(async () => { s = await startStack({ alg: 'PS256', ...stackOpts }); });
    after(async () => { await s?.stop(); });
    test(`${name} logs in through the sidecar against the strict AS`, async () => {
      const b = new Browser({ ca: s.ca });
      const page = await b.navigate(await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`));
      const diag = `${page.status} ${page.body.slice(0, 600)}\n${JSON.stringify(b.trace.map((t) => `${t.method} ${t.status} ${t.url.split('?')[0]}`))}\napp log:\n${s.app.log().slice(-3000)}`;
      assert.equal(page.status, 200, diag);
      assert.match(page.body, /<p id="sub">alice<\/p>/, diag);
      const m = await s.metrics();
      assert.equal(metricValue(m, 'par_sidecar_token_response_checks_total', { grant: 'authorization_code', outcome: 'valid' }), 1, m);
      await check?.(s, m, page);
    });
  });
}

describe('compatibility matrix: real OAuth client libraries, unmodified', () => {
  // Express + passport-oauth2 1.8 (node-oauth 0.10) with its defaults: client_secret_post at
  // the token call, and the userinfo GET carries the token as `?access_token=`, which the
  // egress moves into the Authorization header (issue 19 item 3).
  library('passport-oauth2', { appScript: 'apps/passport-oauth2-app.mjs' }, {
    async check(s) {
      const me = (await s.events()).filter((e) => e.path === '/me');
      assert.deepEqual(me.map((e) => [e.status, e.authorization_scheme]), [[200, 'Bearer']], 'the AS got the token in the header');
    },
  });
  // Flask + Authlib 1.9, configured by `server_metadata_url` (the sidecar's discovery) only;
  // PS256 ID tokens, which joserfc accepts because the document keeps the AS's algs.
  library('Authlib (Flask)', { appCommand: ['python', 'apps/authlib_app.py'] }, {
    check(s, m) {
      assert.ok(metricValue(m, 'par_sidecar_egress_requests_total', { route: 'discovery', outcome: 'success' }) >= 1, m);
    },
  });
  // Flask + requests-oauthlib 2.0, explicit endpoints, no redirect_uri at the token call
  // (the egress adds the pushed one at the token call: issue 19 item 4). The AS is made to
  // refuse a token call without it, as strict ASs do (oidc-provider fills it in by default).
  library('requests-oauthlib (Flask)', { appCommand: ['python', 'apps/requests_oauthlib_app.py'], asRequireTokenRedirectUri: true });
  // openid-client 6.9 by discovery, asking for response_mode=form_post (issue 19 item 2).
  // The sidecar keeps the query mode to the AS and delivers the checked response to the app as
  // the POST it asked for (README "form_post apps").
  library('openid-client form_post', { alg: 'ES256', appScript: 'apps/openid-client-app.mjs', appResponseMode: 'form_post' }, {
    async check(s, m, page) {
      const par = (await s.events()).filter((e) => e.path === '/request' && e.status === 201);
      assert.equal(par.length, 1);
      assert.ok(!('response_mode' in par[0].request_claims), 'pushed in the query mode');
      assert.match(page.body, /<p id="callback-method">POST<\/p>/, 'the app got its callback as a POST');
    },
  });
});
