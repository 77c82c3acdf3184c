//! Newtypes for protocol values, so an issuer is never confused with an endpoint URL and a
//! client id never with a free-form string.

pub mod as_index;
pub mod authorize;
pub mod jose;
pub mod origin;
pub mod requirements;
pub mod secret;

use std::fmt;

pub use as_index::AsIndex;

use url::Url;

/// The AS issuer identifier. Compared byte for byte (DISC-2): a trailing `/` counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerUrl(String);

impl IssuerUrl {
    pub fn new(s: &str) -> Result<Self, String> {
        let u = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        if u.scheme() != "https" {
            return Err("the issuer must be an https URL".into());
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err("the issuer must not have a query or fragment (RFC 8414 §2)".into());
        }
        // Keep the configured string exactly: it is what `aud` and `iss` are compared with.
        Ok(IssuerUrl(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// OIDC Discovery style: `/.well-known/openid-configuration` appended after any path.
    pub fn default_discovery_url(&self) -> Url {
        let base = self.0.trim_end_matches('/');
        Url::parse(&format!("{base}/.well-known/openid-configuration")).expect("issuer was validated as a URL")
    }
}

impl fmt::Display for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The OAuth client identifier registered at the AS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_control()) {
            return Err("client_id must be 1..=255 printable characters".into());
        }
        Ok(ClientId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A random (version 4) UUID from the thread's CSPRNG (`rand`'s ChaCha, seeded and reseeded
/// from the OS). `Uuid::new_v4` asks the kernel (`getrandom`) for every one: three system
/// calls per login (interaction id and two `jti`s) for values that must be unique and
/// unguessable, not kernel-fresh.
pub fn random_uuid() -> uuid::Uuid {
    // One u128 draw: `random::<[u8; 16]>()` would draw a u32 per byte.
    uuid::Builder::from_random_bytes(rand::random::<u128>().to_ne_bytes()).into_uuid()
}

/// `x-fapi-interaction-id`: a UUIDv4 per AS call, also shown to the browser on errors so a
/// user's screenshot can be matched to the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InteractionId(uuid::Uuid);

impl InteractionId {
    pub fn new() -> Self {
        InteractionId(random_uuid())
    }
}

impl Default for InteractionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InteractionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Shortens a secret-bearing value for logs: enough to correlate, never enough to use.
pub fn redact(value: &str) -> String {
    let prefix: String = value.chars().take(6).collect();
    format!("{prefix}…({} chars)", value.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_distinct_version_4() {
        let ids: std::collections::HashSet<uuid::Uuid> = (0..1000).map(|_| random_uuid()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        let shown = InteractionId::new().to_string();
        assert_eq!(uuid::Uuid::parse_str(&shown).unwrap().get_version_num(), 4);
    }
}
