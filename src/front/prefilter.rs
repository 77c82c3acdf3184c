//! The callback pre-filter: which requests the sidecar must look at before the app does.
//!
//! The promise is "no code reaches the app unchecked", so this must be at least as wide as
//! every app stack's router and parameter parser (issue 18 H1):
//! - paths are compared the way frameworks route them: percent-decoded (WSGI, Spring's
//!   `UrlPathHelper`, ASP.NET Core, Rails), `\` as `/` (IIS), `//` collapsed (Spring,
//!   http.server), dot segments resolved, `;params` dropped (servlets), trailing `/`, `.` and
//!   spaces ignored (IIS), ASCII case folded (ASP.NET, IIS), an extension suffix accepted
//!   (`/callback.json`: Rails formats, Spring suffix patterns);
//! - parameter names are compared the way parsers read them: percent-decoded (twice, so a
//!   double-decoding hop is covered), `+` as space, trimmed (PHP drops leading spaces), ASCII
//!   case folded (ASP.NET), cut at `[` (PHP and Rails arrays: `code[]`) or NUL, with PHP's
//!   `.`/space to `_` mangling;
//! - bodies of any type are scanned, because Spring, PHP, Rails, Django and ASP.NET read form
//!   and multipart fields as request parameters, Rails and body-parser stacks JSON keys too.
//!
//! Over-matching costs only a check (or a refusal on a callback path); under-matching is the
//! attack. Everything here is pure and allocation-free on the common path: a request with no
//! response-shaped parameter and no body never normalises its path.

use std::borrow::Cow;

use serde_json::Value;

/// Parameter names of an authorization response, as an app could read them.
pub const RESPONSE_NAMES: &[&str] = &["code", "state", "error", "iss", "response"];

/// Prefix of a state this sidecar sealed (`front::sealed_state::PREFIX`).
use crate::front::sealed_state::PREFIX as SEALED_PREFIX;

/// What the hot path learns from a query string.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueryScan {
    /// A name an app could read as `code`, `error`, `state` or `iss`.
    pub response_param: bool,
    /// A name an app could read as `response` (JARM).
    pub jarm_param: bool,
    /// `state=ps1.…`: a state this sidecar sealed, on whatever path it arrives.
    pub sealed_state: bool,
}

impl QueryScan {
    pub fn any(&self) -> bool {
        self.response_param || self.jarm_param || self.sealed_state
    }
}

/// Scans a query string (`&` and `;` both separate: old CGI and Python stacks split on `;`).
pub fn scan_query(query: &str) -> QueryScan {
    let mut out = QueryScan::default();
    for seg in query.split(['&', ';']) {
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        match response_name(k) {
            Some("state") => {
                out.response_param = true;
                out.sealed_state |= decoded(v).starts_with(SEALED_PREFIX);
            }
            Some("response") => out.jarm_param = true,
            Some(_) => out.response_param = true,
            None => {}
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One round of form decoding (`%XX`, `+` as space); malformed escapes stay as they are.
fn decode_once(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                raw.get(i + 1).and_then(|x| hex(*x)),
                raw.get(i + 2).and_then(|x| hex(*x)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    out
}

/// Percent-decoded twice (a double-decoding hop in front of the app is covered), lossy.
fn decoded(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let once = decode_once(raw.as_bytes());
    let twice = if once.contains(&b'%') { decode_once(&once) } else { once };
    Cow::Owned(String::from_utf8_lossy(&twice).into_owned())
}

/// The response parameter an app could read this raw name as, if any.
pub fn response_name(raw: &str) -> Option<&'static str> {
    let name = decoded(raw);
    canonical_match(&name)
}

/// `name` as PHP, Rails, ASP.NET and friends would key it, compared with our names.
fn canonical_match(name: &str) -> Option<&'static str> {
    let cut = name.find(['[', '\0']).map_or(name, |i| &name[..i]);
    let trimmed = cut.trim_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
    if trimmed.len() > 16 {
        return None;
    }
    RESPONSE_NAMES.iter().copied().find(|n| {
        trimmed.len() == n.len()
            && trimmed.bytes().zip(n.bytes()).all(|(a, b)| {
                let a = a.to_ascii_lowercase();
                // PHP mangles `.` and space to `_`; none of our names has `_`, so a mangled
                // character can never make a match (kept explicit for `error_description`).
                let a = if a == b'.' || a == b' ' { b'_' } else { a };
                a == b
            })
    })
}

/// Whether a raw name is a response name spelt in its one exact form (`code`, not `Code`,
/// `%63ode` or `code[]`): a check hands only exact spellings to the app, so any other
/// spelling next to a checked response is a smuggling attempt.
pub fn is_exact_spelling(raw: &str) -> bool {
    RESPONSE_NAMES.contains(&raw)
}

/// A path as the app's router would see it (see the module doc), lowercase, without a
/// trailing `/` (`/` for the root).
pub fn normalize_path(raw: &str) -> String {
    let once = decode_path_once(raw.as_bytes());
    let bytes = if once.contains(&b'%') {
        decode_path_once(&once)
    } else {
        once
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.split('\0').next().unwrap_or("");
    let mut segs: Vec<String> = Vec::new();
    for seg in text.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or("");
        let seg = if seg == "." || seg == ".." {
            seg
        } else {
            seg.trim_end_matches(['.', ' '])
        };
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s.to_ascii_lowercase()),
        }
    }
    if segs.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(text.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    out
}

/// Path decoding: `%XX` only (`+` is a literal in paths).
fn decode_path_once(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if let (Some(h), Some(l)) = (
                raw.get(i + 1).and_then(|x| hex(*x)),
                raw.get(i + 2).and_then(|x| hex(*x)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// Whether a normalised request path routes to the normalised callback path: the same, or
/// with an extension suffix on its last segment (`/callback.json`).
pub fn routes_to(normalized: &str, callback: &str) -> bool {
    if normalized == callback {
        return true;
    }
    match normalized.strip_prefix(callback) {
        Some(rest) if callback != "/" => rest.starts_with('.') && !rest.contains('/'),
        _ => false,
    }
}

/// Why a request body on a callback path is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRefusal {
    /// An authorization-response parameter in the body: responses are accepted in the query.
    ResponseParam(&'static str),
    /// Compressed or in a charset the scan cannot read: the app might decode what we cannot.
    Unreadable(String),
    /// Over the bound a callback body may have.
    TooLarge(usize),
}

impl std::fmt::Display for BodyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyRefusal::ResponseParam(n) => write!(f, "the body carries `{n}` (an authorization response parameter)"),
            BodyRefusal::Unreadable(why) => write!(f, "the body cannot be scanned: {why}"),
            BodyRefusal::TooLarge(max) => write!(f, "the body is over {max} bytes"),
        }
    }
}

/// Longest body a callback path may receive: pingora's own replay buffer (64 KiB).
pub const MAX_CALLBACK_BODY: usize = 64 * 1024;

/// Whether a request body to a callback path may reach the app. Every scanner runs on every
/// body whatever its declared type: stacks disagree on which types they parse (body-parser
/// can be told `type: '*/*'`, Rails parses JSON, PHP and Spring multipart), so the content
/// type is not trusted to narrow the scan.
pub fn check_body(
    content_type: Option<&[u8]>,
    content_encoding: Option<&[u8]>,
    body: &[u8],
) -> Result<(), BodyRefusal> {
    if body.len() > MAX_CALLBACK_BODY {
        return Err(BodyRefusal::TooLarge(MAX_CALLBACK_BODY));
    }
    if let Some(enc) = content_encoding {
        if !enc.trim_ascii().eq_ignore_ascii_case(b"identity") {
            return Err(BodyRefusal::Unreadable("a content-encoding".into()));
        }
    }
    if let Some(ct) = content_type {
        let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
        if let Some(cs) = ct.split(';').find_map(|p| p.trim().strip_prefix("charset=")) {
            let cs = cs.trim_matches('"');
            if !matches!(cs, "utf-8" | "utf8" | "us-ascii" | "ascii" | "iso-8859-1" | "latin1") {
                return Err(BodyRefusal::Unreadable(format!("charset {cs}")));
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    // Form fields (also inside a multipart value or a text/plain body some stacks parse).
    for seg in text.split(['&', ';', '\n', '\r']) {
        let (k, _) = seg.split_once('=').unwrap_or((seg, ""));
        if let Some(n) = response_name(k) {
            return Err(BodyRefusal::ResponseParam(n));
        }
    }
    // Multipart parts: every `name=` parameter anywhere (a superset of any parser's view).
    if let Some(n) = multipart_names(&text).find_map(|n| canonical_match(&n)) {
        return Err(BodyRefusal::ResponseParam(n));
    }
    // JSON keys at any depth (Rails merges top-level keys into params; DTO binders nest).
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(n) = json_response_key(&v, 0) {
            return Err(BodyRefusal::ResponseParam(n));
        }
    }
    Ok(())
}

/// Values of every `name=` parameter (quoted or token, RFC 7578 and what lenient parsers
/// accept), case-insensitively found.
fn multipart_names(text: &str) -> impl Iterator<Item = String> + '_ {
    let lower = text.to_ascii_lowercase();
    let starts: Vec<usize> = lower.match_indices("name").map(|(i, _)| i + 4).collect();
    starts.into_iter().filter_map(move |mut i| {
        let b = text.as_bytes();
        // `name*=utf-8''code` (RFC 5987 form, accepted by some parsers) and `name = "x"`.
        if b.get(i) == Some(&b'*') {
            i += 1;
        }
        while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            i += 1;
        }
        let rest = text.get(i..)?;
        let value = if let Some(q) = rest.strip_prefix('"') {
            q.split('"').next().unwrap_or("")
        } else {
            rest.split([';', '\r', '\n', ' ']).next().unwrap_or("")
        };
        let value = value.rsplit("''").next().unwrap_or(value);
        Some(decoded(value).into_owned())
    })
}

fn json_response_key(v: &Value, depth: usize) -> Option<&'static str> {
    if depth > 32 {
        return None;
    }
    match v {
        Value::Object(m) => m
            .iter()
            .find_map(|(k, v)| canonical_match(k).or_else(|| json_response_key(v, depth + 1))),
        Value::Array(a) => a.iter().find_map(|v| json_response_key(v, depth + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
