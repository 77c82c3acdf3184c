//! What the callback needs from the authorize step travels inside the `state` sent to the
//! AS, sealed with AES-256-GCM: the app's original `state`, the injected PKCE verifier, a
//! timestamp and a nonce. Replicas sharing the key need no shared store.

use crate::errors::FailureCode;
use crate::protocol::secret::Secret;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Recognisable, versioned prefix: `ps1.` + base64url(nonce || ciphertext || tag).
pub const PREFIX: &str = "ps1.";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("state is not one the sidecar issued")]
    Foreign,
    #[error("state failed authentication (tampered or sealed with another key)")]
    Tampered,
    #[error("state is older than {0} s")]
    Expired(u64),
}

impl SealError {
    /// The browser-facing failure this error becomes.
    pub fn failure(&self) -> FailureCode {
        match self {
            SealError::Foreign => FailureCode::StateForeign,
            SealError::Tampered => FailureCode::StateTampered,
            SealError::Expired(_) => FailureCode::StateExpired,
        }
    }

    /// The stable code (metric label).
    pub fn code(&self) -> &'static str {
        self.failure().as_str()
    }
}

/// The sealed contents. Short field names keep the `state` small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionState {
    /// The app's original `state` (None when it sent none).
    #[serde(rename = "s", skip_serializing_if = "Option::is_none", default)]
    pub app_state: Option<String>,
    /// The PKCE verifier the sidecar injected.
    #[serde(rename = "v", skip_serializing_if = "Option::is_none", default)]
    pub verifier: Option<Secret>,
    /// `redirect_uri` as pushed, byte for byte.
    #[serde(rename = "r", skip_serializing_if = "Option::is_none", default)]
    pub redirect_uri: Option<String>,
    /// Unix seconds at sealing.
    #[serde(rename = "t")]
    pub issued_at: u64,
    /// Unique id: the replay cache key.
    #[serde(rename = "n")]
    pub nonce: String,
    /// Whether JARM was requested (a plain response is then a downgrade, CB-4).
    #[serde(rename = "j", skip_serializing_if = "std::ops::Not::not", default)]
    pub jarm: bool,
    /// `s256` of the browser-binding cookie value (None when binding is off).
    #[serde(rename = "b", skip_serializing_if = "Option::is_none", default)]
    pub binding: Option<String>,
    /// The configured name of the AS the login started at (mix-up defence, RFC 9207). None
    /// in states sealed before several ASs were supported: the only AS.
    #[serde(rename = "a", skip_serializing_if = "Option::is_none", default)]
    pub as_name: Option<String>,
    /// The OpenID `nonce` pushed in the request object (the ID token must carry it).
    #[serde(rename = "o", skip_serializing_if = "Option::is_none", default)]
    pub oidc_nonce: Option<Secret>,
    /// `max_age` the app asked for (the ID token's `auth_time` must honour it).
    #[serde(rename = "m", skip_serializing_if = "Option::is_none", default)]
    pub max_age: Option<u64>,
    /// The app asked for `response_mode=form_post`: the checked response is delivered to it
    /// as a POST (the AS answers in the query, which the callback check reads).
    #[serde(rename = "f", skip_serializing_if = "std::ops::Not::not", default)]
    pub form_post: bool,
    /// ID token claim values the app requested in `claims` (bounded, `claim_values`): the
    /// ID token must carry them.
    #[serde(rename = "c", skip_serializing_if = "Option::is_none", default)]
    pub claim_values: Option<crate::handoff::RequestedValues>,
}

pub struct StateSealer {
    key: LessSafeKey,
    aad: Vec<u8>,
    /// True when the key was generated at start-up (single-replica only).
    pub ephemeral: bool,
}

impl StateSealer {
    /// `material`: 32 raw bytes, or base64 / hex text of 32 bytes.
    pub fn from_material(material: &[u8], client_id: &str) -> Result<Self, String> {
        let text = std::str::from_utf8(material).map(str::trim).unwrap_or("");
        let key = if material.len() == 32 {
            material.to_vec()
        } else if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text).unwrap_or_default()
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| B64.decode(text.trim_end_matches('=')))
                .unwrap_or_default()
        };
        if key.len() != 32 {
            return Err("the state sealing key must be 32 bytes (raw, base64 or hex)".into());
        }
        Self::new(&key, client_id, false)
    }

    pub fn random(client_id: &str) -> Self {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k).expect("system RNG");
        Self::new(&k, client_id, true).expect("32-byte key")
    }

    fn new(key: &[u8], client_id: &str, ephemeral: bool) -> Result<Self, String> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| "bad AES-256 key".to_string())?;
        Ok(StateSealer {
            key: LessSafeKey::new(unbound),
            // Bound to the client: a state sealed for another client_id does not open.
            aad: format!("par-sidecar/state/v1/{client_id}").into_bytes(),
            ephemeral,
        })
    }

    pub fn seal(&self, t: &TransactionState) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system RNG");
        let mut buf = serde_json::to_vec(t).expect("json");
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&self.aad), &mut buf)
            .expect("AES-GCM seal");
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, now: u64, max_age: u64) -> Result<TransactionState, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Foreign)?;
        let mut raw = B64.decode(body).map_err(|_| SealError::Tampered)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SealError::Tampered);
        }
        let nonce: [u8; NONCE_LEN] = raw[..NONCE_LEN].try_into().expect("length checked");
        let ct = &mut raw[NONCE_LEN..];
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&self.aad), ct)
            .map_err(|_| SealError::Tampered)?;
        let t: TransactionState = serde_json::from_slice(plain).map_err(|_| SealError::Tampered)?;
        if now.saturating_sub(t.issued_at) > max_age || t.issued_at > now + 60 {
            return Err(SealError::Expired(max_age));
        }
        Ok(t)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TransactionState {
        TransactionState {
            app_state: Some("app-state-ü".into()),
            verifier: Some(Secret::new("v".repeat(43))),
            redirect_uri: Some("https://app/cb".into()),
            issued_at: 1000,
            nonce: "n1".into(),
            jarm: false,
            binding: None,
            as_name: None,
            oidc_nonce: None,
            max_age: None,
            form_post: false,
            claim_values: None,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let s = StateSealer::from_material(&[7u8; 32], "app").unwrap();
        let sealed = s.seal(&t());
        assert!(sealed.starts_with("ps1."));
        assert!(!sealed.contains("app-state"), "contents are encrypted");
        assert_eq!(s.open(&sealed, 1100, 600).unwrap(), t());
        assert_eq!(s.open(&sealed, 1700, 600), Err(SealError::Expired(600)));
    }

    #[test]
    fn requested_claim_values_round_trip_and_cost_nothing_when_absent() {
        let s = StateSealer::from_material(&[7u8; 32], "app").unwrap();
        let mut with = t();
        let values = crate::as_client::claim_values::requested(Some(&serde_json::json!({
            "id_token": {"openbanking_intent_id": {"value": "urn:x"}}
        })))
        .unwrap();
        with.claim_values = values;
        let sealed = s.seal(&with);
        assert_eq!(s.open(&sealed, 1100, 600).unwrap(), with);
        // Absent: not serialized, so states sealed before the field open unchanged.
        assert!(s.seal(&t()).len() < sealed.len());
        assert!(!serde_json::to_string(&t()).unwrap().contains("\"c\""));
    }

    #[test]
    fn tampered_foreign_and_other_client_are_rejected() {
        let s = StateSealer::from_material(&[7u8; 32], "app").unwrap();
        let sealed = s.seal(&t());
        let mut chars: Vec<char> = sealed.chars().collect();
        let i = chars.len() - 5;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(s.open(&tampered, 1100, 600), Err(SealError::Tampered));
        assert_eq!(s.open("plain-app-state", 1100, 600), Err(SealError::Foreign));
        assert_eq!(s.open("ps1.!!!", 1100, 600), Err(SealError::Tampered));
        let other = StateSealer::from_material(&[7u8; 32], "other-client").unwrap();
        assert_eq!(other.open(&sealed, 1100, 600), Err(SealError::Tampered));
        let other_key = StateSealer::random("app");
        assert_eq!(other_key.open(&sealed, 1100, 600), Err(SealError::Tampered));
    }

    #[test]
    fn key_material_formats() {
        let b64 = STANDARD.encode([1u8; 32]);
        assert!(StateSealer::from_material(b64.as_bytes(), "a").is_ok());
        assert!(StateSealer::from_material(format!("{b64}\n").as_bytes(), "a").is_ok());
        assert!(StateSealer::from_material("01".repeat(32).as_bytes(), "a").is_ok());
        assert!(StateSealer::from_material(b"short", "a").is_err());
    }
}
