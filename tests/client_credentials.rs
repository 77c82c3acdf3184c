//! `client_credentials` for consent creation (UK, Brazil, KSA create the intent with a TPP
//! token first): forwarded only when it is in `egress.allowed_grant_types` and the app
//! authenticates to the egress; the token response is checked, with no ID token expected.

mod common;

use std::sync::Arc;

use common::{settings_yaml, AsDouble};
use jsonwebtoken::Algorithm;
use par_sidecar::config::Settings;
use par_sidecar::egress::{self, EgressResponse};
use par_sidecar::sidecar::Sidecar;
use serde_json::json;

/// SHA-256 of `the-apps-old-secret`.
const APP_SECRET_SHA256: &str = "3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a";

fn yaml(pki: &std::path::Path, double: &AsDouble, egress: &str) -> String {
    settings_yaml(
        pki,
        &double.issuer,
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        egress,
    )
}

async fn stack(egress: &str) -> (AsDouble, Arc<Sidecar>) {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = common::loaded_state(&yaml(&pki, &double, egress), &pki.join("s.yaml")).await;
    (double, state)
}

fn answer(double: &AsDouble, body: serde_json::Value) {
    double.replies.lock().unwrap().insert(
        "/token".into(),
        (
            200,
            vec![("content-type".into(), "application/json".into())],
            body.to_string(),
        ),
    );
}

fn error_of(r: &EgressResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["error"].as_str().unwrap_or("").to_string()
}

const CC: &str = "grant_type=client_credentials&scope=accounts";

#[tokio::test]
async fn with_app_authentication_client_credentials_is_forwarded_and_its_response_checked() {
    let (double, state) = stack(&format!(
        "egress:\n  allowed_grant_types: [authorization_code, refresh_token, client_credentials]\n  \
         app_client_secret_sha256: \"{APP_SECRET_SHA256}\"\n"
    ))
    .await;
    // Not authenticated (no secret, a wrong one): never reaches the AS.
    for basic in [None, Some("legacy-app:wrong")] {
        let r = egress::handle(&state, common::egress_post("/token", basic, CC)).await;
        assert_eq!((r.status, error_of(&r).as_str()), (401, "invalid_client"), "{basic:?}");
    }
    assert!(double.calls().is_empty(), "{:?}", double.calls());

    // Authenticated: forwarded with the sidecar's client authentication, not the app's secret.
    answer(
        &double,
        json!({"access_token": "at-cc", "token_type": "Bearer", "expires_in": 300}),
    );
    let r = egress::handle(
        &state,
        common::egress_post("/token", Some("legacy-app:the-apps-old-secret"), CC),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["access_token"], "at-cc", "no ID token is expected");
    let form = double.attempts.lock().unwrap().last().cloned().unwrap();
    assert_eq!(form.get("grant_type").map(String::as_str), Some("client_credentials"));
    assert!(form.contains_key("client_assertion"));
    assert!(!form.contains_key("client_secret"));

    // The response is checked: a token of another type is refused, the app never sees it.
    answer(&double, json!({"access_token": "at-mac", "token_type": "mac"}));
    let r = egress::handle(
        &state,
        common::egress_post("/token", Some("legacy-app:the-apps-old-secret"), CC),
    )
    .await;
    assert_eq!((r.status, error_of(&r).as_str()), (502, "invalid_token_response"));
    assert!(!String::from_utf8_lossy(&r.body).contains("at-mac"));
    let m = String::from_utf8(state.metrics.render()).unwrap();
    for sample in [
        r#"par_sidecar_token_response_checks_total{as="default",grant="client_credentials",outcome="valid"} 1"#,
        r#"par_sidecar_token_response_checks_total{as="default",grant="client_credentials",outcome="token_type"} 1"#,
    ] {
        assert!(m.contains(sample), "{sample} not in\n{m}");
    }
}

#[tokio::test]
async fn without_app_authentication_client_credentials_is_refused() {
    // In the allowlist without an app secret: the config does not load, naming both keys.
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let e = Settings::from_yaml(
        &yaml(
            &pki,
            &double,
            "egress:\n  allowed_grant_types: [authorization_code, client_credentials]\n",
        ),
        &pki.join("s.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("egress.allowed_grant_types") && e.contains("egress.app_client_secret_sha256"),
        "{e}"
    );
    // An app secret but the default allowlist: refused before any AS call.
    let (double, state) = stack(&format!(
        "egress:\n  app_client_secret_sha256: \"{APP_SECRET_SHA256}\"\n"
    ))
    .await;
    let r = egress::handle(
        &state,
        common::egress_post("/token", Some("legacy-app:the-apps-old-secret"), CC),
    )
    .await;
    assert_eq!((r.status, error_of(&r).as_str()), (400, "unsupported_grant_type"));
    assert!(double.calls().is_empty());
}
