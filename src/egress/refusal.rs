//! Every refusal the egress listener makes itself, as one vocabulary: the metric outcome
//! (`par_sidecar_egress_requests_total{outcome}`), the HTTP status and the OAuth `error` the
//! app gets, from one table; a unit test checks that README "Egress outcomes" has a row for
//! each. [`refuse`] is the one place a refusal is counted, logged and answered.

use tracing::warn;

use super::{oauth_error, EgressResponse};
use crate::as_client::http_client::TransportError;
use crate::metrics::EgressLabels;
use crate::sidecar::Sidecar;

/// Declares [`RefusalKind`] from one table: variant, metric outcome, status, OAuth `error`.
macro_rules! refusal_kinds {
    ($($(#[$doc:meta])* $variant:ident => $outcome:literal, $status:literal, $error:literal;)*) => {
        /// Why the egress listener answered the app itself; declared by the table below.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum RefusalKind {
            $($(#[$doc])* $variant,)*
        }

        impl RefusalKind {
            pub const ALL: &'static [RefusalKind] = &[$(RefusalKind::$variant,)*];

            /// The `outcome` label of `par_sidecar_egress_requests_total`.
            pub fn outcome(self) -> &'static str {
                match self {
                    $(RefusalKind::$variant => $outcome,)*
                }
            }

            pub fn status(self) -> u16 {
                match self {
                    $(RefusalKind::$variant => $status,)*
                }
            }

            /// The OAuth `error` of the JSON body (RFC 6749 §5.2).
            pub fn oauth_error(self) -> &'static str {
                match self {
                    $(RefusalKind::$variant => $error,)*
                }
            }
        }
    };
}

refusal_kinds! {
    /// A resource path that would leave its target's base path.
    BadPath => "bad_path", 400, "invalid_request";
    /// A form that does not parse strictly, or a code grant without a code.
    BadRequest => "bad_request", 400, "invalid_request";
    AppAuthMissing => "app_auth_missing", 401, "invalid_client";
    AppAuthFailed => "app_auth_failed", 401, "invalid_client";
    /// A `client_id` the sidecar does not act for.
    WrongClient => "wrong_client", 401, "invalid_client";
    GrantNotAllowed => "grant_not_allowed", 400, "unsupported_grant_type";
    UnknownCode => "unknown_code", 400, "invalid_grant";
    AsMismatch => "as_mismatch", 400, "invalid_grant";
    RedirectUriMismatch => "redirect_uri_mismatch", 400, "invalid_grant";
    TokenMisplaced => "token_misplaced", 400, "invalid_request";
    /// The client assertion (or a DPoP proof) could not be signed.
    SigningFailed => "signing_failed", 500, "server_error";
    /// An unprefixed call in a multi-AS config that cannot be attributed to one AS.
    Ambiguous => "ambiguous", 400, "invalid_request";
    NotReady => "not_ready", 503, "temporarily_unavailable";
    NoEndpoint => "no_endpoint", 404, "not_found";
    /// The AS's egress permits stayed taken for the whole deadline.
    Overloaded => "overloaded", 503, "temporarily_unavailable";
    /// The AS answered a back-channel call with a 3xx: never passed on.
    AsRedirect => "as_redirect", 502, "temporarily_unavailable";
    Timeout => "timeout", 502, "temporarily_unavailable";
    Connect => "connect", 502, "temporarily_unavailable";
    Tls => "tls", 502, "temporarily_unavailable";
    TooLarge => "too_large", 502, "temporarily_unavailable";
    Transport => "transport", 502, "temporarily_unavailable";
}

impl RefusalKind {
    /// The kind of a failed AS call (its outcome label is [`TransportError::label`]).
    pub fn of_transport(e: &TransportError) -> Self {
        match e {
            TransportError::Timeout => RefusalKind::Timeout,
            TransportError::Connect(_) => RefusalKind::Connect,
            TransportError::Tls(_) => RefusalKind::Tls,
            TransportError::TooLarge(_) => RefusalKind::TooLarge,
            TransportError::Other(_) => RefusalKind::Transport,
        }
    }
}

/// One refusal: its kind, the `error_description` for the app and, when the log should say
/// more than the app is told (an AS's address, a transport error), the detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub description: String,
    log_detail: Option<String>,
}

impl Refusal {
    pub fn new(kind: RefusalKind, description: impl Into<String>) -> Self {
        Refusal {
            kind,
            description: description.into(),
            log_detail: None,
        }
    }

    /// What the log line says instead of the description.
    pub fn logged_as(mut self, detail: String) -> Self {
        self.log_detail = Some(detail);
        self
    }

    /// The detail of the log line: never a token, code or secret.
    pub fn detail(&self) -> &str {
        self.log_detail.as_deref().unwrap_or(&self.description)
    }

    /// The OAuth error response for the app: the one place a refusal becomes HTTP.
    pub fn response(self) -> EgressResponse {
        let status = self.kind.status();
        let mut resp = oauth_error(status, self.kind.oauth_error(), self.description);
        if status == 401 {
            // RFC 6749 §5.2: a failed client authentication names the scheme to use.
            resp.headers
                .push(("www-authenticate".into(), "Basic realm=\"par-sidecar egress\"".into()));
        }
        resp
    }
}

/// Counts (`par_sidecar_egress_requests_total{as,route,outcome}`), logs with the interaction
/// id and answers a refusal. `as_name` is empty when no AS could be named.
pub(super) fn refuse(state: &Sidecar, as_name: &str, route: &str, iid: &str, r: Refusal) -> EgressResponse {
    let outcome = r.kind.outcome();
    state.metrics.egress_request(EgressLabels {
        as_name,
        route,
        outcome,
        as_error: "",
    });
    warn!(interaction_id = %iid, r#as = as_name, route, outcome, detail = %r.detail(), "egress request refused");
    r.response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_documented_in_the_readme() {
        let readme = include_str!("../../README.md");
        let mut seen = std::collections::HashSet::new();
        for k in RefusalKind::ALL {
            let row = format!("| `{}` | {} `{}` |", k.outcome(), k.status(), k.oauth_error());
            assert!(readme.contains(&row), "README \"Egress outcomes\" has no row `{row}`");
            assert!(seen.insert(k.outcome()), "outcome `{}` is used twice", k.outcome());
        }
    }

    #[test]
    fn a_failed_client_authentication_names_the_scheme() {
        let r = Refusal::new(RefusalKind::AppAuthFailed, "wrong client secret").response();
        assert_eq!(r.status, 401);
        assert!(r.headers.iter().any(|(k, _)| k == "www-authenticate"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (v["error"].as_str(), v["error_description"].as_str()),
            (Some("invalid_client"), Some("wrong client secret"))
        );
        let r = Refusal::new(RefusalKind::BadPath, "x").response();
        assert!(!r.headers.iter().any(|(k, _)| k == "www-authenticate"));
    }

    #[test]
    fn the_log_detail_defaults_to_the_description() {
        let r = Refusal::new(RefusalKind::Connect, "could not complete the call");
        assert_eq!(r.detail(), "could not complete the call");
        assert_eq!(
            r.logged_as("https://as/token: refused".into()).detail(),
            "https://as/token: refused"
        );
    }
}
