// Issue 19 item 5: the compatibility matrix. Real OAuth client libraries, each in a small app
// written as its own docs show (tests/e2e/apps/, versions pinned in package-lock.json and
// requirements.txt), log in through the sidecar against the strict FAPI 2.0 AS with only
// their URLs changed. One login per library: the user reaches the app's page and the
// sidecar checked one valid token response. README "Works with" lists the same rows.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue } from './lib/stack.mjs';

const REDIRECTS = [301, 302, 303, 307, 308];

/**
 * Like Browser.loginUntil, but also walks a `response_mode=form_post` response: the
 * self-submitting HTML form (from the AS or the sidecar) is POSTed as a browser would.
 * Returns the final page of the app.
 */
async function login(b, start) {
  let r = await b.request(start);
  for (let i = 0; i < 30; i += 1) {
    if (REDIRECTS.includes(r.status) && r.headers.location) {
      r = await b.request(new URL(r.headers.location, r.url).toString());
      continue;
    }
    const prompt = /name="prompt" value="(login|consent)"/.exec(r.body)?.[1];
    if (prompt) {
      r = await b.submitForm(r, prompt === 'login' ? { login: 'alice', password: 'any' } : {}, { follow: false });
      continue;
    }
    const form = autoPostForm(r.body);
    if (!form) return r;
    r = await b.request(new URL(form.action, r.url).toString(), { method: 'POST', body: form.params.toString() });
  }
  throw new Error(`too many steps: ${JSON.stringify(b.trace)}`);
}

/** A form_post page: one `<form method="post">` of hidden inputs (any attribute order). */
function autoPostForm(body) {
  const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(body);
  if (!form || !/method=["']?post/i.test(form[1])) return null;
  const action = /action=["']([^"']+)["']/i.exec(form[1])?.[1];
  if (!action) return null;
  const params = new URLSearchParams();
  for (const input of form[2].matchAll(/<input\b[^>]*>/gi)) {
    const attr = (n) => new RegExp(`\\b${n}=["']([^"']*)["']`, 'i').exec(input[0])?.[1];
    if (/type=["']?hidden/i.test(input[0]) && attr('name')) params.append(attr('name'), decodeEntities(attr('value') ?? ''));
  }
  return { action: decodeEntities(action), params };
}

const decodeEntities = (s) => s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, e) => {
  if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
  return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[e.toLowerCase()];
});

/** One library, one stack, one login as alice. */
function library(name, stackOpts, { todo, check } = {}) {
  describe(name, () => {
    let s;
    before(async () => { s = await startStack({ alg: 'PS256', ...stackOpts }); });
    after(async () => { await s?.stop(); });
    test(`${name} logs in through the sidecar against the strict AS`, { todo }, async () => {
      const b = new Browser({ ca: s.ca });
      const page = await login(b, `${s.publicBase}/login`);
      const diag = `${page.status} ${page.body.slice(0, 600)}\n${JSON.stringify(b.trace.map((t) => `${t.method} ${t.status} ${t.url.split('?')[0]}`))}\napp log:\n${s.app.log().slice(-3000)}`;
      assert.equal(page.status, 200, diag);
      assert.match(page.body, /<p id="sub">alice<\/p>/, diag);
      const m = await s.metrics();
      assert.equal(metricValue(m, 'par_sidecar_token_response_checks_total', { grant: 'authorization_code', outcome: 'valid' }), 1, m);
      await check?.(s, m);
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
  library('openid-client form_post', { alg: 'ES256', appScript: 'apps/openid-client-app.mjs', appResponseMode: 'form_post' }, {
    todo: 'form_post callbacks (issue 19 item 2) are not on main yet',
  });
});
