// Runs last: greps every sidecar log captured by the e2e suite for key material, full
// JWTs (assertions, request objects, JARM), full request_uris and codes. Also checks that
// every log line is JSON with an interaction id where a PAR was logged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { WORK, startStack } from './lib/stack.mjs';
import { Browser } from './lib/browser.mjs';

const logsDir = path.join(WORK, 'logs');

function privateKeyFragments() {
  const frags = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(pem|key)$/.test(e.name)) {
        const text = fs.readFileSync(p, 'utf8');
        if (text.includes('PRIVATE KEY')) {
          for (const line of text.split('\n')) if (line.length >= 40 && !line.startsWith('-----')) frags.push(line.slice(0, 40));
        } else if (e.name === 'state.key') {
          frags.push(text.trim());
        }
      }
    }
  };
  walk(WORK);
  return frags;
}

test('the app failing behind a checked callback: the code and state stay out of the sidecar log', async () => {
  const s = await startStack({ alg: 'ES256', pkce: 'none' });
  try {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    const code = new URL(cb).searchParams.get('code');
    assert.ok(code && code.length >= 12);
    // The app dies after sending the browser to the AS; the response arrives at the sidecar.
    await s.app.stop();
    const r = await b.request(cb, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 502, r.body);
    const body = JSON.parse(r.body);
    assert.equal(body.error, 'upstream_unavailable');
    const log = s.sidecar.log();
    assert.ok(!log.includes(code), `the code was logged:\n${log}`);
    assert.doesNotMatch(log, /\/callback\?/, 'a callback query was logged');
    const ours = log.split('\n').filter(Boolean).map((l) => JSON.parse(l))
      .find((rec) => rec.message === 'proxying a checked callback to the app failed');
    assert.ok(ours, log);
    assert.equal(ours.path, '/callback');
    assert.equal(ours.interaction_id, body.interaction_id, 'the id on the error page is the one logged');
  } finally {
    await s.stop();
  }
});

/** Every code, access and refresh token the test ASs issued in this run (as.mjs writes them). */
function issuedValues() {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.issued')) {
        for (const line of fs.readFileSync(p, 'utf8').split('\n').filter(Boolean)) {
          const [kind, value] = line.split(' ');
          out.push({ kind, value });
        }
      }
    }
  };
  walk(WORK);
  return out;
}

test('sidecar logs never contain keys, assertions, request objects, codes or full request_uris', () => {
  const files = fs.existsSync(logsDir) ? fs.readdirSync(logsDir).filter((f) => f.startsWith('sidecar-')) : [];
  assert.ok(files.length > 0, 'the e2e suite ran and produced sidecar logs');
  const frags = privateKeyFragments();
  assert.ok(frags.length > 0);
  let parLines = 0;
  for (const f of files) {
    const text = fs.readFileSync(path.join(logsDir, f), 'utf8');
    assert.doesNotMatch(text, /PRIVATE KEY/, f);
    assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/, `${f}: a full JWT was logged`);
    assert.doesNotMatch(text, /urn:ietf:params:oauth:request_uri:[A-Za-z0-9_-]{8,}/, `${f}: a full request_uri was logged`);
    assert.doesNotMatch(text, /client_secret|the-apps-old-secret/, `${f}: the app's secret was logged`);
    for (const frag of frags) assert.ok(!text.includes(frag), `${f}: key material logged`);
    for (const line of text.split('\n').filter(Boolean)) {
      let rec;
      assert.doesNotThrow(() => { rec = JSON.parse(line); }, `${f}: not a JSON log line: ${line.slice(0, 200)}`);
      if (/"code":"[^"]{12,}"/.test(line)) assert.match(rec.code, /…\(\d+ chars\)$|^[a-z_]+$/, `${f}: full code logged`);
      if (rec.message === 'PAR accepted; redirect rewritten' || rec.message === 'PAR failed') {
        parLines += 1;
        assert.match(rec.interaction_id, /^[0-9a-f-]{36}$/);
        assert.ok('latency_ms' in rec && 'outcome' in rec && 'as_status' in rec);
      }
    }
  }
  assert.ok(parLines > 0, 'PAR outcomes were logged');
});

test('no code, access token or refresh token the ASs issued appears in any sidecar log line', () => {
  const issued = issuedValues();
  for (const kind of ['authorization_code', 'access_token', 'refresh_token']) {
    assert.ok(issued.filter((i) => i.kind === kind).length > 0, `the suite issued some ${kind}`);
  }
  const files = fs.readdirSync(logsDir).filter((f) => f.startsWith('sidecar-'));
  const values = issued.filter((i) => i.value.length >= 16);
  for (const f of files) {
    const text = fs.readFileSync(path.join(logsDir, f), 'utf8');
    for (const { kind, value } of values) {
      assert.ok(!text.includes(value), `${f}: a full ${kind} was logged`);
    }
  }
});
