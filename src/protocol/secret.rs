//! Values that must never reach a log line: PKCE verifiers, OpenID nonces, access tokens.
//! `Debug` prints `Secret(..)`, so deriving `Debug` on a record that holds one stays safe;
//! the value is read only through `expose`, which a reviewer can search for.

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: for the wire, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl From<String> for Secret {
    fn from(v: String) -> Self {
        Secret(v)
    }
}

impl From<&str> for Secret {
    fn from(v: &str) -> Self {
        Secret(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_serde_is_the_bare_string() {
        let s = Secret::new("verifier-value");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(..))");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""verifier-value""#);
        let back: Secret = serde_json::from_str(r#""verifier-value""#).unwrap();
        assert_eq!(back.expose(), "verifier-value");
    }
}
