// A real Prometheus (Debian package) scrapes the admin port; after a login attempt the PAR
// counter is visible through its query API. promtool lints a real scrape.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Browser } from './lib/browser.mjs';
import { startStack, freePort, Proc, get, waitFor } from './lib/stack.mjs';

describe('Prometheus scrapes the admin listener', () => {
  let s;
  let prom;
  let promPort;
  before(async () => {
    s = await startStack({ alg: 'ES256' });
    promPort = await freePort();
    const cfg = path.join(s.scen, 'prometheus.yml');
    fs.writeFileSync(cfg, `global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: par-sidecar
    static_configs: [ { targets: ["127.0.0.1:${s.adminPort}"] } ]
`);
    prom = new Proc('prometheus', 'prometheus', [
      `--config.file=${cfg}`, `--storage.tsdb.path=${path.join(s.scen, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ]);
  });
  after(async () => { await prom?.stop(); await s?.stop(); });

  const query = async (q) => JSON.parse((await get(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`)).body);

  test('the PAR counter shows up in Prometheus after a login attempt', async () => {
    const b = new Browser({ ca: s.ca });
    const r = await b.request(`${s.publicBase}/login`);
    assert.equal(r.status, 302);
    await waitFor('target up', async () => {
      const res = await query('up{job="par-sidecar"}');
      return res.data?.result?.[0]?.value?.[1] === '1';
    }, 30000);
    await waitFor('PAR counter', async () => {
      const res = await query('sum(par_sidecar_par_requests_total{outcome="success"})');
      return Number(res.data?.result?.[0]?.value?.[1]) >= 1;
    }, 30000);
    const lat = await query('sum(par_sidecar_par_duration_seconds_count)');
    assert.ok(Number(lat.data.result[0].value[1]) >= 1);
    const build = await query('par_sidecar_build_info');
    assert.equal(build.data.result[0].value[1], '1');
  });

  test('promtool accepts a real scrape', async () => {
    const body = await s.metrics();
    const out = execFileSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    assert.equal(out.trim(), '', `promtool lint findings: ${out}`);
  });
});
