//! The authorize-request model both planes speak: the AS's authorization endpoint as
//! compared, the app's parsed authorize redirect, and what a redirect must match to be
//! pushed to an AS. Detection (is this Location ours?) stays in `front::location`.

use serde_json::{Map, Value};
use url::Url;

use crate::protocol::{AsIndex, ClientId};

/// The discovered authorization endpoint, pre-split for cheap matching.
#[derive(Debug, Clone)]
pub struct AuthorizeEndpoint {
    url: Url,
    host: String,
    port: u16,
    /// The path as compared: unreserved characters percent-decoded, other escapes uppercased.
    path: String,
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
        let path = norm_path(url.path());
        let fixed_query = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        AuthorizeEndpoint {
            url,
            host,
            port,
            path,
            fixed_query,
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Query parameters that are part of the endpoint itself (AZ-3).
    pub fn fixed_query(&self) -> &[(String, String)] {
        &self.fixed_query
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

/// One AS's discovered authorization endpoint and the client_id the sidecar uses there:
/// what a redirect must match to be pushed to that AS.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the AS in the registry.
    pub as_index: AsIndex,
    pub endpoint: AuthorizeEndpoint,
    pub client_id: ClientId,
    /// The AS's `end_session_endpoint` (OIDC RP-Initiated Logout), where the app's own
    /// redirect legitimately carries the client_id: passed through untouched.
    pub end_session: Option<AuthorizeEndpoint>,
}

impl AuthorizeEndpoint {
    /// The normalised host the host index is keyed by.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Same scheme, host, port and path: two ASs whose redirects cannot be told apart by URL.
    pub fn same_endpoint(&self, other: &AuthorizeEndpoint) -> bool {
        self.url.scheme() == other.url.scheme()
            && self.host == other.host
            && self.port == other.port
            && self.path == other.path
    }

    /// Whether a browser-parsed URL on this endpoint's host *is* this endpoint: same scheme,
    /// port and normalised path (`path` is [`norm_path`] of the URL's path). Letter case in
    /// the path counts: `/Authorize` may be another resource at the AS.
    pub(crate) fn is_at(&self, u: &Url, path: &str) -> bool {
        u.scheme() == self.url.scheme() && u.port_or_known_default() == Some(self.port) && path == self.path
    }
}

/// RFC 3986 §6.2.2 normalisation of a path for comparison: percent-encoded unreserved
/// characters decoded, remaining escapes with uppercase hex. Case of the path is kept.
pub fn norm_path(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        if let (b'%', Some(h), Some(l)) = (b[i], hex(i + 1), hex(i + 2)) {
            let c = (h * 16 + l) as u8;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(c as char);
            } else {
                out.push('%');
                out.push_str(&p[i + 1..i + 3].to_ascii_uppercase());
            }
            i += 3;
        } else {
            let ch = p[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}
