// Every metric name the alerts and the Grafana dashboard use exists in a real scrape of a
// sidecar that served a login and one error.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Browser } from './lib/browser.mjs';
import { startStack, ROOT } from './lib/stack.mjs';

describe('deploy/monitoring uses real metric names', () => {
  let s;
  before(async () => { s = await startStack({ alg: 'ES256', pkce: 'none' }); });
  after(async () => { await s?.stop(); });

  test('alerts and dashboard reference only metrics the sidecar exports', async () => {
    const b = new Browser({ ca: s.ca });
    const cb = await b.loginUntil(`${s.publicBase}/login`, `${s.publicBase}/callback`);
    const page = await b.navigate(cb);
    assert.match(page.body, /id="sub"/);
    await b.request(`${s.publicBase}/callback?state=forged&iss=x`); // one error page
    const scrape = await s.metrics();
    const exported = new Set(scrape.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]));
    const mon = path.join(ROOT, 'deploy/monitoring');
    const sources = {
      'rules.yaml': fs.readFileSync(path.join(mon, 'rules.yaml'), 'utf8'),
      'par-sidecar-dashboard.json': fs.readFileSync(path.join(mon, 'par-sidecar-dashboard.json'), 'utf8'),
    };
    let checked = 0;
    for (const [file, text] of Object.entries(sources)) {
      const used = new Set(text.match(/par_sidecar_[a-z0-9_]+/g));
      assert.ok(used.size >= 5, `${file} uses metrics`);
      for (const name of used) {
        assert.ok(exported.has(name), `${file} uses ${name}, which the sidecar does not export`);
        checked += 1;
      }
    }
    assert.ok(checked >= 15, `checked ${checked} references`);
  });
});
