//! Is this `Location` the app's authorize redirect to our AS? Parse it strictly; build the
//! rewritten `Location`.
//!
//! The parser never panics and never guesses: a redirect that points at the configured
//! authorization endpoint but cannot be parsed exactly is an error (fail closed), while a
//! redirect anywhere else passes through untouched.

use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use crate::protocol::ClientId;

/// Why an authorize redirect aimed at our AS could not be turned into a PAR. Each variant
/// has a stable code for the error page and metrics.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    #[error("Location is longer than {0} bytes")]
    TooLong(usize),
    #[error("Location is not valid UTF-8 / visible ASCII")]
    BadHeader,
    #[error("authorize redirect uses a different scheme, port or userinfo than the discovered endpoint")]
    NearMiss,
    #[error("protocol-relative authorize redirect")]
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
    pub fn code(&self) -> &'static str {
        match self {
            AuthorizeError::TooLong(_) | AuthorizeError::TooManyParams(_) => "authorize_redirect_too_large",
            AuthorizeError::NearMiss
            | AuthorizeError::Relative
            | AuthorizeError::Fragment
            | AuthorizeError::ClientMismatch => "authorize_redirect_rejected",
            AuthorizeError::Duplicate(_) => "duplicate_parameter",
            AuthorizeError::Forbidden(_) => "forbidden_parameter",
            AuthorizeError::Pkce(_) => "invalid_pkce",
            AuthorizeError::UnsupportedResponseMode(_) => "unsupported_response_mode",
            AuthorizeError::UnsupportedResponseType(_) => "unsupported_response_type",
            AuthorizeError::InsecureRedirectUri => "insecure_redirect_uri",
            _ => "malformed_authorize_redirect",
        }
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

/// The discovered authorization endpoint, pre-split for cheap matching.
#[derive(Debug, Clone)]
pub struct AuthorizeEndpoint {
    url: Url,
    host: String,
    port: u16,
    /// Query parameters that are part of the endpoint itself (AZ-3).
    fixed_query: Vec<(String, String)>,
}

pub fn norm_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

impl AuthorizeEndpoint {
    pub fn new(url: Url) -> Self {
        let host = norm_host(url.host_str().unwrap_or_default());
        let port = url.port_or_known_default().unwrap_or(443);
        let fixed_query = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        AuthorizeEndpoint {
            url,
            host,
            port,
            fixed_query,
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `authorization_endpoint?client_id=..&request_uri=..`, keeping any query the endpoint
    /// itself has (AZ-1, AZ-3). Form-urlencoded, so `:` in the URN is `%3A`.
    pub fn rewritten_location(&self, client_id: &ClientId, request_uri: &str) -> String {
        let mut u = self.url.clone();
        u.query_pairs_mut()
            .append_pair("client_id", client_id.as_str())
            .append_pair("request_uri", request_uri);
        u.into()
    }
}

/// The app's authorize redirect, parsed: every parameter, decoded and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizeRedirect {
    pub params: Map<String, Value>,
}

impl AuthorizeRedirect {
    pub fn get_str(&self, k: &str) -> Option<&str> {
        self.params.get(k).and_then(Value::as_str)
    }
}

#[derive(Debug, PartialEq)]
pub enum Detection {
    /// Not a redirect to our authorization endpoint for our client: pass through.
    NotOurs,
    Ours(AuthorizeRedirect),
    /// Aimed at our endpoint but unusable: fail closed.
    Rejected(AuthorizeError),
}

/// One AS's discovered authorization endpoint and the client_id the sidecar uses there:
/// what a redirect must match to be pushed to that AS.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the AS in the registry.
    pub as_index: usize,
    pub endpoint: AuthorizeEndpoint,
    pub client_id: ClientId,
}

impl AuthorizeEndpoint {
    /// The normalised host the host index is keyed by.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Same scheme, host, port and path: two ASs whose redirects cannot be told apart by URL.
    pub fn same_endpoint(&self, other: &AuthorizeEndpoint) -> bool {
        self.url.scheme() == other.url.scheme()
            && self.host == other.host
            && self.port == other.port
            && self.url.path() == other.url.path()
    }
}

/// Classifies one upstream `Location` value against one AS (single-AS callers and tests).
pub fn detect(location: &[u8], ep: &AuthorizeEndpoint, client_id: &ClientId, max_len: usize) -> Detection {
    let only = [Candidate {
        as_index: 0,
        endpoint: ep.clone(),
        client_id: client_id.clone(),
    }];
    detect_among(location, &|h| (h == ep.host).then_some(&only[..]), max_len).1
}

/// Classifies one upstream `Location` value against every configured AS. `lookup` maps a
/// normalised host to the ASs whose authorization endpoint is on it (a hash lookup, so the
/// cost does not grow with the number of ASs). Returns the AS the decision concerns.
pub fn detect_among<'a>(
    location: &[u8],
    lookup: &dyn Fn(&str) -> Option<&'a [Candidate]>,
    max_len: usize,
) -> (Option<usize>, Detection) {
    let on_host = |u: &Url| u.host_str().map(norm_host).and_then(|h| lookup(&h));
    let Ok(loc) = std::str::from_utf8(location) else {
        // Not UTF-8: it cannot be a URL we recognise; if it names an AS host, refuse.
        let lossy = String::from_utf8_lossy(location);
        return match Url::parse(lossy.trim()).ok().as_ref().and_then(on_host) {
            Some(c) => (Some(c[0].as_index), Detection::Rejected(AuthorizeError::BadHeader)),
            None => (None, Detection::NotOurs),
        };
    };
    let loc = loc.trim_matches(|c: char| c == ' ' || c == '\t');
    if loc.starts_with("//") {
        // Protocol-relative: the browser would pick the scheme. Ours? Then refuse it.
        let Ok(u) = Url::parse(&format!("https:{loc}")) else {
            return (None, Detection::NotOurs);
        };
        return match on_host(&u).and_then(|c| c.iter().find(|c| u.path() == c.endpoint.url.path())) {
            Some(c) => (Some(c.as_index), Detection::Rejected(AuthorizeError::Relative)),
            None => (None, Detection::NotOurs),
        };
    }
    // Relative paths are the app's own pages.
    let Ok(parsed) = Url::parse(loc) else {
        return (None, Detection::NotOurs);
    };
    let Some(on_host) = on_host(&parsed) else {
        return (None, Detection::NotOurs);
    };
    let mut same_path = on_host
        .iter()
        .filter(|c| parsed.path() == c.endpoint.url.path())
        .peekable();
    let Some(first) = same_path.peek().map(|c| c.as_index) else {
        return (None, Detection::NotOurs);
    };
    let port = parsed.port_or_known_default();
    let exact: Vec<&Candidate> = same_path
        .filter(|c| parsed.scheme() == c.endpoint.url.scheme() && port == Some(c.endpoint.port))
        .collect();
    if exact.is_empty() || !parsed.username().is_empty() || parsed.password().is_some() {
        return (Some(first), Detection::Rejected(AuthorizeError::NearMiss));
    }
    let reject = |e| (Some(exact[0].as_index), Detection::Rejected(e));
    if loc.len() > max_len {
        return reject(AuthorizeError::TooLong(max_len));
    }
    if parsed.fragment().is_some() {
        return reject(AuthorizeError::Fragment);
    }
    // Parse the raw query, not the URL crate's normalised one: we want to see exactly what
    // the app sent, including bad escapes.
    let raw_query = loc.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pairs = match parse_query(raw_query) {
        Ok(p) => p,
        Err(e) => return reject(e),
    };
    // Two ASs behind one authorize endpoint (a hub) are told apart by the client_id.
    let client_id = pairs.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.as_str());
    let Some(c) = exact.iter().find(|c| Some(c.client_id.as_str()) == client_id) else {
        // A client_id the sidecar uses at another AS on this host, sent to this endpoint: an
        // app mixing up banks. Fail closed rather than forward a plain authorize request.
        if on_host.iter().any(|c| Some(c.client_id.as_str()) == client_id) {
            return reject(AuthorizeError::ClientMismatch);
        }
        return (None, Detection::NotOurs);
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
        if ep.fixed_query.iter().any(|(fk, fv)| *fk == k && *fv == v) {
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
