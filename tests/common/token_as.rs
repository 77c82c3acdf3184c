//! The AS double answering token calls with ID tokens signed by its own ES256 key (`kid`
//! as-1, published at its `/jwks`), and a sidecar loaded against it: the set-up of the
//! token-response, encrypted ID token and claim value tests.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use par_sidecar::handoff::CodeRecord;
use par_sidecar::sidecar::Sidecar;
use serde_json::{json, Value};

use par_sidecar::egress::EgressResponse;

use super::{settings_yaml, AsDouble};

pub struct TokenAs {
    pub double: AsDouble,
    pub state: Arc<Sidecar>,
    /// Signs the ID tokens the AS hands out.
    pub key: EncodingKey,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TokenAs {
    /// `edit` may change the sidecar's settings YAML (ES256, private_key_jwt) before it
    /// loads; it gets the PKI directory for key files it writes.
    pub async fn start(edit: impl FnOnce(String, &Path) -> String) -> TokenAs {
        let pki = super::pki();
        let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
        let yaml = settings_yaml(&pki, &double.issuer, "sign-es256.pem", "ES256", "private_key_jwt", "");
        let yaml = edit(yaml, &pki);
        let state = super::loaded_state(&yaml, &pki.join("s.yaml")).await;
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let key = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("as-1".into());
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
        double.replies.lock().unwrap().insert(
            "/jwks".into(),
            (200, vec![("content-type".into(), "application/json".into())], jwks),
        );
        TokenAs { double, state, key }
    }

    /// A JWT the AS signed over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("as-1".into());
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }

    /// A valid ID token for the sidecar's client.
    pub fn id_token(&self, sub: &str, nonce: Option<&str>) -> String {
        let mut c =
            json!({"iss": self.double.issuer, "sub": sub, "aud": "legacy-app", "exp": now() + 300, "iat": now()});
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        self.sign(&c)
    }

    /// The AS's next token response.
    pub fn answer(&self, body: Value) {
        self.double.replies.lock().unwrap().insert(
            "/token".into(),
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                body.to_string(),
            ),
        );
    }

    /// A code the sidecar saw at the callback of a login that pushed `nonce`.
    pub fn code(&self, code: &str, nonce: Option<&str>) {
        self.state.codes.insert_new(
            code.into(),
            CodeRecord {
                as_index: par_sidecar::protocol::AsIndex::new(0),
                verifier: None,
                redirect_uri: None,
                nonce: nonce.map(Into::into),
                max_age: None,
                claim_values: None,
            },
        );
    }
}

/// The egress answered `invalid_token_response` naming `check`, and no token (`at-…`)
/// reached the app.
pub fn refused_as(r: &EgressResponse, check: &str) {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (r.status, v["error"].as_str()),
        (502, Some("invalid_token_response")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap().contains(&format!("`{check}`")),
        "{v}"
    );
    assert!(
        !String::from_utf8_lossy(&r.body).contains("at-"),
        "no token reaches the app"
    );
}
