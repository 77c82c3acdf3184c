// The README's first command: one real login through par-sidecar, step by step.
// Starts a strict FAPI 2.0 AS (oidc-provider, mTLS required), an unmodified legacy app
// (plain OAuth, client_secret_basic, no PKCE) and par-sidecar in front of it.
import { Browser } from './lib/browser.mjs';
import { startStack, get, metricValue } from './lib/stack.mjs';

const alg = process.argv[2] || 'PS256';
const step = (n, msg) => console.log(`\n[${n}] ${msg}`);
const show = (k, v) => console.log(`      ${k.padEnd(16)} ${v}`);

step(1, `starting the strict AS, the legacy app and par-sidecar (signing alg ${alg})...`);
const s = await startStack({ alg, pkce: 'none' });
try {
  show('AS issuer', s.issuer);
  show('PAR endpoint', s.discovery.pushed_authorization_request_endpoint);
  show('legacy app', `http://127.0.0.1:${s.appPort} (behind the sidecar at ${s.publicBase})`);
  show('sidecar admin', `http://127.0.0.1:${s.adminPort}/metrics`);
  show('sidecar egress', `${s.egressBase} (the app's token/userinfo URLs point here)`);

  step(2, 'what the app sends by itself (plain query parameters, no PAR):');
  const direct = await get(`http://127.0.0.1:${s.appPort}/login`);
  const plain = new URL(direct.headers.location);
  show('Location', `${plain.origin}${plain.pathname}?${[...plain.searchParams.keys()].join('&')}`);

  step(3, 'the same request through par-sidecar: PAR + JAR + private_key_jwt over mTLS, then the rewrite');
  const b = new Browser({ ca: s.ca });
  const r = await b.request(`${s.publicBase}/login`);
  const loc = new URL(r.headers.location);
  show('status', r.status);
  show('Location', r.headers.location);
  show('parameters', [...loc.searchParams.keys()].join(', '));
  show('interaction id', r.headers['x-fapi-interaction-id']);
  const par = (await s.events()).filter((e) => e.path === '/request').pop();
  show('AS saw', `PAR ${par.status}, request object ${par.request_alg} kid=${par.request_kid.slice(0, 12)}…, client cert ${par.cert_fingerprint.slice(0, 23)}…`);
  show('pushed claims', Object.keys(par.request_claims).sort().join(' '));

  step(4, 'the browser follows it: AS login and consent pages (user "alice")');
  const cb = await b.loginUntil(r.headers.location, `${s.publicBase}/callback`);
  const cbu = new URL(cb);
  show('AS redirects to', `${cbu.origin}${cbu.pathname}?${[...cbu.searchParams.keys()].join('&')}`);
  show('iss', cbu.searchParams.get('iss'));

  step(5, 'callback: the sidecar checks iss, opens its sealed state, hands the app plain code + state;');
  console.log('      the app redeems the code through the egress listener (secret swapped for a');
  console.log('      fresh client assertion, PKCE verifier added, mTLS); the sidecar checks the ID token');
  console.log('      (signature, iss, aud, exp, nonce) before the app sees it; the app calls userinfo');
  const page = await b.navigate(cb);
  const sub = /<p id="sub">([^<]*)<\/p>/.exec(page.body)?.[1];
  show('app page', `${page.status} ${sub ? `Welcome, sub=${sub}` : page.body.slice(0, 200)}`);
  const tok = (await s.events()).filter((e) => e.path === '/token').pop();
  show('AS saw token', `${tok.status}, client assertion jti ${tok.assertion_jti?.slice(0, 8)}…, client cert ${tok.cert_fingerprint.slice(0, 23)}…`);

  step(6, 'metrics on the admin listener');
  const m = await s.metrics();
  for (const [name, labels] of [
    ['par_sidecar_par_requests_total', { outcome: 'success' }],
    ['par_sidecar_redirects_total', { action: 'rewritten' }],
    ['par_sidecar_pkce_total', { action: 'injected' }],
    ['par_sidecar_callback_checks_total', { outcome: 'success' }],
    ['par_sidecar_egress_requests_total', { route: 'token', outcome: 'success' }],
    ['par_sidecar_egress_requests_total', { route: 'userinfo', outcome: 'success' }],
    ['par_sidecar_token_response_checks_total', { grant: 'authorization_code', outcome: 'valid' }],
  ]) {
    // The series as Prometheus exposes it: `name{as="default",outcome="success"} 1`.
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    const line = m.split('\n').find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
    console.log(`      ${line ?? `${name}{${want.join(',')}} ${metricValue(m, name, labels)}`}`);
  }
  if (sub !== 'alice') throw new Error('demo login did not complete');
  console.log('\nDemo complete: the unmodified app logged in through a strict FAPI 2.0 AS.');
} finally {
  await s.stop();
}
