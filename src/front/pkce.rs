//! PKCE for apps that never heard of it (PKCE-6..8): inject S256 when the app sends no
//! challenge, upgrade `plain` to S256 (the app's verifier still matches), leave S256 alone.

use serde_json::Value;

use crate::as_client::jose::{random_token, s256};
use crate::front::location::AuthorizeError;
use crate::protocol::authorize::AuthorizeRedirect;

/// What the sidecar did to the app's PKCE, for the callback and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PkceAction {
    /// The app sent S256: passed through.
    Passed,
    /// The app sent `plain`: replaced by S256 of its challenge.
    Upgraded,
    /// The app sent nothing: the sidecar holds this verifier.
    Injected(String),
}

impl PkceAction {
    pub fn label(&self) -> &'static str {
        match self {
            PkceAction::Passed => "passed",
            PkceAction::Upgraded => "upgraded",
            PkceAction::Injected(_) => "injected",
        }
    }
}

/// RFC 7636 §4.1: 43..128 characters of `[A-Za-z0-9-._~]`.
pub fn valid_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Applies the PKCE policy to the parameters that will be pushed.
pub fn apply(redirect: &mut AuthorizeRedirect) -> Result<PkceAction, AuthorizeError> {
    let challenge = redirect.get_str("code_challenge").map(str::to_string);
    let method = redirect.get_str("code_challenge_method").map(str::to_string);
    let p = &mut redirect.params;
    match (challenge, method.as_deref()) {
        (None, None) => {
            let verifier = random_token();
            p.insert("code_challenge".into(), Value::String(s256(&verifier)));
            p.insert("code_challenge_method".into(), Value::String("S256".into()));
            Ok(PkceAction::Injected(verifier))
        }
        (None, Some(_)) => Err(AuthorizeError::Pkce("code_challenge_method without code_challenge")),
        // RFC 7636 §4.3: a missing method means plain.
        (Some(c), None | Some("plain")) => {
            if !valid_pkce_value(&c) {
                return Err(AuthorizeError::Pkce("plain code_challenge is not a valid verifier"));
            }
            p.insert("code_challenge".into(), Value::String(s256(&c)));
            p.insert("code_challenge_method".into(), Value::String("S256".into()));
            Ok(PkceAction::Upgraded)
        }
        (Some(c), Some("S256")) => {
            if c.len() != 43 || !valid_pkce_value(&c) {
                return Err(AuthorizeError::Pkce("S256 code_challenge is malformed"));
            }
            Ok(PkceAction::Passed)
        }
        (Some(_), Some(_)) => Err(AuthorizeError::Pkce("unsupported code_challenge_method")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn redirect(pairs: &[(&str, &str)]) -> AuthorizeRedirect {
        let mut params = Map::new();
        for (k, v) in pairs {
            params.insert(k.to_string(), Value::String(v.to_string()));
        }
        AuthorizeRedirect { params }
    }

    #[test]
    fn injects_when_absent() {
        let mut r = redirect(&[("client_id", "a")]);
        let PkceAction::Injected(v) = apply(&mut r).unwrap() else {
            panic!()
        };
        assert!(valid_pkce_value(&v));
        assert_eq!(r.get_str("code_challenge"), Some(s256(&v).as_str()));
        assert_eq!(r.get_str("code_challenge_method"), Some("S256"));
    }

    #[test]
    fn upgrades_plain_so_the_apps_verifier_still_matches() {
        let verifier = "x".repeat(43);
        let mut r = redirect(&[("code_challenge", &verifier), ("code_challenge_method", "plain")]);
        assert_eq!(apply(&mut r).unwrap(), PkceAction::Upgraded);
        assert_eq!(r.get_str("code_challenge"), Some(s256(&verifier).as_str()));
        assert_eq!(r.get_str("code_challenge_method"), Some("S256"));
        // Missing method means plain.
        let mut r = redirect(&[("code_challenge", &verifier)]);
        assert_eq!(apply(&mut r).unwrap(), PkceAction::Upgraded);
    }

    #[test]
    fn passes_s256_and_rejects_garbage() {
        let c = s256("whatever-verifier-value-that-is-long-enough-xx");
        let mut r = redirect(&[("code_challenge", &c), ("code_challenge_method", "S256")]);
        assert_eq!(apply(&mut r).unwrap(), PkceAction::Passed);
        assert_eq!(r.get_str("code_challenge"), Some(c.as_str()));
        for bad in [
            vec![("code_challenge", "short"), ("code_challenge_method", "plain")],
            vec![("code_challenge", "short"), ("code_challenge_method", "S256")],
            vec![("code_challenge_method", "S256")],
            vec![("code_challenge", &c[..]), ("code_challenge_method", "S512")],
        ] {
            assert!(apply(&mut redirect(&bad)).is_err(), "{bad:?}");
        }
    }
}
