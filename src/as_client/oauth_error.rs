//! The OAuth error vocabulary an AS answers in (RFC 6749 §5.2 and its extensions): the
//! error body, and the codes that may become metric labels.

use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct OAuthError {
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
}

/// Restricts an AS-provided error code to a safe label: `[a-z_]{1,40}` or `unknown`.
pub fn sanitize_error_code(s: &str) -> String {
    if KNOWN_ERROR_CODES.contains(&s) {
        s.to_string()
    } else if !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        // Well-formed but not registered: one label, so an AS cannot grow the series count.
        "other".into()
    } else {
        "unknown".into()
    }
}

/// The OAuth error codes an AS may send (RFC 6749 §4.1.2.1/§5.2, RFC 6750, RFC 7009,
/// RFC 9101, RFC 9126, RFC 9449, OIDC Core §3.1.2.6): the only ones that become labels.
const KNOWN_ERROR_CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "invalid_token",
    "insufficient_scope",
    "unsupported_token_type",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "invalid_redirect_uri",
    "invalid_authorization_details",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "interaction_required",
    "login_required",
    "consent_required",
    "account_selection_required",
    "registration_not_supported",
    "slow_down",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_error_codes_do_not_become_labels() {
        assert_eq!(sanitize_error_code("invalid_client"), "invalid_client");
        assert_eq!(sanitize_error_code("made_up_by_the_as"), "other");
        assert_eq!(sanitize_error_code("Bad\"Label}"), "unknown");
        assert_eq!(sanitize_error_code(&"a".repeat(100)), "unknown");
        assert_eq!(sanitize_error_code(""), "unknown");
    }
}
