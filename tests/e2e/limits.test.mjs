// Security review item 4 end to end: a flood of anonymous login starts against a slow AS
// neither starves logged-in users' token calls (egress has its own permits) nor turns into
// an unbounded number of PARs (a global login-start rate limit answers 429 beyond it).
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Browser } from './lib/browser.mjs';
import { startStack, metricValue } from './lib/stack.mjs';

function rawGet(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, location: res.headers.location || '' }));
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message }));
    req.setTimeout(20000, () => req.destroy(new Error('timeout')));
  });
}

describe('login-start flood against a slow AS', () => {
  let s;
  before(async () => {
    s = await startStack({
      alg: 'ES256', pkce: 'none', parDelayMs: 1500, parTimeoutMs: 8000,
      extraYaml: 'limits:\n  login_starts_per_second: 50\n',
    });
  });
  after(async () => { await s?.stop(); });

  test('token calls keep working, the excess gets 429, nothing is forwarded unpushed', async () => {
    // A logged-in user first (its PAR is slow too).
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    assert.match((await b.navigate(cb)).body, /id="sub"/);

    const parsBefore = (await s.events()).filter((e) => e.path === '/request').length;
    const flood = Array.from({ length: 300 }, () => rawGet(`${s.publicBase}/login`));
    // While 300 login starts are in flight, the user's refresh goes through at once.
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const refreshed = await b.navigate(`${s.publicBase}/refresh`);
    const tokenMs = Date.now() - t0;
    assert.match(refreshed.body, /id="refreshed"/, refreshed.body);
    assert.ok(tokenMs < 1500, `token call took ${tokenMs} ms during the flood`);

    const results = await Promise.all(flood);
    const byStatus = {};
    for (const r of results) byStatus[r.status] = (byStatus[r.status] || 0) + 1;
    assert.ok(byStatus[429] > 0, JSON.stringify(byStatus));
    for (const r of results) {
      // Either pushed (request_uri) or an error page: never the app's plain authorize URL.
      if (r.location) assert.match(r.location, /request_uri=/);
      assert.ok([302, 429].includes(r.status), JSON.stringify(r));
    }
    const pushed = results.filter((r) => r.status === 302).length;
    const pars = (await s.events()).filter((e) => e.path === '/request').length - parsBefore;
    assert.equal(pars, pushed, 'each pushed login made exactly one PAR, refused ones none');
    assert.ok(pushed <= 100 + 2 * 50 * 10, `at most the burst plus the rate: ${pushed}`);
    const m = await s.metrics();
    // One address floods: refused as `global` (bucket empty) or `fair_share` (bucket at its
    // reserve and this address over its share); no per-client limit is configured.
    assert.equal(metricValue(m, 'par_sidecar_login_rate_limited_total'), byStatus[429]);
  });
});

describe('login-start flood without a rate limit', () => {
  let s;
  before(async () => {
    s = await startStack({
      alg: 'ES256', pkce: 'none', parDelayMs: 1500, parTimeoutMs: 9000,
      extraYaml: 'limits:\n  login_starts_per_second: 0\n',
    });
  });
  after(async () => { await s?.stop(); });

  test('300 PARs holding every login permit do not block the egress pool', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    assert.match((await b.navigate(cb)).body, /id="sub"/);
    const flood = Array.from({ length: 300 }, () => rawGet(`${s.publicBase}/login`));
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    const refreshed = await b.navigate(`${s.publicBase}/refresh`);
    const tokenMs = Date.now() - t0;
    assert.match(refreshed.body, /id="refreshed"/, refreshed.body);
    assert.ok(tokenMs < 1500, `token call took ${tokenMs} ms while every login permit was taken`);
    const results = await Promise.all(flood);
    for (const r of results) {
      if (r.location) assert.match(r.location, /request_uri=/);
    }
    assert.ok(results.filter((r) => r.status === 302).length >= 250, 'the logins themselves complete, in waves');
  });
});
