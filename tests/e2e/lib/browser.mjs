// A scripted browser: cookies (with path and Secure handling), manual redirects, and the
// form posts of oidc-provider's development login and consent pages. No client
// certificate: a browser never has one.
import http from 'node:http';
import https from 'node:https';

export class Browser {
  constructor({ ca } = {}) {
    this.ca = ca;
    this.cookies = []; // { host, path, name, value, secure }
    this.trace = [];
  }

  cookieHeader(u) {
    return this.cookies
      .filter((c) => c.host === u.hostname && u.pathname.startsWith(c.path) && (!c.secure || u.protocol === 'https:'))
      .map((c) => `${c.name}=${c.value}`).join('; ');
  }

  storeCookies(u, setCookie) {
    for (const line of [].concat(setCookie || [])) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let secure = false;
      let expired = false;
      for (const a of attrs) {
        const [k, v] = a.split('=');
        if (k.toLowerCase() === 'path' && v) path = v;
        if (k.toLowerCase() === 'secure') secure = true;
        if (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now()) expired = true;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      }
      this.cookies = this.cookies.filter((c) => !(c.host === u.hostname && c.path === path && c.name === name));
      if (!expired) this.cookies.push({ host: u.hostname, path, name, value, secure });
    }
  }

  request(url, { method = 'GET', body, headers = {} } = {}) {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const h = { 'user-agent': 'par-sidecar-e2e-browser', accept: 'text/html', ...headers };
    const cookie = this.cookieHeader(u);
    if (cookie) h.cookie = cookie;
    if (body) {
      h['content-type'] = headers['content-type'] || 'application/x-www-form-urlencoded';
      h['content-length'] = Buffer.byteLength(body);
    }
    return new Promise((resolve, reject) => {
      const req = mod.request(u, { method, headers: h, ca: this.ca, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          this.storeCookies(u, res.headers['set-cookie']);
          const r = { url, status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() };
          this.trace.push({ method, url, status: r.status, location: res.headers.location });
          resolve(r);
        });
      });
      req.on('error', reject);
      req.setTimeout(15000, () => req.destroy(new Error(`timeout ${url}`)));
      if (body) req.write(body);
      req.end();
    });
  }

  /** GET (or POST) and follow redirects; returns the final response. */
  async navigate(url, opts = {}, maxHops = 15) {
    let r = await this.request(url, opts);
    for (let i = 0; i < maxHops && [301, 302, 303, 307, 308].includes(r.status) && r.headers.location; i += 1) {
      r = await this.request(new URL(r.headers.location, r.url).toString());
    }
    return r;
  }

  /** Submits the first form on an oidc-provider interaction page. */
  async submitForm(page, fields, { follow = true } = {}) {
    const form = /<form[^>]*action="([^"]+)"[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i.exec(page.body);
    if (!form) throw new Error(`no form on ${page.url}: ${page.body.slice(0, 300)}`);
    const params = new URLSearchParams();
    for (const m of form[2].matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) params.set(m[1], m[2]);
    for (const [k, v] of Object.entries(fields)) params.set(k, v);
    const action = new URL(form[1].replace(/&amp;/g, '&'), page.url).toString();
    const opts = { method: 'POST', body: params.toString() };
    return follow ? this.navigate(action, opts) : this.request(action, opts);
  }

  /**
   * Starts a login at `startUrl` and walks redirects, login and consent until the AS sends
   * the browser to a URL starting with `callbackPrefix`; returns that URL, not followed.
   */
  async loginUntil(startUrl, callbackPrefix, user = 'alice') {
    let r = await this.request(startUrl);
    for (let i = 0; i < 25; i += 1) {
      if ([301, 302, 303, 307, 308].includes(r.status) && r.headers.location) {
        const next = new URL(r.headers.location, r.url).toString();
        if (next.startsWith(callbackPrefix)) return next;
        r = await this.request(next);
        continue;
      }
      const prompt = /name="prompt" value="(login|consent)"/.exec(r.body)?.[1];
      if (!prompt) throw new Error(`stuck at ${r.url} (${r.status}): ${r.body.slice(0, 400)}`);
      r = await this.submitForm(r, prompt === 'login' ? { login: user, password: 'any' } : {}, { follow: false });
    }
    throw new Error('too many steps');
  }

  /** Drives the AS's dev login and consent pages until we leave the AS. */
  async loginAndConsent(page, user = 'alice') {
    let p = page;
    for (let i = 0; i < 4 && /name="prompt" value="(login|consent)"/.test(p.body); i += 1) {
      const prompt = /name="prompt" value="(login|consent)"/.exec(p.body)[1];
      p = await this.submitForm(p, prompt === 'login' ? { login: user, password: 'any' } : {});
    }
    return p;
  }
}
