//! The browser-facing error boundary: one type, rendered in one place, as HTML or JSON.
//! The page names a short code and the interaction id; it never echoes AS internals.

use crate::metrics::Metrics;
use crate::protocol::InteractionId;

/// Declares [`FailureCode`] from one table: each row is a variant, its stable code (page,
/// `par_sidecar_errors_total{code}` and callback metric label, README "Failure modes" row),
/// its HTTP status and the sentence on the page. Adding a code is one row (just before
/// `Internal`), so pages, metrics and documentation cannot drift apart (a unit test checks
/// that the README names every code).
macro_rules! failure_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal, $status:literal, $message:expr;)*) => {
        /// Every refusal a browser can see; declared by the table below.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum FailureCode {
            $($(#[$doc])* $variant,)*
        }

        impl FailureCode {
            pub const ALL: &'static [FailureCode] = &[$(FailureCode::$variant,)*];

            /// The stable code: metric label and page text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FailureCode::$variant => $code,)*
                }
            }

            /// 503 while not ready, 429 when rate limited, 400 for a bad authorization
            /// response or request, 502 when the AS, the app or the app's redirect failed,
            /// 500 for a bug.
            pub fn status(self) -> u16 {
                match self {
                    $(FailureCode::$variant => $status,)*
                }
            }

            fn message(self) -> &'static str {
                match self {
                    $(FailureCode::$variant => $message,)*
                }
            }
        }
    };
}

// The page sentences several codes share.
const AS_UNREACHABLE: &str = "The identity provider could not be reached. Please try again later.";
const NOT_STARTED: &str = "Sign-in could not be started. Please try again later.";
const NOT_COMPLETED: &str = "Sign-in could not be completed. Please start again.";
const APP_FAILED: &str = "The application could not answer. Please try again later.";

failure_codes! {
    NotReady => "not_ready", 503, "The sign-in service is starting. Please try again in a moment.";
    TooManyLogins => "too_many_logins", 429, "Too many sign-in attempts right now. Please try again in a minute.";
    TooManyConnections => "too_many_connections", 429,
        "Too many requests from your address right now. Please try again in a minute.";
    AsTimeout => "as_timeout", 502, AS_UNREACHABLE;
    AsUnavailable => "as_unavailable", 502, AS_UNREACHABLE;
    AsTlsFailure => "as_tls_failure", 502, AS_UNREACHABLE;
    AsBadResponse => "as_bad_response", 502, AS_UNREACHABLE;
    AsServerError => "as_server_error", 502, AS_UNREACHABLE;
    AsRateLimited => "as_rate_limited", 502, AS_UNREACHABLE;
    AsOverloaded => "as_overloaded", 502, AS_UNREACHABLE;
    ParRejected => "par_rejected", 502, NOT_STARTED;
    SigningFailed => "signing_failed", 502, NOT_STARTED;
    MalformedAuthorizeRedirect => "malformed_authorize_redirect", 502, NOT_STARTED;
    AuthorizeRedirectRejected => "authorize_redirect_rejected", 502, NOT_STARTED;
    AuthorizeRedirectTooLarge => "authorize_redirect_too_large", 502, NOT_STARTED;
    DuplicateParameter => "duplicate_parameter", 502, NOT_STARTED;
    ForbiddenParameter => "forbidden_parameter", 502, NOT_STARTED;
    InvalidPkce => "invalid_pkce", 502, NOT_STARTED;
    UnsupportedResponseMode => "unsupported_response_mode", 502, NOT_STARTED;
    UnsupportedResponseType => "unsupported_response_type", 502, NOT_STARTED;
    InsecureRedirectUri => "insecure_redirect_uri", 502, NOT_STARTED;
    StateMissing => "state_missing", 400, NOT_COMPLETED;
    StateForeign => "state_foreign", 400, NOT_COMPLETED;
    StateTampered => "state_tampered", 400, NOT_COMPLETED;
    StateExpired => "state_expired", 400, "The sign-in took too long. Please start again.";
    IssMismatch => "iss_mismatch", 400, NOT_COMPLETED;
    IssMissing => "iss_missing", 400, NOT_COMPLETED;
    IssMixup => "iss_mixup", 400, NOT_COMPLETED;
    JarmInvalid => "jarm_invalid", 400, NOT_COMPLETED;
    JarmMissing => "jarm_missing", 400, NOT_COMPLETED;
    JwksUnavailable => "jwks_unavailable", 400, NOT_COMPLETED;
    CallbackMalformed => "callback_malformed", 400, NOT_COMPLETED;
    /// An authorization-response parameter in a request body to a callback path.
    CallbackBodyRefused => "callback_body_refused", 400, NOT_COMPLETED;
    CallbackReplayed => "callback_replayed", 400, NOT_COMPLETED;
    BrowserMismatch => "browser_mismatch", 400,
        "Sign-in must be finished in the browser that started it. Please start again.";
    UpstreamUnavailable => "upstream_unavailable", 502, APP_FAILED;
    BadRequest => "bad_request", 400, APP_FAILED;
    /// A request's headers grew past `limits.max_request_header_bytes` (431).
    RequestHeadersTooLarge => "request_headers_too_large", 431,
        "The request was too large (often too many cookies). Please clear this site's cookies and try again.";
    OpenRedirect => "open_redirect", 400, NOT_STARTED;
    RedirectUriForeign => "redirect_uri_foreign", 502, NOT_STARTED;
    LoginPathNotAllowed => "login_path_not_allowed", 400, NOT_STARTED;
    AuthorizeParameterNotAllowed => "authorize_parameter_not_allowed", 502, NOT_STARTED;
    /// A bug: the sidecar's own work failed (a panic contained in a task). Fails closed.
    Internal => "internal", 500, NOT_STARTED;
}

/// A browser-facing refusal decided before its page is written: the code the page names and
/// the detail for the log line (never shown: it may quote the AS or name a parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: FailureCode,
    pub detail: String,
}

impl Rejection {
    pub fn new(code: FailureCode, detail: impl Into<String>) -> Self {
        Rejection {
            code,
            detail: detail.into(),
        }
    }
}

/// Compares with the stable code (tests and logs speak in codes).
impl PartialEq<&str> for FailureCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct BrowserError {
    pub status: u16,
    pub code: FailureCode,
    pub interaction_id: InteractionId,
    /// The configured name of the AS (bank) concerned, shown so the user and support know
    /// which bank failed. A validated name (`[a-z0-9-]`): nothing to escape.
    pub as_name: Option<String>,
}

impl BrowserError {
    /// The way to a browser error: counted here, once, as `par_sidecar_errors_total{code}`,
    /// whichever phase then writes the page (the login start decides in the response phase,
    /// pingora's `fail_to_proxy` writes it). So every page is counted exactly once, and no
    /// decision site counts on its own.
    pub fn counted(code: FailureCode, interaction_id: InteractionId, metrics: &Metrics) -> Self {
        metrics.browser_errors.with_label_values(&[code.as_str()]).inc();
        Self::uncounted(code, interaction_id)
    }

    /// A page outside that count: the connection guard's 431, written on any listener
    /// before a request exists and counted as `par_sidecar_request_headers_too_large_total`.
    pub fn uncounted(code: FailureCode, interaction_id: InteractionId) -> Self {
        BrowserError {
            status: code.status(),
            code,
            interaction_id,
            as_name: None,
        }
    }

    pub fn at(mut self, as_name: &str) -> Self {
        self.as_name = Some(as_name.to_string());
        self
    }

    /// Another status than the code's own (pingora's for a failed upstream).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    fn message(&self) -> &'static str {
        self.code.message()
    }

    /// `(content-type, body)`: JSON when the client asked for it, HTML otherwise.
    pub fn render(&self, wants_json: bool) -> (&'static str, Vec<u8>) {
        if wants_json {
            let body = serde_json::json!({
                "error": self.code.as_str(),
                "message": self.message(),
                "interaction_id": self.interaction_id.to_string(),
                "authorization_server": self.as_name,
            });
            ("application/json", serde_json::to_vec(&body).unwrap_or_default())
        } else {
            // Every interpolated value is a static string, a UUID or a validated AS name
            // (`[a-z0-9-]`): nothing to escape.
            let bank = self
                .as_name
                .as_deref()
                .map(|n| format!("Identity provider: <code>{n}</code><br>"))
                .unwrap_or_default();
            let body = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in error</title></head>\
                 <body><h1>Sign-in error</h1><p>{}</p><p>{bank}Error code: <code>{}</code><br>\
                 Interaction id: <code>{}</code></p></body></html>\n",
                self.message(),
                self.code,
                self.interaction_id
            );
            ("text/html; charset=utf-8", body.into_bytes())
        }
    }
}

/// Whether an `Accept` header prefers JSON over HTML.
pub fn wants_json(accept: Option<&[u8]>) -> bool {
    let Some(a) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return false;
    };
    let a = a.to_ascii_lowercase();
    a.contains("application/json") && !a.contains("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json_and_html_with_code_and_id() {
        let e = BrowserError::uncounted(FailureCode::ParRejected, InteractionId::new());
        let (ct, body) = e.render(true);
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "par_rejected");
        assert_eq!(v["interaction_id"], e.interaction_id.to_string());
        let (ct, body) = e.render(false);
        assert!(ct.starts_with("text/html"));
        let s = String::from_utf8(body).unwrap();
        assert!(s.contains("par_rejected") && s.contains(&e.interaction_id.to_string()));
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_json(Some(b"application/json")));
        assert!(!wants_json(Some(
            b"text/html,application/xhtml+xml,application/json;q=0.9"
        )));
        assert!(!wants_json(None));
        assert!(!wants_json(Some(b"*/*")));
    }

    #[test]
    fn every_failure_code_is_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        for c in FailureCode::ALL {
            assert!(
                readme.contains(&format!("`{}`", c.as_str())),
                "README does not document `{}`",
                c.as_str()
            );
        }
        let mut seen = std::collections::HashSet::new();
        assert!(
            FailureCode::ALL.iter().all(|c| seen.insert(c.as_str())),
            "codes are unique"
        );
    }
}
