//! The callback pre-filter: which requests the sidecar must look at before the app does.
//!
//! The promise is "no code reaches the app unchecked", so this must be at least as wide as
//! every app stack's router and parameter parser (issue 18 H1):
//! - paths are compared the way frameworks route them: percent-decoded (WSGI, Spring's
//!   `UrlPathHelper`, ASP.NET Core, Rails), `%uXXXX` (IIS), `\` as `/` (IIS), `//` collapsed
//!   (Spring, http.server), dot segments resolved, `;params` dropped (servlets), trailing `/`,
//!   `.` and spaces ignored (IIS), ASCII case folded (ASP.NET, IIS), an extension suffix and a
//!   PATH_INFO after it accepted (`/callback.json`, `/callback.php/x`), a PHP front controller
//!   skipped (`/index.php/callback`); each at every decoding depth (0, 1, 2), since apps
//!   decode once and a hop in front may decode again;
//! - parameter names are compared the way parsers read them: percent-decoded (twice, `%u`
//!   too), `+` as space, trimmed (PHP drops leading spaces), ASCII case folded (ASP.NET),
//!   leading brackets dropped and cut at the next bracket or NUL (PHP, Rack and qs arrays:
//!   `code[]`, `[code]`);
//! - bodies of any type are scanned, because Spring, PHP, Rails, Django and ASP.NET read form
//!   and multipart fields as request parameters, Rails and body-parser stacks JSON keys too;
//!   what cannot be scanned with certainty (NUL bytes, another charset, unparsable JSON,
//!   RFC 2231 continuations) is refused.
//!
//! Over-matching costs only a check (or a refusal on a callback path); under-matching is the
//! attack. Everything here is pure and allocation-free on the common path: a request with no
//! response-shaped parameter and no body never normalises its path.

use std::borrow::Cow;

use serde_json::Value;

/// Prefix of a state this sidecar sealed (`front::sealed_state::PREFIX`).
use crate::front::sealed_state::PREFIX as SEALED_PREFIX;

/// Parameter names of an authorization response, as an app could read them.
pub const RESPONSE_NAMES: &[&str] = &["code", "state", "error", "iss", "response"];

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

/// `%uXXXX` (IIS, System.Web's `HttpUtility.UrlDecode`) at `raw[i]`: the character's UTF-8.
fn percent_u(raw: &[u8], i: usize) -> Option<([u8; 4], usize)> {
    if !matches!(raw.get(i + 1), Some(b'u' | b'U')) {
        return None;
    }
    let digits = raw.get(i + 2..i + 6)?;
    let v = digits
        .iter()
        .try_fold(0u32, |acc, d| hex(*d).map(|h| acc << 4 | h as u32))?;
    let mut buf = [0u8; 4];
    let n = char::from_u32(v)
        .unwrap_or(char::REPLACEMENT_CHARACTER)
        .encode_utf8(&mut buf)
        .len();
    Some((buf, n))
}

/// One round of decoding: `%XX`, `%uXXXX`, and `+` as space when `plus` (forms, not paths).
/// Malformed escapes stay as they are.
fn decode_round(raw: &[u8], plus: bool) -> Vec<u8> {
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
            if let Some((bytes, n)) = percent_u(raw, i) {
                out.extend_from_slice(&bytes[..n]);
                i += 6;
                continue;
            }
        }
        out.push(if plus && c == b'+' { b' ' } else { c });
        i += 1;
    }
    out
}

/// Form-decoded twice (a double-decoding hop in front of the app is covered), lossy.
fn decoded(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let once = decode_round(raw.as_bytes(), true);
    let twice = if once.contains(&b'%') {
        decode_round(&once, true)
    } else {
        once
    };
    Cow::Owned(String::from_utf8_lossy(&twice).into_owned())
}

/// Decodes a short name into a stack buffer; `None` when it does not fit (then the heap).
fn decode_small(raw: &[u8], out: &mut [u8; 64]) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        let (bytes, step): ([u8; 4], usize) = match c {
            b'%' => match (
                raw.get(i + 1).and_then(|x| hex(*x)),
                raw.get(i + 2).and_then(|x| hex(*x)),
            ) {
                (Some(h), Some(l)) => ([h << 4 | l, 0, 0, 0], 3),
                _ => return None,
            },
            b'+' => ([b' ', 0, 0, 0], 1),
            c => ([c, 0, 0, 0], 1),
        };
        *out.get_mut(n)? = bytes[0];
        n += 1;
        i += step;
    }
    Some(n)
}

/// The response parameter an app could read this raw name as, if any. Allocation-free for
/// names without escapes and for short escaped ones (`filter%5Bstatus%5D` on a search page).
pub fn response_name(raw: &str) -> Option<&'static str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return canonical_match(raw);
    }
    let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
    if let Some(n) = decode_small(raw.as_bytes(), &mut a) {
        if !a[..n].contains(&b'%') {
            return std::str::from_utf8(&a[..n])
                .ok()
                .map_or_else(|| canonical_match(&decoded(raw)), canonical_match);
        }
        if let Some(m) = decode_small(&a[..n], &mut b) {
            if let Ok(s) = std::str::from_utf8(&b[..m]) {
                return canonical_match(s);
            }
        }
    }
    canonical_match(&decoded(raw))
}

/// `name` as PHP, Rails, ASP.NET and friends would key it, compared with our names. Leading
/// brackets are dropped (Rack 2 reads `[code]` and `]code` as `code`, Express's qs `[code]`),
/// and the name ends at the next bracket or NUL (`code[]`, `code]`).
fn canonical_match(name: &str) -> Option<&'static str> {
    let junk = |c: char| c.is_ascii_whitespace() || c.is_ascii_control();
    let start = name.trim_start_matches(|c: char| c == '[' || c == ']' || junk(c));
    let cut = start.find(['[', ']', '\0']).map_or(start, |i| &start[..i]);
    let trimmed = cut.trim_matches(junk);
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

/// A path as the app's router would see it after `depth` rounds of decoding (see the module
/// doc), lowercase, without a trailing `/` (`/` for the root).
pub fn normalize_path_at(raw: &str, depth: usize) -> String {
    let mut bytes = raw.as_bytes().to_vec();
    for _ in 0..depth {
        if !bytes.contains(&b'%') {
            break;
        }
        bytes = decode_round(&bytes, false);
    }
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

/// The path after two rounds of decoding (what a configured or learned path is stored as).
pub fn normalize_path(raw: &str) -> String {
    normalize_path_at(raw, 2)
}

/// Whether a request path routes to a (normalised) callback path at any decoding depth.
pub fn path_routes_to_any<'a>(raw: &str, callbacks: impl Iterator<Item = &'a String> + Clone) -> bool {
    let forms = [
        normalize_path_at(raw, 0),
        normalize_path_at(raw, 1),
        normalize_path_at(raw, 2),
    ];
    callbacks.into_iter().any(|c| forms.iter().any(|p| routes_to(p, c)))
}

/// Whether a normalised request path routes to the normalised callback path: the same, with
/// an extension suffix on its last segment and anything after it (`/callback.json`,
/// PATH_INFO in `/callback.php/x`), or behind a PHP front controller (`/index.php/callback`).
pub fn routes_to(normalized: &str, callback: &str) -> bool {
    let direct = |p: &str| {
        p == callback || callback != "/" && p.strip_prefix(callback).is_some_and(|rest| rest.starts_with('.'))
    };
    direct(normalized)
        || normalized
            .match_indices(".php/")
            .any(|(i, _)| direct(&normalized[i + 4..]))
}

/// Why a request body on a callback path is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRefusal {
    /// An authorization-response parameter in the body: responses are accepted in the query.
    ResponseParam(&'static str),
    /// Compressed, in a charset or a shape the scan cannot read with certainty.
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

/// Longest body a callback path may receive: a redirect_uri needs none, so a small bound
/// keeps many connections' buffered bodies within the pod's memory.
pub const MAX_CALLBACK_BODY: usize = 16 * 1024;

/// Longest multipart `name=` value looked at; a longer one is refused, never decoded (a body
/// of `name=%name=%…` would otherwise cost time quadratic in its length).
const MAX_PART_NAME: usize = 256;

/// Charsets whose ASCII bytes are ASCII: the scan reads them as the app does.
fn charset_ok(content_type: &[u8]) -> Result<(), BodyRefusal> {
    let lower = String::from_utf8_lossy(content_type).to_ascii_lowercase();
    for (i, _) in lower.match_indices("charset") {
        let rest = lower[i + 7..].trim_start();
        let Some(v) = rest.strip_prefix('=') else { continue };
        let v = v.trim_start().trim_start_matches('"');
        let v = v.split(['"', ';', ',', ' ']).next().unwrap_or("");
        if !matches!(v, "utf-8" | "utf8" | "us-ascii" | "ascii" | "iso-8859-1" | "latin1") {
            return Err(BodyRefusal::Unreadable(format!("charset {v}")));
        }
    }
    Ok(())
}

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
        charset_ok(ct)?;
    }
    // UTF-16 or UTF-32 text (declared or sniffed by Jackson and friends) has NUL bytes.
    if body.contains(&0) {
        return Err(BodyRefusal::Unreadable("NUL bytes (UTF-16 or binary)".into()));
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = String::from_utf8_lossy(body);
    // Form fields (also inside a multipart value or a text/plain body some stacks parse).
    for seg in text.split(['&', ';', '\n', '\r']) {
        let (k, _) = seg.split_once('=').unwrap_or((seg, ""));
        if let Some(n) = response_name(k) {
            return Err(BodyRefusal::ResponseParam(n));
        }
    }
    multipart_names(&text)?;
    // JSON keys at any depth (Rails merges top-level keys into params; DTO binders nest).
    // What serde_json cannot parse but looks like JSON (a lone surrogate, 1e400, deep
    // nesting) Node or Jackson may still parse: refused.
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match json_response_key(&v, 0) {
            Some(n) => Err(BodyRefusal::ResponseParam(n)),
            None => Ok(()),
        },
        Err(_) if text.trim_start().starts_with(['{', '[']) => {
            Err(BodyRefusal::Unreadable("JSON it cannot parse".into()))
        }
        Err(_) => Ok(()),
    }
}

/// Every `name=` parameter anywhere (a superset of any multipart parser's view): quoted or
/// token, RFC 5987 `name*=utf-8'lang'value`, backslash escapes dropped (busboy). RFC 2231
/// continuations (`name*0=`) and over-long values are refused.
fn multipart_names(text: &str) -> Result<(), BodyRefusal> {
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    for (start, _) in lower.match_indices("name") {
        let mut i = start + 4;
        if b.get(i) == Some(&b'*') {
            i += 1;
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(BodyRefusal::Unreadable("an RFC 2231 parameter continuation".into()));
            }
        }
        while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            i += 1;
        }
        let Some(rest) = text.get(i..) else { continue };
        let end = rest
            .char_indices()
            .skip(1)
            .find(|(_, c)| matches!(c, '"' | ';' | '\r' | '\n') || *c == ' ' && !rest.starts_with('"'))
            .map_or(rest.len(), |(j, _)| j);
        if end > MAX_PART_NAME {
            return Err(BodyRefusal::Unreadable("an over-long part name".into()));
        }
        let value = rest[..end].trim_start_matches('"').replace('\\', "");
        let mut parts = value.splitn(3, '\'');
        let value = match (parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(_), Some(v)) => v.to_string(),
            _ => value.clone(),
        };
        if let Some(n) = canonical_match(&decoded(&value)) {
            return Err(BodyRefusal::ResponseParam(n));
        }
    }
    Ok(())
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

/// A `Cookie` header naming a cookie an app could read as `code`, `error`, `iss` or
/// `response` (PHP's `$_REQUEST` with cookies in `variables_order`, ASP.NET's
/// `Request["code"]`). `state` is left alone: apps keep their own OAuth state in a cookie by
/// that name, and a planted state cannot carry a code.
pub fn cookie_response_name(cookie: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(cookie).ok()?;
    text.split(';')
        .filter_map(|pair| response_name(pair.split('=').next().unwrap_or("")))
        .find(|n| *n != "state")
}

#[cfg(test)]
mod tests;
