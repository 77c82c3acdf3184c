// An unmodified app on a real third-party OAuth library: Express + passport-oauth2 1.8,
// written as passport-oauth2's README shows ("Configure Strategy" and "Authenticate
// Requests": `new OAuth2Strategy({ authorizationURL, tokenURL, clientID, clientSecret,
// callbackURL }, verify)`, `passport.authenticate('oauth2')` on the login and callback
// routes), with `userProfile` overridden the way its README asks ("sub-class this strategy")
// and provider strategies such as passport-github do: `this._oauth2.get(url, accessToken)`.
// node-oauth's defaults are kept on purpose: the token call sends client_id/client_secret in
// the form body, and the userinfo GET carries the token as `?access_token=` (no
// `useAuthorizationHeaderforGET`).
//
// par-sidecar-specific settings: only URLs. `tokenURL` and the userinfo URL are the egress
// listener's routes; `authorizationURL` is the AS's real one. `scope: 'openid'` and
// `session: false` (passport's documented option; the page is rendered from `req.user`, so
// the app needs no session store) are the only other options.
//
// Usage: node passport-oauth2-app.mjs CONFIG.json   (the config of tests/e2e/lib/stack.mjs)
import fs from 'node:fs';
import express from 'express';
import passport from 'passport';
import OAuth2Strategy from 'passport-oauth2';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

class UserinfoStrategy extends OAuth2Strategy {
  userProfile(accessToken, done) {
    this._oauth2.get(cfg.userinfo_endpoint, accessToken, (err, body) => {
      if (err) return done(new Error(`userinfo failed: ${err.statusCode} ${err.data}`));
      try { return done(null, JSON.parse(body)); } catch (e) { return done(e); }
    });
  }
}

passport.use(new UserinfoStrategy({
  authorizationURL: cfg.authorization_endpoint,
  tokenURL: cfg.token_endpoint,
  clientID: cfg.client_id,
  clientSecret: cfg.client_secret,
  callbackURL: `${cfg.base_url}/callback`,
  scope: 'openid',
}, (accessToken, refreshToken, profile, cb) => cb(null, { id: profile.sub })));

const app = express();
app.get('/', (req, res) => res.send('<h1>passport-oauth2 app</h1><a href="/login">Log in</a>'));
app.get('/login', passport.authenticate('oauth2', { session: false }));
app.get('/callback',
  passport.authenticate('oauth2', { session: false, failureRedirect: '/' }),
  (req, res) => res.send(`<h1>Welcome</h1><p id="sub">${esc(req.user.id)}</p>`));
app.use((err, req, res, next) => { // eslint-disable-line no-unused-vars
  console.error(err);
  res.status(500).send(`<p id="error">app error: ${esc(err.message)}</p>`);
});
app.listen(cfg.port, '127.0.0.1', () => console.log(`passport-oauth2 app on http://127.0.0.1:${cfg.port}`));
