//! Relying-party checks on token responses through the egress listener, against the
//! real-TLS AS double with canned `/token` and `/jwks` answers: an OpenID login's code
//! response without an ID token, and a refresh response whose ID token names another user.

mod common;

use common::token_as::refused_as;
use common::token_as::TokenAs;
use par_sidecar::egress::{self, EgressResponse};
use serde_json::json;

type Stack = TokenAs;

async fn stack() -> Stack {
    TokenAs::start(|yaml, _| yaml).await
}

impl Stack {
    async fn token(&self, form: &str) -> EgressResponse {
        egress::handle(&self.state, common::egress_post("/token", Some("legacy-app:s"), form)).await
    }

    fn metrics(&self) -> String {
        String::from_utf8(self.state.metrics.render()).unwrap()
    }
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
