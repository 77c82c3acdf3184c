//! Relying-party checks on token responses through the egress listener, against the
//! real-TLS AS double with canned `/token` and `/jwks` answers: an OpenID login's code
//! response without an ID token, and a refresh response whose ID token names another user.

mod common;

use std::sync::Arc;

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use common::{settings_yaml, AsDouble};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use par_sidecar::egress::{self, EgressResponse};
use par_sidecar::handoff::CodeRecord;
use par_sidecar::sidecar::Sidecar;
use serde_json::json;

struct Stack {
    double: AsDouble,
    state: Arc<Sidecar>,
    key: EncodingKey,
}

async fn stack() -> Stack {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let yaml = settings_yaml(&pki, &double.issuer, "sign-es256.pem", "ES256", "private_key_jwt", "");
    let state = common::loaded_state(&yaml, &pki.join("s.yaml")).await;
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let key = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("as-1".into());
    let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    double.replies.lock().unwrap().insert(
        "/jwks".into(),
        (200, vec![("content-type".into(), "application/json".into())], jwks),
    );
    Stack { double, state, key }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Stack {
    fn id_token(&self, sub: &str, nonce: Option<&str>) -> String {
        let mut c =
            json!({"iss": self.double.issuer, "sub": sub, "aud": "legacy-app", "exp": now() + 300, "iat": now()});
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("as-1".into());
        jsonwebtoken::encode(&h, &c, &self.key).unwrap()
    }

    /// The AS's next token response.
    fn answer(&self, body: serde_json::Value) {
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
    fn code(&self, code: &str, nonce: Option<&str>) {
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

    async fn token(&self, form: &str) -> EgressResponse {
        egress::handle(&self.state, common::egress_post("/token", Some("legacy-app:s"), form)).await
    }

    fn metrics(&self) -> String {
        String::from_utf8(self.state.metrics.render()).unwrap()
    }
}

fn refused_as(r: &EgressResponse, check: &str) {
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

#[tokio::test]
async fn an_openid_code_response_without_an_id_token_is_refused() {
    let s = stack().await;
    s.answer(json!({"access_token": "at-1", "token_type": "Bearer", "refresh_token": "rt-1"}));
    // The login pushed a nonce: an OpenID login.
    s.code("code-1", Some("n-1"));
    refused_as(
        &s.token("grant_type=authorization_code&code=code-1").await,
        "id_token_missing",
    );
    // The AS grants `openid` but sends no ID token (a login without a nonce).
    s.answer(json!({"access_token": "at-2", "token_type": "Bearer", "scope": "openid accounts"}));
    s.code("code-2", None);
    refused_as(
        &s.token("grant_type=authorization_code&code=code-2").await,
        "id_token_missing",
    );
    // A plain OAuth login (no openid, no nonce) needs none.
    s.answer(json!({"access_token": "at-3", "token_type": "Bearer", "scope": "accounts"}));
    s.code("code-3", None);
    assert_eq!(s.token("grant_type=authorization_code&code=code-3").await.status, 200);
    assert!(s.metrics().contains(
        r#"par_sidecar_token_response_checks_total{as="default",grant="authorization_code",outcome="id_token_missing"} 2"#
    ));
}

#[tokio::test]
async fn a_refresh_response_must_name_the_original_sub() {
    let s = stack().await;
    s.answer(json!({"access_token": "at-1", "token_type": "Bearer", "refresh_token": "rt-1", "id_token": s.id_token("alice", Some("n-1"))}));
    s.code("code-1", Some("n-1"));
    assert_eq!(s.token("grant_type=authorization_code&code=code-1").await.status, 200);
    // Same user, rotated refresh token: accepted.
    s.answer(json!({"access_token": "at-2", "token_type": "Bearer", "refresh_token": "rt-2", "id_token": s.id_token("alice", None)}));
    assert_eq!(s.token("grant_type=refresh_token&refresh_token=rt-1").await.status, 200);
    // The rotated token answered with another user's ID token: refused, tokens withheld.
    s.answer(json!({"access_token": "at-3", "token_type": "Bearer", "refresh_token": "rt-3", "id_token": s.id_token("mallory", None)}));
    refused_as(
        &s.token("grant_type=refresh_token&refresh_token=rt-2").await,
        "sub_mismatch",
    );
    assert!(s.metrics().contains(
        r#"par_sidecar_token_response_checks_total{as="default",grant="refresh_token",outcome="sub_mismatch"} 1"#
    ));
    // An ID token without sub is refused on any grant.
    s.answer(json!({"access_token": "at-4", "token_type": "Bearer", "id_token": s.id_token("", None)}));
    refused_as(&s.token("grant_type=refresh_token&refresh_token=rt-9").await, "sub");
}
