//! Requested claim values (OIDC Core §5.5.1) from the login start to the token call: the
//! app's `claims` asks for an `openbanking_intent_id` value, the value rides in the sealed
//! state to the callback's code record, and the ID token of the code response must carry it
//! (`FAPI2SPFinalClientTestInvalidOpenBankingIntentId`).

mod common;

use common::token_as::{now, TokenAs};
use par_sidecar::egress::{self, EgressResponse};
use par_sidecar::front::callback::{check, CallbackOutcome};
use par_sidecar::front::login_start::{decide, RedirectDecision};
use serde_json::json;

type Stack = TokenAs;

async fn stack() -> Stack {
    TokenAs::start(|yaml, _| format!("{yaml}callback: {{ paths: [\"/cb\"] }}\n")).await
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Stack {
    /// Login start (PAR through the double) and callback with `code`: the code record the
    /// token call will use. `claims` is the app's `claims` parameter.
    async fn login(&self, code: &str, claims: serde_json::Value) {
        let issuer = &self.double.issuer;
        let redirect = format!(
            "{issuer}/authorize?response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
             &scope=openid&state=st-1&nonce=n-1&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8\
             &code_challenge_method=S256&claims={}",
            enc(&claims.to_string())
        );
        let RedirectDecision::Rewrite { set_cookie, .. } = decide(&self.state.front, redirect.as_bytes()).await else {
            panic!("not rewritten; AS saw {:?}", self.double.calls());
        };
        let pushed = self.double.seen().last().unwrap().request_claims.clone();
        assert_eq!(pushed["claims"], claims, "the app's claims are pushed as sent");
        let sealed = pushed["state"].as_str().unwrap().to_string();
        let cookie = set_cookie.map(|c| c.split(';').next().unwrap().to_string());
        let cookies: Vec<&[u8]> = cookie.iter().map(|c| c.as_bytes()).collect();
        let q = format!("code={code}&state={}&iss={}", enc(&sealed), enc(issuer));
        let CallbackOutcome::Forward { .. } = check(&self.state.front, "/cb", Some(&q), &cookies).await else {
            panic!("callback not forwarded")
        };
    }

    fn answer_with_id_token(&self, at: &str, extra: serde_json::Value) {
        let mut c = json!({"iss": self.double.issuer, "sub": "u-1", "aud": "legacy-app",
            "exp": now() + 300, "iat": now(), "nonce": "n-1"});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let id_token = self.sign(&c);
        self.answer(json!({"access_token": at, "token_type": "Bearer", "id_token": id_token}));
    }

    async fn token(&self, code: &str) -> EgressResponse {
        let form = format!("grant_type=authorization_code&code={code}");
        egress::handle(&self.state, common::egress_post("/token", Some("legacy-app:s"), &form)).await
    }
}

fn intent(value: &str) -> serde_json::Value {
    json!({"id_token": {"openbanking_intent_id": {"value": value, "essential": true}, "acr": null}})
}

#[tokio::test]
async fn an_id_token_for_another_intent_is_refused_and_the_requested_one_passes() {
    let s = stack().await;
    s.login("code-1", intent("urn:intent:1")).await;
    s.answer_with_id_token("at-other", json!({"openbanking_intent_id": "urn:intent:2"}));
    let r = s.token("code-1").await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (r.status, v["error"].as_str()),
        (502, Some("invalid_token_response")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap().contains("`claim_value`"),
        "{v}"
    );
    assert!(
        !String::from_utf8_lossy(&r.body).contains("at-other"),
        "no token reaches the app"
    );

    // Missing altogether: refused too.
    s.login("code-2", intent("urn:intent:1")).await;
    s.answer_with_id_token("at-none", json!({}));
    assert_eq!(s.token("code-2").await.status, 502);

    // The requested value: the app gets its tokens.
    s.login("code-3", intent("urn:intent:1")).await;
    s.answer_with_id_token("at-good", json!({"openbanking_intent_id": "urn:intent:1"}));
    let r = s.token("code-3").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // A login that requested no value: any intent id passes.
    s.login("code-4", json!({"id_token": {"acr": {"essential": true}}}))
        .await;
    s.answer_with_id_token("at-free", json!({"openbanking_intent_id": "urn:whatever"}));
    assert_eq!(s.token("code-4").await.status, 200);

    let m = String::from_utf8(s.state.metrics.render()).unwrap();
    assert!(
        m.contains(
            r#"par_sidecar_token_response_checks_total{as="default",grant="authorization_code",outcome="claim_value"} 2"#
        ),
        "{m}"
    );
}

#[tokio::test]
async fn more_requested_values_than_the_sealed_state_carries_are_refused_before_any_par() {
    let s = stack().await;
    let many: serde_json::Map<String, serde_json::Value> =
        (0..9).map(|i| (format!("c{i}"), json!({"value": i}))).collect();
    let redirect = format!(
        "{}/authorize?response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
         &scope=openid&state=st-1&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8\
         &code_challenge_method=S256&claims={}",
        s.double.issuer,
        enc(&json!({ "id_token": many }).to_string())
    );
    let RedirectDecision::Fail(e) = decide(&s.state.front, redirect.as_bytes()).await else {
        panic!("not refused")
    };
    assert_eq!(e.code.as_str(), "malformed_authorize_redirect");
    assert!(s.double.seen().is_empty(), "no PAR was sent");
}
