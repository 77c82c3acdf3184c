//! The browser-facing error boundary: one type, rendered in one place, as HTML or JSON.
//! The page names a short code and the interaction id; it never echoes AS internals.

use crate::protocol::InteractionId;

/// Every refusal a browser can see: its stable code (page, `par_sidecar_errors_total{code}`
/// and callback metric label, README "Failure modes" row), its HTTP status and the sentence
/// on the page. One list, so pages, metrics and documentation cannot drift apart (a unit test
/// checks that the README names every code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    NotReady,
    TooManyLogins,
    TooManyConnections,
    AsTimeout,
    AsUnavailable,
    AsTlsFailure,
    AsBadResponse,
    AsServerError,
    AsRateLimited,
    AsOverloaded,
    ParRejected,
    SigningFailed,
    MalformedAuthorizeRedirect,
    AuthorizeRedirectRejected,
    AuthorizeRedirectTooLarge,
    DuplicateParameter,
    ForbiddenParameter,
    InvalidPkce,
    UnsupportedResponseMode,
    UnsupportedResponseType,
    InsecureRedirectUri,
    StateMissing,
    StateForeign,
    StateTampered,
    StateExpired,
    IssMismatch,
    IssMissing,
    IssMixup,
    JarmInvalid,
    JarmMissing,
    JwksUnavailable,
    CallbackMalformed,
    /// An authorization-response parameter in a request body to a callback path.
    CallbackBodyRefused,
    CallbackReplayed,
    BrowserMismatch,
    UpstreamUnavailable,
    BadRequest,
    /// A request's headers grew past `limits.max_request_header_bytes` (431).
    RequestHeadersTooLarge,
    OpenRedirect,
    RedirectUriForeign,
    LoginPathNotAllowed,
    AuthorizeParameterNotAllowed,
    /// A bug: the sidecar's own work failed (a panic contained in a task). Fails closed.
    Internal,
}

impl FailureCode {
    pub const ALL: &'static [FailureCode] = &[
        FailureCode::NotReady,
        FailureCode::TooManyLogins,
        FailureCode::TooManyConnections,
        FailureCode::AsTimeout,
        FailureCode::AsUnavailable,
        FailureCode::AsTlsFailure,
        FailureCode::AsBadResponse,
        FailureCode::AsServerError,
        FailureCode::AsRateLimited,
        FailureCode::AsOverloaded,
        FailureCode::ParRejected,
        FailureCode::SigningFailed,
        FailureCode::MalformedAuthorizeRedirect,
        FailureCode::AuthorizeRedirectRejected,
        FailureCode::AuthorizeRedirectTooLarge,
        FailureCode::DuplicateParameter,
        FailureCode::ForbiddenParameter,
        FailureCode::InvalidPkce,
        FailureCode::UnsupportedResponseMode,
        FailureCode::UnsupportedResponseType,
        FailureCode::InsecureRedirectUri,
        FailureCode::StateMissing,
        FailureCode::StateForeign,
        FailureCode::StateTampered,
        FailureCode::StateExpired,
        FailureCode::IssMismatch,
        FailureCode::IssMissing,
        FailureCode::IssMixup,
        FailureCode::JarmInvalid,
        FailureCode::JarmMissing,
        FailureCode::JwksUnavailable,
        FailureCode::CallbackMalformed,
        FailureCode::CallbackBodyRefused,
        FailureCode::CallbackReplayed,
        FailureCode::BrowserMismatch,
        FailureCode::UpstreamUnavailable,
        FailureCode::BadRequest,
        FailureCode::RequestHeadersTooLarge,
        FailureCode::OpenRedirect,
        FailureCode::RedirectUriForeign,
        FailureCode::LoginPathNotAllowed,
        FailureCode::AuthorizeParameterNotAllowed,
        FailureCode::Internal,
    ];

    /// The stable code: metric label and page text.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::NotReady => "not_ready",
            FailureCode::TooManyLogins => "too_many_logins",
            FailureCode::TooManyConnections => "too_many_connections",
            FailureCode::AsTimeout => "as_timeout",
            FailureCode::AsUnavailable => "as_unavailable",
            FailureCode::AsTlsFailure => "as_tls_failure",
            FailureCode::AsBadResponse => "as_bad_response",
            FailureCode::AsServerError => "as_server_error",
            FailureCode::AsRateLimited => "as_rate_limited",
            FailureCode::AsOverloaded => "as_overloaded",
            FailureCode::ParRejected => "par_rejected",
            FailureCode::SigningFailed => "signing_failed",
            FailureCode::MalformedAuthorizeRedirect => "malformed_authorize_redirect",
            FailureCode::AuthorizeRedirectRejected => "authorize_redirect_rejected",
            FailureCode::AuthorizeRedirectTooLarge => "authorize_redirect_too_large",
            FailureCode::DuplicateParameter => "duplicate_parameter",
            FailureCode::ForbiddenParameter => "forbidden_parameter",
            FailureCode::InvalidPkce => "invalid_pkce",
            FailureCode::UnsupportedResponseMode => "unsupported_response_mode",
            FailureCode::UnsupportedResponseType => "unsupported_response_type",
            FailureCode::InsecureRedirectUri => "insecure_redirect_uri",
            FailureCode::StateMissing => "state_missing",
            FailureCode::StateForeign => "state_foreign",
            FailureCode::StateTampered => "state_tampered",
            FailureCode::StateExpired => "state_expired",
            FailureCode::IssMismatch => "iss_mismatch",
            FailureCode::IssMissing => "iss_missing",
            FailureCode::IssMixup => "iss_mixup",
            FailureCode::JarmInvalid => "jarm_invalid",
            FailureCode::JarmMissing => "jarm_missing",
            FailureCode::JwksUnavailable => "jwks_unavailable",
            FailureCode::CallbackMalformed => "callback_malformed",
            FailureCode::CallbackBodyRefused => "callback_body_refused",
            FailureCode::CallbackReplayed => "callback_replayed",
            FailureCode::BrowserMismatch => "browser_mismatch",
            FailureCode::UpstreamUnavailable => "upstream_unavailable",
            FailureCode::BadRequest => "bad_request",
            FailureCode::RequestHeadersTooLarge => "request_headers_too_large",
            FailureCode::OpenRedirect => "open_redirect",
            FailureCode::RedirectUriForeign => "redirect_uri_foreign",
            FailureCode::LoginPathNotAllowed => "login_path_not_allowed",
            FailureCode::AuthorizeParameterNotAllowed => "authorize_parameter_not_allowed",
            FailureCode::Internal => "internal",
        }
    }

    /// 503 while not ready, 429 when rate limited, 400 for a bad authorization response or
    /// request, 502 when the AS, the app or the app's redirect failed, 500 for a bug.
    pub fn status(self) -> u16 {
        match self {
            FailureCode::StateMissing
            | FailureCode::StateForeign
            | FailureCode::StateTampered
            | FailureCode::StateExpired
            | FailureCode::IssMismatch
            | FailureCode::IssMissing
            | FailureCode::IssMixup
            | FailureCode::JarmInvalid
            | FailureCode::JarmMissing
            | FailureCode::JwksUnavailable
            | FailureCode::CallbackMalformed
            | FailureCode::CallbackBodyRefused
            | FailureCode::CallbackReplayed
            | FailureCode::BrowserMismatch
            | FailureCode::BadRequest
            | FailureCode::OpenRedirect
            | FailureCode::LoginPathNotAllowed => 400,
            FailureCode::RequestHeadersTooLarge => 431,
            FailureCode::TooManyLogins | FailureCode::TooManyConnections => 429,
            FailureCode::AsTimeout
            | FailureCode::AsUnavailable
            | FailureCode::AsTlsFailure
            | FailureCode::AsBadResponse
            | FailureCode::AsServerError
            | FailureCode::AsRateLimited
            | FailureCode::AsOverloaded
            | FailureCode::ParRejected
            | FailureCode::SigningFailed
            | FailureCode::MalformedAuthorizeRedirect
            | FailureCode::AuthorizeRedirectRejected
            | FailureCode::AuthorizeRedirectTooLarge
            | FailureCode::DuplicateParameter
            | FailureCode::ForbiddenParameter
            | FailureCode::InvalidPkce
            | FailureCode::UnsupportedResponseMode
            | FailureCode::UnsupportedResponseType
            | FailureCode::InsecureRedirectUri
            | FailureCode::UpstreamUnavailable
            | FailureCode::RedirectUriForeign
            | FailureCode::AuthorizeParameterNotAllowed => 502,
            FailureCode::NotReady => 503,
            FailureCode::Internal => 500,
        }
    }

    fn message(self) -> &'static str {
        match self {
            FailureCode::NotReady => "The sign-in service is starting. Please try again in a moment.",
            FailureCode::TooManyLogins => "Too many sign-in attempts right now. Please try again in a minute.",
            FailureCode::TooManyConnections => {
                "Too many requests from your address right now. Please try again in a minute."
            }
            FailureCode::AsTimeout
            | FailureCode::AsUnavailable
            | FailureCode::AsTlsFailure
            | FailureCode::AsBadResponse
            | FailureCode::AsServerError
            | FailureCode::AsRateLimited
            | FailureCode::AsOverloaded => "The identity provider could not be reached. Please try again later.",
            FailureCode::ParRejected
            | FailureCode::SigningFailed
            | FailureCode::MalformedAuthorizeRedirect
            | FailureCode::AuthorizeRedirectRejected
            | FailureCode::AuthorizeRedirectTooLarge
            | FailureCode::DuplicateParameter
            | FailureCode::ForbiddenParameter
            | FailureCode::InvalidPkce
            | FailureCode::UnsupportedResponseMode
            | FailureCode::UnsupportedResponseType
            | FailureCode::InsecureRedirectUri
            | FailureCode::OpenRedirect
            | FailureCode::RedirectUriForeign
            | FailureCode::LoginPathNotAllowed
            | FailureCode::AuthorizeParameterNotAllowed
            | FailureCode::Internal => "Sign-in could not be started. Please try again later.",
            FailureCode::StateMissing
            | FailureCode::StateForeign
            | FailureCode::StateTampered
            | FailureCode::IssMismatch
            | FailureCode::IssMissing
            | FailureCode::IssMixup
            | FailureCode::JarmInvalid
            | FailureCode::JarmMissing
            | FailureCode::JwksUnavailable
            | FailureCode::CallbackMalformed
            | FailureCode::CallbackBodyRefused
            | FailureCode::CallbackReplayed => "Sign-in could not be completed. Please start again.",
            FailureCode::StateExpired => "The sign-in took too long. Please start again.",
            FailureCode::BrowserMismatch => {
                "Sign-in must be finished in the browser that started it. Please start again."
            }
            FailureCode::UpstreamUnavailable | FailureCode::BadRequest => {
                "The application could not answer. Please try again later."
            }
            FailureCode::RequestHeadersTooLarge => {
                "The request was too large (often too many cookies). Please clear this site's cookies and try again."
            }
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
    pub fn new(code: FailureCode, interaction_id: InteractionId) -> Self {
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
        let e = BrowserError::new(FailureCode::ParRejected, InteractionId::new());
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
