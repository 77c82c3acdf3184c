//! Is an authorize redirect the app's own login, or a browser's choice bounced off an open
//! redirect? Everything the app puts in its authorize redirect is pushed and signed with the
//! TPP's key; a legacy app's `?next=` / `?returnUrl=` redirect would let whoever wrote the
//! link choose the `redirect_uri`, `scope`, `prompt`, `login_hint` or an
//! `authorization_details` payment. Facts from the *request* that produced the redirect
//! decide:
//! - the `redirect_uri` must be a callback this sidecar checks: the request's own origin (or
//!   one of `par.redirect_uri_origins`) and, with `callback.paths`, one of those paths;
//! - an authorize parameter found (decoded, up to three levels) in that request's path or query
//!   was reflected from the request: an open redirect, refused;
//! - optional: only requests on `par.login_paths` may start a login, and only parameters in
//!   `client.allowed_authorize_parameters` (plus the core set) may be sent.
//!
//! Pure: no pingora, no state; `redirect` calls it with the request's facts.

use url::Url;

use crate::errors::FailureCode;
use crate::protocol::origin::{canonical_host, ConfiguredOrigin};

/// What the request that produced an upstream redirect said about itself. Borrowed from
/// the request header: built for every 3xx, read only for an authorize redirect.
#[derive(Debug, Clone, Copy)]
pub struct RedirectContext<'a> {
    /// `http`/`https` as a trusted ingress reported it (`X-Forwarded-Proto`); `None` when
    /// unknown (the public listener itself is plain TCP behind the TLS-terminating ingress).
    pub scheme: Option<&'a str>,
    /// `host[:port]` the browser addressed (`Host`, the URI's authority, or behind a trusted
    /// ingress `X-Forwarded-Host`).
    pub authority: Option<&'a str>,
    pub path: &'a str,
    /// The raw query, as the browser sent it.
    pub query: Option<&'a str>,
}

impl<'a> RedirectContext<'a> {
    /// From the request header. `trust_forwarded`: a trusted ingress is configured
    /// (`limits.client_address_header`), so its `X-Forwarded-Host`/`-Proto` (rightmost entry:
    /// the one the ingress next to the sidecar set) are the browser's view; otherwise they are
    /// whatever the client wrote and are ignored.
    pub fn from_request(uri: &'a http::Uri, headers: &'a http::HeaderMap, trust_forwarded: bool) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let forwarded_host = trust_forwarded.then(|| header("x-forwarded-host")).flatten();
        let authority = forwarded_host
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .or_else(|| header("host"));
        let scheme = trust_forwarded
            .then(|| header("x-forwarded-proto"))
            .flatten()
            .filter(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"));
        RedirectContext {
            scheme,
            authority,
            path: uri.path(),
            query: uri.query(),
        }
    }

    /// A redirect answering `GET /login` on `https://app.example`: for callers without a
    /// request (integration tests and benchmarks, whose app lives there).
    pub fn app_login() -> Self {
        RedirectContext {
            scheme: Some("https"),
            authority: Some("app.example"),
            path: "/login",
            query: None,
        }
    }
}

/// The sidecar's policy for one AS, borrowed from the settings.
pub struct Policy<'a> {
    /// `par.login_paths`; empty: any path may start a login.
    pub login_paths: &'a [String],
    /// `client.allowed_authorize_parameters`; `None`: any parameter the parser accepts.
    pub allowed_parameters: Option<&'a [String]>,
    /// `par.redirect_uri_origins`; empty: the request's own origin.
    pub redirect_uri_origins: &'a [ConfiguredOrigin],
    /// With `callback.paths` configured: whether a path is one of them. `None`: paths are
    /// learned from pushed requests (any path on the right origin is accepted).
    pub is_callback_path: Option<&'a dyn Fn(&str) -> bool>,
}

/// Why a login start was refused before anything was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `par.login_paths` is set and the request was on another path.
    NotALoginPath,
    /// The parameter's value (or the whole Location) is in the request's URL.
    Reflected(String),
    /// Not in the core set or `client.allowed_authorize_parameters`.
    ParameterNotAllowed(String),
    /// The `redirect_uri` is not a callback this sidecar sees; the reason names the part.
    RedirectUriForeign(&'static str),
}

impl Refusal {
    pub fn failure(&self) -> FailureCode {
        match self {
            Refusal::NotALoginPath => FailureCode::LoginPathNotAllowed,
            Refusal::Reflected(_) => FailureCode::OpenRedirect,
            Refusal::ParameterNotAllowed(_) => FailureCode::AuthorizeParameterNotAllowed,
            Refusal::RedirectUriForeign(_) => FailureCode::RedirectUriForeign,
        }
    }

    /// What the log line names: a parameter name or the part that differs, never a value.
    pub fn detail(&self) -> &str {
        match self {
            Refusal::NotALoginPath => "path",
            Refusal::Reflected(p) | Refusal::ParameterNotAllowed(p) => p,
            Refusal::RedirectUriForeign(why) => why,
        }
    }
}

/// Always allowed: what every authorization-code login sends (RFC 6749, OIDC, PKCE, JARM).
const CORE_PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
];

/// Not checked for reflection: fixed by the flow (`client_id`, `response_type`), or
/// harmless when a browser chooses them. `state` is the app's own: apps commonly put the
/// page being visited (this request's URL) into it, and the sidecar seals and
/// browser-binds it anyway.
const NOT_REFLECTION_CHECKED: &[&str] = &[
    "client_id",
    "response_type",
    "state",
    "ui_locales",
    "claims_locales",
    "display",
];

/// Values at least this long are looked for anywhere in the request; shorter ones (`login`,
/// `openid`, `300`) only as `name=value`, where they cannot occur by chance.
const MIN_FREE_VALUE: usize = 8;

/// A login route's URL is short; one this long would make the reflection scan costly
/// (64 parameters x 4 texts) and is refused rather than scanned in part, since a
/// reflected value could sit past any prefix.
const MAX_CHECKED_TARGET: usize = 64 * 1024;

/// Screens one authorize redirect against the request that produced it: the login path,
/// reflection, the parameter allowlist. `location` is the app's Location; `pairs` its query
/// parameters as pushed, decoded (the authorize parser's strict reading). The
/// `redirect_uri` is screened by [`check_redirect_uri`], after its scheme.
pub fn screen(
    cx: &RedirectContext<'_>,
    location: &str,
    pairs: &[(String, String)],
    policy: &Policy<'_>,
) -> Result<(), Refusal> {
    if !policy.login_paths.is_empty() && !policy.login_paths.iter().any(|p| path_key(p) == path_key(cx.path)) {
        return Err(Refusal::NotALoginPath);
    }
    check_reflection(cx, location, pairs)?;
    if let Some(allowed) = policy.allowed_parameters {
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, _)| !CORE_PARAMETERS.contains(&k.as_str()) && !allowed.iter().any(|a| a == k))
        {
            return Err(Refusal::ParameterNotAllowed(k.chars().take(40).collect()));
        }
    }
    Ok(())
}

/// A path as a login route is matched: without `;params` and trailing slashes.
fn path_key(p: &str) -> &str {
    let p = p.split(';').next().unwrap_or(p);
    match p.trim_end_matches('/') {
        "" => "/",
        t => t,
    }
}

/// The `redirect_uri` must bring the authorization response back through this sidecar:
/// a callback anywhere else is never checked (iss, state, browser binding) here. Without a
/// `redirect_uri` the AS uses the one registered for the client, which is fine.
pub fn check_redirect_uri(cx: &RedirectContext<'_>, uri: &str, policy: &Policy<'_>) -> Result<(), Refusal> {
    let u = Url::parse(uri).map_err(|_| Refusal::RedirectUriForeign("unparseable"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Refusal::RedirectUriForeign("userinfo"));
    }
    let on_origin = if policy.redirect_uri_origins.is_empty() {
        same_origin_as_request(cx, &u)?
    } else {
        ConfiguredOrigin::of(&u).is_some_and(|o| policy.redirect_uri_origins.contains(&o))
    };
    if !on_origin {
        return Err(Refusal::RedirectUriForeign("origin"));
    }
    if let Some(is_callback) = policy.is_callback_path {
        if !is_callback(u.path()) {
            return Err(Refusal::RedirectUriForeign("path"));
        }
    }
    Ok(())
}

/// Host and port equal to what the browser addressed; the scheme too when a trusted
/// ingress reported it. Without it the scheme is not known here (TLS ends at the ingress):
/// a port-less `Host` then matches a `redirect_uri` on its scheme's default port.
fn same_origin_as_request(cx: &RedirectContext<'_>, u: &Url) -> Result<bool, Refusal> {
    let authority = cx.authority.ok_or(Refusal::RedirectUriForeign("no Host"))?;
    let (host, port) = split_authority(authority).ok_or(Refusal::RedirectUriForeign("bad Host"))?;
    let host = url::Host::parse(host).map_err(|_| Refusal::RedirectUriForeign("bad Host"))?;
    let Some(uri_host) = u.host().map(|h| canonical_host(h.to_owned())) else {
        return Ok(false);
    };
    if canonical_host(host) != uri_host {
        return Ok(false);
    }
    let uri_port = u.port_or_known_default();
    Ok(match cx.scheme {
        Some(s) => {
            let default = if s.eq_ignore_ascii_case("https") { 443 } else { 80 };
            u.scheme().eq_ignore_ascii_case(s) && uri_port == Some(port.unwrap_or(default))
        }
        None => match port {
            Some(p) => uri_port == Some(p),
            None => u.port().is_none(),
        },
    })
}

/// `host[:port]`, `[v6]:port`. `None` for a port that is not a number.
fn split_authority(a: &str) -> Option<(&str, Option<u16>)> {
    let a = a.rsplit('@').next()?;
    let (host, port) = if a.starts_with('[') {
        let end = a.find(']')?;
        let rest = &a[end + 1..];
        (&a[..=end], rest.strip_prefix(':'))
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse().ok()?),
    };
    Some((host, port))
}

/// Refuses when the Location, or an authorize parameter's value, appears in the request's
/// path or query as sent or decoded (see [`request_texts`]).
fn check_reflection(cx: &RedirectContext<'_>, location: &str, pairs: &[(String, String)]) -> Result<(), Refusal> {
    if cx.path.len() + cx.query.map_or(0, str::len) > MAX_CHECKED_TARGET {
        return Err(Refusal::Reflected("(request URL over 64 KiB)".into()));
    }
    let texts = request_texts(cx);
    let found = |needle: &str| texts.iter().any(|t| t.contains(needle));
    let location = location.trim();
    if location.len() >= MIN_FREE_VALUE && found(location) {
        return Err(Refusal::Reflected("Location".into()));
    }
    for (k, v) in pairs {
        if v.is_empty() || NOT_REFLECTION_CHECKED.contains(&k.as_str()) {
            continue;
        }
        let hit = if v.len() >= MIN_FREE_VALUE {
            found(v)
        } else {
            found(&format!("{k}={v}"))
        };
        if hit {
            return Err(Refusal::Reflected(k.chars().take(40).collect()));
        }
    }
    Ok(())
}

/// The request's path and query: as sent, and percent-decoded up to three times (`+` as a
/// space, invalid escapes kept), each level only when it differs from the one before. A
/// parameter inside an authorize URL inside a `next` that another page encoded again is
/// plain text only after the third decoding.
fn request_texts(cx: &RedirectContext<'_>) -> Vec<String> {
    let raw = match cx.query {
        Some(q) => format!("{}?{q}", cx.path),
        None => cx.path.to_string(),
    };
    let mut texts = vec![raw];
    for _ in 0..3 {
        let last = texts.last().expect("one text at least");
        let next = lenient_decode(last);
        if next == *last {
            break;
        }
        texts.push(next);
    }
    texts
}

fn lenient_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
