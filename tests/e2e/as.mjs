// A real, strict authorization server for the end-to-end tests: panva's oidc-provider in its
// FAPI 2.0 profile, served over HTTPS. Back-channel endpoints (PAR, token, userinfo,
// introspection, revocation) refuse any connection without a client certificate that
// chains to the test CA *before* the provider sees the request (stock oidc-provider would
// accept a private_key_jwt PAR without one). Everything the AS saw is recorded and served at
// /__test/events so tests can assert from the AS side (kid used, certificate, interaction id).
// A misbehaving AS on demand: POST /__test/id_token_fault and /__test/authz_fault (below) make
// token and authorization responses wrong in exactly one way until reset with {"fault": null}.
//
// Usage: node as.mjs CONFIG.json   (see lib/stack.mjs for the fields)
import fs from 'node:fs';
import https from 'node:https';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const read = (p) => fs.readFileSync(p);
const events = [];
const record = (e) => { events.push({ at: Date.now(), ...e }); if (events.length > 5000) events.shift(); };

const BACKCHANNEL = new Set(['/request', '/token', '/me', '/token/introspection', '/token/revocation']);

function decodeJwtHeader(jwt) {
  try { return JSON.parse(Buffer.from(String(jwt).split('.')[0], 'base64url').toString()); } catch { return null; }
}
function decodeJwtPayload(jwt) {
  try { return JSON.parse(Buffer.from(String(jwt).split('.')[1], 'base64url').toString()); } catch { return null; }
}

// AS signing keys (ID tokens, JARM), generated per run.
// Kept next to the config, so a restarted AS (a bank coming back) keeps its signing keys, as
// a real one does; a new scenario gets new keys.
const keysFile = `${process.argv[2]}.keys.json`;
const asKeys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')) : [
  { ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'as-ps256', alg: 'PS256', use: 'sig' },
  { ...crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }), kid: 'as-es256', alg: 'ES256', use: 'sig' },
];
if (!fs.existsSync(keysFile)) fs.writeFileSync(keysFile, JSON.stringify(asKeys), { mode: 0o600 });

// --- Misbehaving-AS switches (relying-party negative tests) ---
// Each id_token fault re-signs the real ID token's claims with the AS's own PS256 key (so only
// the named thing is wrong), except alg_none / hs256 / tampered, which need no valid signature.
const ID_TOKEN_FAULTS = new Set([
  'iss', 'aud', 'aud_extra', 'exp', 'iat', 'nonce', 'nonce_missing', 'alg_none', 'hs256', 'tampered', 'unknown_kid',
  'rs256', 'exp_missing', 'aud_missing', 'iss_missing',
  // sub_other: another user's sub (refused on a refresh, where the sub must not change).
  'sub_missing', 'nbf', 'sub_other', 'id_token_missing',
  // Not faults: legal variations a client must accept (conformance ValidAudAsArray,
  // TokenEndpointResponseWithoutExpiresIn, TokenTypeCaseInsensitivity).
  'aud_array', 'no_expires_in', 'token_type_lower',
  'id_token_number',
]);
const AUTHZ_FAULTS = new Set(['iss_wrong', 'iss_missing']);
const faults = { id_token: null, authz: null };
const psKey = crypto.createPrivateKey({ key: asKeys[0], format: 'jwk' });
const b64u = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');

function signPs256(header, payload) {
  const input = `${b64u(header)}.${b64u(payload)}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key: psKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  return `${input}.${sig.toString('base64url')}`;
}

function faultyIdToken(original, fault) {
  const p = decodeJwtPayload(original);
  if (!p) return original;
  const header = { ...decodeJwtHeader(original), alg: 'PS256', kid: asKeys[0].kid };
  const now = Math.floor(Date.now() / 1000);
  const client = Array.isArray(p.aud) ? p.aud[0] : p.aud;
  const without = (k) => { const q = { ...p }; delete q[k]; return q; };
  switch (fault) {
    case 'iss': return signPs256(header, { ...p, iss: 'https://other-issuer.example' });
    case 'aud': return signPs256(header, { ...p, aud: 'foreign-client' });
    case 'aud_extra': return signPs256(header, { ...without('azp'), aud: [client, 'other'] });
    case 'exp': return signPs256(header, { ...p, exp: now - 3600 });
    case 'iat': return signPs256(header, { ...p, iat: now + 3600 });
    case 'nonce': return signPs256(header, { ...p, nonce: 'not-the-nonce-that-was-sent' });
    case 'nonce_missing': return signPs256(header, without('nonce'));
    case 'alg_none': return `${b64u({ alg: 'none' })}.${b64u(p)}.`;
    case 'hs256': {
      const input = `${b64u({ alg: 'HS256' })}.${b64u(p)}`;
      return `${input}.${crypto.createHmac('sha256', 'the-apps-old-secret').update(input).digest('base64url')}`;
    }
    case 'tampered': {
      const [h, , sig] = signPs256(header, p).split('.');
      return `${h}.${b64u({ ...p, sub: `${p.sub}-tampered` })}.${sig}`;
    }
    case 'unknown_kid': return signPs256({ ...header, kid: 'not-in-the-jwks' }, p);
    case 'rs256': {
      // The AS's own RSA key, with PKCS#1 v1.5 (RS256): outside the FAPI 2.0 algorithms.
      const input = `${b64u({ ...header, alg: 'RS256' })}.${b64u(p)}`;
      return `${input}.${crypto.sign('sha256', Buffer.from(input), psKey).toString('base64url')}`;
    }
    case 'exp_missing': return signPs256(header, without('exp'));
    case 'aud_missing': return signPs256(header, without('aud'));
    case 'iss_missing': return signPs256(header, without('iss'));
    case 'aud_array': return signPs256(header, { ...p, aud: [client] });
    case 'sub_missing': return signPs256(header, without('sub'));
    case 'nbf': return signPs256(header, { ...p, nbf: now + 3600 });
    case 'sub_other': return signPs256(header, { ...p, sub: `${p.sub}-other` });
    default: return original;
  }
}

// Buffers what the provider writes, lets `edit` change it (JSON body, headers), then sends it.
function interceptResponse(res, edit) {
  const chunks = [];
  const origWrite = res.write.bind(res);
  const origEnd = res.end.bind(res);
  res.write = (c, enc, cb) => {
    if (c != null && typeof c !== 'function') chunks.push(Buffer.from(c, typeof enc === 'string' ? enc : undefined));
    if (typeof enc === 'function') enc(); else if (typeof cb === 'function') cb();
    return true;
  };
  res.end = (c, enc, cb) => {
    if (c != null && typeof c !== 'function') chunks.push(Buffer.from(c, typeof enc === 'string' ? enc : undefined));
    let out = Buffer.concat(chunks);
    const edited = edit(out);
    if (edited) {
      out = edited;
      if (!res.headersSent) res.setHeader('content-length', out.length);
    }
    if (out.length) origWrite(out);
    return origEnd();
  };
}

function readJsonBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => { try { resolve(JSON.parse(Buffer.concat(chunks).toString() || '{}')); } catch (e) { reject(e); } });
    req.on('error', reject);
  });
}

async function setFault(req, res, kind, allowed) {
  let fault;
  try { ({ fault } = await readJsonBody(req)); } catch { fault = undefined; }
  if (req.method !== 'POST' || !(fault === null || allowed.has(fault))) {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: `POST {"fault": null | ${[...allowed].map((f) => JSON.stringify(f)).join(' | ')}}` }));
    return;
  }
  faults[kind] = fault;
  record({ path: `/__test/${kind}_fault`, fault });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ fault }));
}

function peerCert(ctx) {
  const sock = ctx.req.socket;
  if (!sock.getPeerX509Certificate) return undefined;
  return sock.getPeerX509Certificate() || undefined;
}

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  jwks: { keys: asKeys },
  clientAuthMethods: ['private_key_jwt', 'tls_client_auth'],
  enabledJWA: {
    // cfg.ecP384P521: client keys on P-384 / P-521 too (Singpass and Corppass accept them).
    clientAuthSigningAlgValues: ['PS256', 'ES256', 'EdDSA', ...(cfg.ecP384P521 ? ['ES384', 'ES512'] : [])],
    requestObjectSigningAlgValues: ['PS256', 'ES256', 'EdDSA', ...(cfg.ecP384P521 ? ['ES384', 'ES512'] : [])],
    idTokenSigningAlgValues: ['PS256', 'ES256'],
    authorizationSigningAlgValues: ['PS256', 'ES256'],
    dPoPSigningAlgValues: ['ES256', 'EdDSA', 'PS256', ...(cfg.ecP384P521 ? ['ES384', 'ES512'] : [])],
    // cfg.encryption { alg, enc }: the one ID token encryption the AS offers (Singpass-like).
    ...(cfg.encryption ? {
      idTokenEncryptionAlgValues: [cfg.encryption.alg],
      idTokenEncryptionEncValues: [cfg.encryption.enc],
      userinfoEncryptionAlgValues: [cfg.encryption.alg],
      userinfoEncryptionEncValues: [cfg.encryption.enc],
      authorizationEncryptionAlgValues: [cfg.encryption.alg],
      authorizationEncryptionEncValues: [cfg.encryption.enc],
    } : {}),
  },
  features: {
    fapi: { enabled: true, profile: '2.0' },
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: true },
    // cfg.plainPar: the AS takes plain PAR parameters (Singpass); otherwise JAR only.
    requestObjects: { enabled: true, requireSignedRequestObject: !cfg.plainPar },
    jwtResponseModes: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    devInteractions: { enabled: true },
    ...(cfg.encryption ? { encryption: { enabled: true } } : {}),
    ...(cfg.clientCredentials ? { clientCredentials: { enabled: true } } : {}),
    // cfg.jwtUserinfo: userinfo as a JWT for clients registered with userinfo_signed_response_alg.
    ...(cfg.jwtUserinfo ? { jwtUserinfo: { enabled: true } } : {}),
    // cfg.dpop: DPoP-bound tokens for clients registered with dpop_bound_access_tokens;
    // { nonce: true } makes every proof carry a server nonce (use_dpop_nonce challenges).
    ...(cfg.dpop ? {
      dPoP: {
        enabled: true,
        ...(cfg.dpop.nonce ? { nonceSecret: crypto.randomBytes(32), requireNonce: () => true } : {}),
      },
    } : {}),
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      getCertificate: peerCert,
      certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => {
        const cert = peerCert(ctx);
        if (!cert) return false;
        if (property === 'tls_client_auth_subject_dn') {
          return cert.subject.split('\n').join(',') === expected;
        }
        return false;
      },
    },
  },
  pkce: { required: () => true },
  // Confidential client with the refresh_token grant: always issue one (exercises TOK-8).
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { PushedAuthorizationRequest: 60, AuthorizationCode: 60 },
  claims: { openid: ['sub'], email: ['email'] },
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub, email: `${sub}@example.test` }) }),
  ...(cfg.discovery ? { discovery: cfg.discovery } : {}),
  // cfg.loopbackFetch: the client's jwks_uri is on 127.0.0.1 (the sidecar's hosted JWKS);
  // oidc-provider's SSRF guard refuses loopback addresses, so the test AS drops it.
  ...(cfg.loopbackFetch ? { fetch: (url, options) => { delete options.dispatcher; return globalThis.fetch(url, options); } } : {}),
  // cfg.requireTokenRedirectUri: a token call without redirect_uri is refused even though the
  // client registered one (oidc-provider fills it in by default; stricter ASs do not).
  ...(cfg.requireTokenRedirectUri ? { allowOmittingSingleRegisteredRedirectUri: false } : {}),
});
provider.proxy = false;

// Record what the AS decided, with the JWT headers it verified (kid/alg), for assertions.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/request' || ctx.path === '/token') {
    const body = ctx.oidc?.body || {};
    record({
      path: ctx.path,
      port: ctx.req.socket.localPort,
      status: ctx.status,
      error: ctx.body?.error,
      error_description: ctx.body?.error_description,
      interaction_id: ctx.get('x-fapi-interaction-id'),
      request_kid: decodeJwtHeader(body.request)?.kid,
      request_alg: decodeJwtHeader(body.request)?.alg,
      request_claims: decodeJwtPayload(body.request),
      assertion_kid: decodeJwtHeader(body.client_assertion)?.kid,
      assertion_alg: decodeJwtHeader(body.client_assertion)?.alg,
      // Which parameters came as form fields (a JAR PAR sends client_id, request, assertion).
      form_params: Object.keys(body).sort(),
      assertion_jti: decodeJwtPayload(body.client_assertion)?.jti,
      assertion_iss: decodeJwtPayload(body.client_assertion)?.iss,
      assertion_aud: decodeJwtPayload(body.client_assertion)?.aud,
      // The client the AS authenticated (undefined when authentication failed first).
      client_id: ctx.oidc?.client?.clientId,
      cert_fingerprint: peerCert(ctx)?.fingerprint256,
      grant_type: body.grant_type,
      dpop_proof_header: decodeJwtHeader(ctx.get('dpop')) || undefined,
      dpop_proof_claims: decodeJwtPayload(ctx.get('dpop')) || undefined,
      dpop_nonce_sent: ctx.response.get('dpop-nonce') || undefined,
      token_type: ctx.body?.token_type,
      // The ID token's header as the AS sent it (a JWE header when it encrypted).
      id_token_header: decodeJwtHeader(ctx.body?.id_token) || undefined,
      id_token_parts: ctx.body?.id_token ? String(ctx.body.id_token).split('.').length : undefined,
    });
  }
});
// Resource calls at /me (userinfo, or the AS as a resource server): what the AS saw and why
// it refused (test fixture: the proof is recorded so a test can replay it directly).
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/me') {
    record({
      path: '/me',
      status: ctx.status,
      port: ctx.req.socket.localPort,
      authorization_scheme: String(ctx.get('authorization')).split(' ')[0],
      authorization: ctx.get('authorization'),
      dpop_proof: ctx.get('dpop') || undefined,
      www_authenticate: ctx.response.get('www-authenticate') || undefined,
      error_detail: ctx.state.errorDetail,
      content_type: ctx.response.get('content-type') || undefined,
      // Parts of a JWT userinfo body (3 signed, 5 encrypted).
      body_parts: typeof ctx.body === 'string' ? ctx.body.split('.').length : undefined,
    });
  }
});
provider.on('userinfo.error', (ctx, err) => { ctx.state.errorDetail = err.error_detail || err.error_description; });
provider.on('server_error', (ctx, err) => { console.error('AS server_error', err); });
// Every code and token value this AS issued, for the log-hygiene test (zz-log-hygiene): the
// opaque values (codes, access and refresh tokens) are their `jti`.
const issuedFile = `${process.argv[2]}.issued`;
for (const ev of ['authorization_code.saved', 'access_token.saved', 'refresh_token.saved', 'client_credentials.saved']) {
  provider.on(ev, (token) => { if (token?.jti) fs.appendFileSync(issuedFile, `${ev.split('.')[0]} ${token.jti}\n`); });
}

const callback = provider.callback();
const discoveryRewrite = cfg.rewriteMetadata || null; // { field: url } overrides, e.g. PAR on another host

function handler(req, res) {
  const path = new URL(req.url, cfg.issuer).pathname;
  const iid = req.headers['x-fapi-interaction-id'] || crypto.randomUUID();
  res.setHeader('x-fapi-interaction-id', iid);
  if (path === '/__test/events') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(events));
    return;
  }
  if (path === '/__test/id_token_fault') { setFault(req, res, 'id_token', ID_TOKEN_FAULTS); return; }
  if (path === '/__test/authz_fault') { setFault(req, res, 'authz', AUTHZ_FAULTS); return; }
  if (BACKCHANNEL.has(path) && !req.socket.authorized) {
    record({ path, status: 401, error: 'mtls_required', interaction_id: req.headers['x-fapi-interaction-id'], tls_error: String(req.socket.authorizationError || 'no certificate') });
    res.writeHead(401, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ error: 'invalid_client', error_description: 'a client certificate issued by the trusted CA is required' }));
    return;
  }
  if (discoveryRewrite && path === '/.well-known/openid-configuration') {
    const chunks = [];
    const origWrite = res.write.bind(res);
    const origEnd = res.end.bind(res);
    res.write = (c) => { chunks.push(Buffer.from(c)); return true; };
    res.end = (c) => {
      if (c) chunks.push(Buffer.from(c));
      const doc = JSON.parse(Buffer.concat(chunks).toString());
      Object.assign(doc, discoveryRewrite);
      const out = Buffer.from(JSON.stringify(doc));
      res.setHeader('content-length', out.length);
      origWrite(out);
      origEnd();
    };
  }
  const idTokenFault = faults.id_token;
  if (idTokenFault && path === '/token') {
    interceptResponse(res, (body) => {
      let doc;
      try { doc = JSON.parse(body.toString()); } catch { return null; }
      if (res.statusCode !== 200 || typeof doc.id_token !== 'string') return null;
      if (idTokenFault === 'no_expires_in') delete doc.expires_in;
      else if (idTokenFault === 'token_type_lower') doc.token_type = doc.token_type.toLowerCase();
      else if (idTokenFault === 'id_token_number') doc.id_token = 123;
      else if (idTokenFault === 'id_token_missing') delete doc.id_token;
      else doc.id_token = faultyIdToken(doc.id_token, idTokenFault);
      record({ path: '/token', id_token_fault: idTokenFault });
      return Buffer.from(JSON.stringify(doc));
    });
  }
  // The authorization endpoint (and its post-login resume at /auth/:uid) redirecting back to
  // the client: only the `iss` query parameter is changed or removed; the body is left alone.
  const authzFault = faults.authz;
  if (authzFault && (path === '/auth' || path.startsWith('/auth/'))) {
    interceptResponse(res, () => {
      const loc = res.getHeader('location');
      if (res.statusCode < 300 || res.statusCode > 399 || typeof loc !== 'string' || res.headersSent) return null;
      let u;
      try { u = new URL(loc); } catch { return null; }
      if (!u.searchParams.has('iss')) return null; // an interaction redirect, or JARM
      if (authzFault === 'iss_missing') u.searchParams.delete('iss');
      else u.searchParams.set('iss', 'https://other-issuer.example');
      res.setHeader('location', u.toString());
      record({ path, authz_fault: authzFault });
      return null;
    });
  }
  // Test knob: a slow PAR endpoint (graceful-shutdown tests).
  if (cfg.parDelayMs && path === '/request') {
    setTimeout(() => callback(req, res), cfg.parDelayMs);
    return;
  }
  callback(req, res);
}

const tlsOpts = {
  key: read(cfg.tls.key), cert: read(cfg.tls.cert), ca: [read(cfg.tls.ca)],
  requestCert: true, rejectUnauthorized: false,
};
// cfg.topLevelNoCert: the issuer's port asks for no client certificate (its back-channel
// endpoints then refuse every call); only the extra ports, listed as mtls_endpoint_aliases
// through rewriteMetadata, take one (RFC 8705 §5 aliases on another port).
for (const port of [cfg.port, ...(cfg.extraPorts || [])]) {
  const opts = cfg.topLevelNoCert && port === cfg.port ? { ...tlsOpts, requestCert: false } : tlsOpts;
  https.createServer(opts, handler).listen(port, '127.0.0.1', () => {
    console.log(`AS listening on https://127.0.0.1:${port} issuer=${cfg.issuer}`);
  });
}
