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

// Issue 18 item 3: one address flooding login starts (16 concurrent loops) does not deny
// another address's login start, whether the address is the peer or comes from the trusted
// `client_address_header`.
function getFrom(url, { localAddress, forwardedFor } = {}) {
  return new Promise((resolve) => {
    const headers = forwardedFor ? { 'x-forwarded-for': forwardedFor } : {};
    const req = http.get(url, { agent: false, localAddress, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, location: res.headers.location || '' }));
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message }));
    req.setTimeout(20000, () => req.destroy(new Error('timeout')));
  });
}

async function floodWhileUserLogsIn(s, flooder, user) {
  let stop = false;
  const flood = { 302: 0, 429: 0, other: 0 };
  const loops = Array.from({ length: 16 }, async () => {
    while (!stop) {
      const r = await getFrom(`${s.publicBase}/login`, flooder);
      if (r.location) assert.match(r.location, /request_uri=/);
      flood[r.status in flood ? r.status : 'other'] += 1;
    }
  });
  await new Promise((r) => setTimeout(r, 700));
  const mine = [];
  for (let i = 0; i < 5; i += 1) {
    mine.push(await getFrom(`${s.publicBase}/login`, user));
    await new Promise((r) => setTimeout(r, 300));
  }
  stop = true;
  await Promise.all(loops);
  return { flood, mine };
}

for (const viaHeader of [false, true]) {
  describe(`login-start flood from one address (${viaHeader ? 'client_address_header' : 'peer address'})`, () => {
    let s;
    before(async () => {
      s = await startStack({
        alg: 'ES256', pkce: 'none',
        extraYaml: `limits:\n  login_starts_per_second: 20\n${viaHeader ? '  client_address_header: x-forwarded-for\n' : ''}`,
      });
    });
    after(async () => { await s?.stop(); });

    test("another address's login starts keep working", async () => {
      // Behind the ingress every request has the same peer; the header's rightmost entry
      // is the client. Without it, the flooder and the user are different peers.
      const [flooder, user] = viaHeader
        ? [{ forwardedFor: '198.51.100.1, 203.0.113.7' }, { forwardedFor: '198.51.100.1, 2001:db8::9' }]
        : [{ localAddress: '127.0.0.1' }, { localAddress: '127.0.0.2' }];
      const { flood, mine } = await floodWhileUserLogsIn(s, flooder, user);
      assert.ok(flood[429] > 50, JSON.stringify(flood));
      assert.equal(flood.other, 0, JSON.stringify(flood));
      for (const r of mine) {
        assert.equal(r.status, 302, JSON.stringify({ r, flood }));
        assert.match(r.location, /request_uri=/);
      }
      const m = await s.metrics();
      assert.ok(metricValue(m, 'par_sidecar_login_rate_limited_total', { scope: 'fair_share' }) > 0, m);
    });
  });
}
