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
}

impl AuthorizeError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthorizeError::TooLong(_) | AuthorizeError::TooManyParams(_) => "authorize_redirect_too_large",
            AuthorizeError::NearMiss | AuthorizeError::Relative | AuthorizeError::Fragment => {
                "authorize_redirect_rejected"
            }
            AuthorizeError::Duplicate(_) => "duplicate_parameter",
            AuthorizeError::Forbidden(_) => "forbidden_parameter",
            AuthorizeError::Pkce(_) => "invalid_pkce",
            AuthorizeError::UnsupportedResponseMode(_) => "unsupported_response_mode",
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

fn norm_host(h: &str) -> String {
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

/// Classifies one upstream `Location` value.
pub fn detect(location: &[u8], ep: &AuthorizeEndpoint, client_id: &ClientId, max_len: usize) -> Detection {
    let Ok(loc) = std::str::from_utf8(location) else {
        // Not UTF-8: it cannot be a URL we recognise; if it names our host, refuse.
        return if contains_ignore_case(location, ep.host.as_bytes()) {
            Detection::Rejected(AuthorizeError::BadHeader)
        } else {
            Detection::NotOurs
        };
    };
    let loc = loc.trim_matches(|c: char| c == ' ' || c == '\t');
    let parsed = if loc.starts_with("//") {
        // Protocol-relative: the browser would pick the scheme. Ours? Then refuse it.
        return match Url::parse(&format!("https:{loc}")) {
            Ok(u) if host_matches(&u, ep) && u.path() == ep.url.path() => Detection::Rejected(AuthorizeError::Relative),
            _ => Detection::NotOurs,
        };
    } else {
        match Url::parse(loc) {
            Ok(u) => u,
            // Relative paths are the app's own pages.
            Err(_) => return Detection::NotOurs,
        }
    };
    if !host_matches(&parsed, ep) || parsed.path() != ep.url.path() {
        return Detection::NotOurs;
    }
    if parsed.scheme() != ep.url.scheme()
        || parsed.port_or_known_default() != Some(ep.port)
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Detection::Rejected(AuthorizeError::NearMiss);
    }
    if loc.len() > max_len {
        return Detection::Rejected(AuthorizeError::TooLong(max_len));
    }
    if parsed.fragment().is_some() {
        return Detection::Rejected(AuthorizeError::Fragment);
    }
    // Parse the raw query, not the URL crate's normalised one: we want to see exactly what
    // the app sent, including bad escapes.
    let raw_query = loc.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pairs = match parse_query(raw_query) {
        Ok(p) => p,
        Err(e) => return Detection::Rejected(e),
    };
    if pairs.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.as_str()) != Some(client_id.as_str()) {
        return Detection::NotOurs;
    }
    match build_params(pairs, ep) {
        Ok(params) => Detection::Ours(AuthorizeRedirect { params }),
        Err(e) => Detection::Rejected(e),
    }
}

fn host_matches(u: &Url, ep: &AuthorizeEndpoint) -> bool {
    u.host_str().map(norm_host).as_deref() == Some(ep.host.as_str())
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
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
