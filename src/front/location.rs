//! Is this `Location` the app's authorize redirect to our AS? Parse it strictly; build the
//! rewritten `Location`.
//!
//! The parser never panics and never guesses. The `Location` is read the way a browser
//! reads it (WHATWG URL parsing: backslashes, control characters, scheme-relative forms,
//! case, default ports, dot segments). A redirect to a host of a loaded AS that carries a
//! client_id the sidecar uses is either exactly that AS's authorization endpoint (pushed) or
//! refused (fail closed): it is never forwarded with its plain query. Everything else —
//! other hosts, other clients, the app's own pages — passes through untouched.

use crate::errors::FailureCode;
use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use crate::protocol::authorize::{norm_host, norm_path, AuthorizeEndpoint, AuthorizeRedirect, Candidate};
use crate::protocol::{AsIndex, ClientId};

/// Why an authorize redirect aimed at our AS could not be turned into a PAR. Each variant
/// has a stable code for the error page and metrics.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    #[error("Location is longer than {0} bytes")]
    TooLong(usize),
    #[error("Location is not valid UTF-8 / visible ASCII")]
    BadHeader,
    #[error(
        "redirect to an AS host with the sidecar's client_id is not exactly the discovered authorize endpoint (path, scheme, port or userinfo differ)"
    )]
    NearMiss,
    #[error("protocol-relative redirect to an AS host with the sidecar's client_id")]
    Relative,
    #[error("authorize redirect carries a fragment")]
    Fragment,
    #[error("invalid percent-encoding in parameter `{0}`")]
    BadPercentEncoding(String),
    #[error("parameter `{0}` is not UTF-8")]
    BadUtf8(String),
    #[error("control character in parameter `{0}`")]
    ControlChar(String),
    #[error("parameter `{0}` appears more than once")]
    Duplicate(String),
    #[error("parameter `{0}` must not be sent by the app")]
    Forbidden(String),
    #[error("parameter `{0}` is not valid JSON of the right shape")]
    BadJson(String),
    #[error("parameter `{0}` must be a non-negative integer")]
    BadNumber(String),
    #[error("empty parameter name")]
    EmptyName,
    #[error("more than {0} parameters")]
    TooManyParams(usize),
    #[error("PKCE: {0}")]
    Pkce(&'static str),
    #[error("response_mode `{0}` is not supported (use query, or JARM via client.response_mode)")]
    UnsupportedResponseMode(String),
    #[error(
        "response_type `{0}` is not supported: FAPI 2.0 allows only `code` (a fragment response cannot be checked)"
    )]
    UnsupportedResponseType(String),
    #[error("redirect_uri must be https (or http on a loopback address)")]
    InsecureRedirectUri,
    #[error("authorize redirect to one AS's endpoint carries the client_id the sidecar uses at another AS")]
    ClientMismatch,
}

impl AuthorizeError {
    /// The browser-facing failure this error becomes.
    pub fn failure(&self) -> FailureCode {
        match self {
            AuthorizeError::TooLong(_) | AuthorizeError::TooManyParams(_) => FailureCode::AuthorizeRedirectTooLarge,
            AuthorizeError::NearMiss
            | AuthorizeError::Relative
            | AuthorizeError::Fragment
            | AuthorizeError::ClientMismatch => FailureCode::AuthorizeRedirectRejected,
            AuthorizeError::Duplicate(_) => FailureCode::DuplicateParameter,
            AuthorizeError::Forbidden(_) => FailureCode::ForbiddenParameter,
            AuthorizeError::Pkce(_) => FailureCode::InvalidPkce,
            AuthorizeError::UnsupportedResponseMode(_) => FailureCode::UnsupportedResponseMode,
            AuthorizeError::UnsupportedResponseType(_) => FailureCode::UnsupportedResponseType,
            AuthorizeError::InsecureRedirectUri => FailureCode::InsecureRedirectUri,
            _ => FailureCode::MalformedAuthorizeRedirect,
        }
    }

    /// The stable code (metric label).
    pub fn code(&self) -> &'static str {
        self.failure().as_str()
    }
}

/// Parameters the app may not set: PAR/JAR plumbing and JWT registered claims that the
/// sidecar owns. `request`/`request_uri` are a hard error, not silently dropped (PAR-4).
const FORBIDDEN: &[&str] = &[
    "request",
    "request_uri",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "sub",
];
/// Parameters whose values are JSON, carried as JSON inside the request object (JAR §4).
const JSON_OBJECT_PARAMS: &[&str] = &["claims"];
const JSON_ARRAY_PARAMS: &[&str] = &["authorization_details"];
const NUMBER_PARAMS: &[&str] = &["max_age"];
const MAX_PARAMS: usize = 64;

#[derive(Debug, PartialEq)]
pub enum Detection {
    /// Not a redirect to our authorization endpoint for our client: pass through.
    NotOurs,
    Ours(AuthorizeRedirect),
    /// Aimed at our endpoint but unusable: fail closed.
    Rejected(AuthorizeError),
}

/// Classifies one upstream `Location` value against one AS (single-AS callers and tests).
pub fn detect(location: &[u8], ep: &AuthorizeEndpoint, client_id: &ClientId, max_len: usize) -> Detection {
    let only = [Candidate {
        as_index: AsIndex::new(0),
        endpoint: ep.clone(),
        client_id: client_id.clone(),
        end_session: None,
    }];
    let ours = |c: &str| c == client_id.as_str();
    detect_among(location, &|h| (h == ep.host()).then_some(&only[..]), &ours, max_len).1
}

/// Where a browser sends the user for one `Location` value.
#[derive(Debug)]
pub enum BrowserTarget {
    /// An absolute URL. `authority`: the scheme is followed by two slashes (`/` or `\`), so
    /// the host does not depend on the scheme of the app's own page (`https:as.example/x` is
    /// a path on the app when the app is on https, a host when it is on http).
    Absolute { url: Url, authority: bool },
    /// `//host/..`, `\\host/..`, `/\host/..`: the browser keeps the app's scheme (resolved
    /// here against https).
    SchemeRelative(Url),
}

impl BrowserTarget {
    pub fn url(&self) -> &Url {
        match self {
            BrowserTarget::Absolute { url, .. } | BrowserTarget::SchemeRelative(url) => url,
        }
    }
}

/// The characters a browser's URL parser acts on: leading and trailing C0 controls and spaces
/// trimmed, tabs and newlines removed (WHATWG URL, basic URL parser, first steps).
fn significant(loc: &str) -> impl Iterator<Item = char> + '_ {
    loc.trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
}

fn two_slashes(mut it: impl Iterator<Item = char>) -> bool {
    matches!((it.next(), it.next()), (Some('/' | '\\'), Some('/' | '\\')))
}

/// Parses a `Location` the way a browser does (the `url` crate implements the WHATWG URL
/// standard). `None` for a reference on the app's own host (a path) or an unparseable value
/// (the browser would not follow it either).
pub fn browser_target(loc: &str) -> Option<BrowserTarget> {
    match Url::parse(loc) {
        Ok(url) => {
            let authority = two_slashes(significant(loc).skip_while(|c| *c != ':').skip(1));
            Some(BrowserTarget::Absolute { url, authority })
        }
        Err(url::ParseError::RelativeUrlWithoutBase) if two_slashes(significant(loc)) => {
            static BASE: std::sync::LazyLock<Url> =
                std::sync::LazyLock::new(|| Url::parse("https://scheme-relative.invalid/").expect("static URL"));
            Url::options()
                .base_url(Some(&BASE))
                .parse(loc)
                .ok()
                .map(BrowserTarget::SchemeRelative)
        }
        Err(_) => None,
    }
}

/// The first client_id in a query that `is_client` accepts, decoded the lenient way an AS
/// would (`+`, any escapes, `;` as a separator too), so an encoded or oddly placed client_id
/// is still seen.
fn configured_client_id(query: &str, is_client: &dyn Fn(&str) -> bool) -> Option<String> {
    query
        .split(';')
        .flat_map(|s| url::form_urlencoded::parse(s.as_bytes()))
        .find(|(k, v)| k == "client_id" && is_client(v))
        .map(|(_, v)| v.into_owned())
}

/// Classifies one upstream `Location` value against every configured AS. `lookup` maps a
/// normalised host to the ASs whose authorization endpoint is on it (a hash lookup, so the
/// cost does not grow with the number of ASs); `is_client` says whether a client_id is one
/// the sidecar uses at any configured AS. Returns the AS the decision concerns.
///
/// On an AS host, with a configured client_id (see [`configured_client_id`]):
/// - exactly an endpoint there (absolute, same scheme, port and normalised path, no
///   userinfo, no control characters) is parsed and pushed, or refused if unusable;
/// - anything else (another path, trailing slash, other case, scheme-relative, other
///   scheme or port, ambiguous `https:host`) is refused.
///
/// Without a configured client_id, or on any other host, it passes through.
pub fn detect_among<'a>(
    location: &[u8],
    lookup: &dyn Fn(&str) -> Option<&'a [Candidate]>,
    is_client: &dyn Fn(&str) -> bool,
    max_len: usize,
) -> (Option<AsIndex>, Detection) {
    let on_host = |u: &Url| u.host_str().map(norm_host).and_then(|h| lookup(&h));
    let Ok(loc) = std::str::from_utf8(location) else {
        // Not UTF-8: it cannot be a URL we recognise; if it names an AS host, refuse.
        let lossy = String::from_utf8_lossy(location);
        return match browser_target(&lossy).as_ref().and_then(|t| on_host(t.url())) {
            Some(c) => (Some(c[0].as_index), Detection::Rejected(AuthorizeError::BadHeader)),
            None => (None, Detection::NotOurs),
        };
    };
    let loc = loc.trim_matches(|c: char| c == ' ' || c == '\t');
    let Some(target) = browser_target(loc) else {
        return (None, Detection::NotOurs);
    };
    let u = target.url();
    let Some(on_host) = on_host(u) else {
        return (None, Detection::NotOurs);
    };
    let known = |c: &str| is_client(c) || on_host.iter().any(|x| x.client_id.as_str() == c);
    let Some(carried) = u.query().and_then(|q| configured_client_id(q, &known)) else {
        // Another client at the AS, or the AS's own pages: not ours to judge.
        return (None, Detection::NotOurs);
    };
    // From here on the redirect is pushed or refused, never passed through.
    let hint = on_host
        .iter()
        .find(|c| c.client_id.as_str() == carried)
        .unwrap_or(&on_host[0])
        .as_index;
    let refuse = |e| (Some(hint), Detection::Rejected(e));
    let authority = match target {
        BrowserTarget::SchemeRelative(_) => return refuse(AuthorizeError::Relative),
        BrowserTarget::Absolute { authority, .. } => authority,
    };
    // Control characters inside the value: the browser would drop or escape them; an app
    // does not send them. Refuse rather than guess what was meant.
    if loc.chars().any(|c| c.is_ascii_control()) {
        return refuse(AuthorizeError::BadHeader);
    }
    let path = norm_path(u.path());
    // RP-initiated logout at exactly the discovered end_session_endpoint: the AS's page,
    // not a login; nothing to push.
    if authority
        && u.username().is_empty()
        && on_host
            .iter()
            .any(|c| c.end_session.as_ref().is_some_and(|e| e.is_at(u, &path)))
    {
        return (None, Detection::NotOurs);
    }
    let exact: Vec<&Candidate> = on_host.iter().filter(|c| c.endpoint.is_at(u, &path)).collect();
    if !authority || exact.is_empty() || !u.username().is_empty() || u.password().is_some() {
        return refuse(AuthorizeError::NearMiss);
    }
    let reject = |e| (Some(exact[0].as_index), Detection::Rejected(e));
    if loc.len() > max_len {
        return reject(AuthorizeError::TooLong(max_len));
    }
    if u.fragment().is_some() {
        return reject(AuthorizeError::Fragment);
    }
    // The query as the browser sends it (the parser only escapes what it must, so bad
    // escapes stay visible), parsed strictly.
    let pairs = match parse_query(u.query().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return reject(e),
    };
    // Two ASs behind one authorize endpoint (a hub) are told apart by the client_id.
    let client_id = pairs.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.as_str());
    let Some(c) = exact.iter().find(|c| Some(c.client_id.as_str()) == client_id) else {
        // A client_id the sidecar uses at another AS, sent to this endpoint: an app mixing up
        // banks. (Or a client_id only a lenient reading finds: refused as well.)
        return match client_id {
            Some(id) if known(id) => reject(AuthorizeError::ClientMismatch),
            _ => reject(AuthorizeError::NearMiss),
        };
    };
    match build_params(pairs, &c.endpoint) {
        Ok(params) => (Some(c.as_index), Detection::Ours(AuthorizeRedirect { params })),
        Err(e) => (Some(c.as_index), Detection::Rejected(e)),
    }
}

/// Strict `application/x-www-form-urlencoded` parsing: bad escapes, bad UTF-8, control
/// characters and duplicates are errors, never silently repaired.
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, AuthorizeError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for seg in q.split('&').filter(|s| !s.is_empty()) {
        if out.len() >= MAX_PARAMS {
            return Err(AuthorizeError::TooManyParams(MAX_PARAMS));
        }
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        let key = decode_component(k, "?")?;
        if key.is_empty() {
            return Err(AuthorizeError::EmptyName);
        }
        let value = decode_component(v, &key)?;
        if out.iter().any(|(x, _)| *x == key) {
            return Err(AuthorizeError::Duplicate(key));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn decode_component(s: &str, name: &str) -> Result<String, AuthorizeError> {
    let b = s.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .ok_or_else(|| AuthorizeError::BadPercentEncoding(name.into()))?;
                let h = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| hex.iter().all(u8::is_ascii_hexdigit))
                    .ok_or_else(|| AuthorizeError::BadPercentEncoding(name.into()))?;
                bytes.push(h);
                i += 2;
            }
            c => bytes.push(c),
        }
        i += 1;
    }
    let s = String::from_utf8(bytes).map_err(|_| AuthorizeError::BadUtf8(name.into()))?;
    if s.chars().any(|c| c.is_control()) {
        return Err(AuthorizeError::ControlChar(name.into()));
    }
    Ok(s)
}

fn build_params(pairs: Vec<(String, String)>, ep: &AuthorizeEndpoint) -> Result<Map<String, Value>, AuthorizeError> {
    let mut params = Map::new();
    for (k, v) in pairs {
        if FORBIDDEN.contains(&k.as_str()) {
            return Err(AuthorizeError::Forbidden(k));
        }
        // The endpoint's own query parameters belong to the URL, not to the request.
        if ep.fixed_query().iter().any(|(fk, fv)| *fk == k && *fv == v) {
            continue;
        }
        let value = if JSON_OBJECT_PARAMS.contains(&k.as_str()) {
            match serde_json::from_str::<Value>(&v) {
                Ok(j @ Value::Object(_)) => j,
                _ => return Err(AuthorizeError::BadJson(k)),
            }
        } else if JSON_ARRAY_PARAMS.contains(&k.as_str()) {
            match serde_json::from_str::<Value>(&v) {
                Ok(j @ Value::Array(_)) => j,
                _ => return Err(AuthorizeError::BadJson(k)),
            }
        } else if NUMBER_PARAMS.contains(&k.as_str()) {
            match v.parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => return Err(AuthorizeError::BadNumber(k)),
            }
        } else {
            Value::String(v)
        };
        params.insert(k, value);
    }
    Ok(params)
}

#[cfg(test)]
mod tests;
