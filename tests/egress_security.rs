//! Egress listener refusals, in process against the real-TLS AS double: the token route's
//! grant allowlist, the optional app secret, and resource paths confined to their target.
//! Each refusal is checked from the AS side too: nothing reached it, nothing was signed.

mod common;

use std::sync::Arc;

use common::{settings_yaml, AsDouble};
use jsonwebtoken::Algorithm;
use par_sidecar::egress::{self, EgressRequest, EgressResponse};
use par_sidecar::sidecar::Sidecar;

/// SHA-256 of `the-apps-old-secret`.
const APP_SECRET_SHA256: &str = "3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a";

async fn stack(extra: &str) -> (AsDouble, Arc<Sidecar>) {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let extra = extra.replace("{issuer}", &double.issuer);
    let yaml = settings_yaml(
        &pki,
        &double.issuer,
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        &extra,
    );
    let state = common::loaded_state(&yaml, &pki.join("s.yaml")).await;
    (double, state)
}

fn get(path: &str) -> EgressRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer at-1".parse().unwrap());
    EgressRequest {
        method: http::Method::GET,
        path: path.into(),
        query: None,
        headers,
        body: bytes::Bytes::new(),
    }
}

fn error_of(r: &EgressResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["error"].as_str().unwrap_or("").to_string()
}

fn metrics(state: &Sidecar) -> String {
    String::from_utf8(state.metrics.render()).unwrap()
}

/// Nothing was signed: no client assertion was made for a refused request.
fn nothing_signed(state: &Sidecar) -> bool {
    !metrics(state).contains("par_sidecar_signing_duration_seconds_count")
}

#[tokio::test]
async fn only_allowed_grants_reach_the_token_endpoint() {
    let (double, state) = stack("").await;
    for body in [
        "grant_type=client_credentials&scope=accounts",
        "grant_type=password&username=u&password=p",
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=x",
        "scope=accounts",
        "",
    ] {
        let r = egress::handle(&state, common::egress_post("/token", Some("legacy-app:s"), body)).await;
        assert_eq!(
            (r.status, error_of(&r).as_str()),
            (400, "unsupported_grant_type"),
            "{body}"
        );
    }
    assert!(double.calls().is_empty(), "{:?}", double.calls());
    assert!(nothing_signed(&state));
    let m = metrics(&state);
    assert!(
        m.contains(r#"as="default",as_error="",outcome="grant_not_allowed",route="token"} 5"#),
        "{m}"
    );
    // The per-AS route is held to the same list.
    let r = egress::handle(
        &state,
        common::egress_post("/as/default/token", None, "grant_type=client_credentials"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(double.calls().is_empty());
    // A refresh grant is forwarded (the double has no token endpoint: its 404 comes back).
    let r = egress::handle(
        &state,
        common::egress_post("/token", None, "grant_type=refresh_token&refresh_token=rt"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(double.calls(), ["POST /token"]);
}

#[tokio::test]
async fn allowed_grant_types_widens_the_list() {
    // (client_credentials needs an app secret: tests/client_credentials.rs.)
    let (double, state) = stack(
        "egress:\n  allowed_grant_types: [authorization_code, refresh_token, \"urn:ietf:params:oauth:grant-type:token-exchange\"]\n",
    )
    .await;
    let r = egress::handle(
        &state,
        common::egress_post(
            "/token",
            None,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        ),
    )
    .await;
    assert_eq!(r.status, 404, "forwarded to the double");
    assert_eq!(double.calls(), ["POST /token"]);
    let r = egress::handle(&state, common::egress_post("/token", None, "grant_type=password")).await;
    assert_eq!(error_of(&r), "unsupported_grant_type");
    assert_eq!(double.calls().len(), 1);
}

#[tokio::test]
async fn the_app_secret_when_configured_is_required_before_any_as_call() {
    let (double, state) = stack(&format!(
        "egress:\n  app_client_secret_sha256: \"{APP_SECRET_SHA256}\"\n"
    ))
    .await;
    let refused = [
        common::egress_post("/token", None, "grant_type=refresh_token&refresh_token=rt"),
        common::egress_post(
            "/token",
            None,
            "grant_type=refresh_token&refresh_token=rt&client_id=legacy-app",
        ),
        common::egress_post(
            "/token",
            Some("legacy-app:wrong"),
            "grant_type=refresh_token&refresh_token=rt",
        ),
        common::egress_post(
            "/token",
            None,
            "grant_type=refresh_token&refresh_token=rt&client_id=legacy-app&client_secret=wrong",
        ),
        common::egress_post("/introspect", None, "token=at-1"),
        common::egress_post("/revoke", Some("legacy-app:wrong"), "token=rt"),
        // An unauthenticated caller learns nothing about grant allowlists either.
        common::egress_post("/token", None, "grant_type=client_credentials"),
    ];
    for req in refused {
        let r = egress::handle(&state, req.clone()).await;
        assert_eq!((r.status, error_of(&r).as_str()), (401, "invalid_client"), "{req:?}");
        assert!(r.headers.iter().any(|(k, _)| k == "www-authenticate"));
    }
    assert!(double.calls().is_empty(), "{:?}", double.calls());
    assert!(nothing_signed(&state));
    let m = metrics(&state);
    assert!(m.contains(r#"outcome="app_auth_missing",route="token"} 3"#), "{m}");
    assert!(m.contains(r#"outcome="app_auth_failed",route="token"} 2"#), "{m}");
    assert!(
        m.contains(r#"outcome="app_auth_missing",route="introspection"} 1"#),
        "{m}"
    );
    // The right secret, Basic or form: forwarded, and the app's secret never goes out.
    let r = egress::handle(
        &state,
        common::egress_post(
            "/token",
            Some("legacy-app:the-apps-old-secret"),
            "grant_type=refresh_token&refresh_token=rt",
        ),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = egress::handle(
        &state,
        common::egress_post(
            "/token",
            None,
            "grant_type=refresh_token&refresh_token=rt&client_id=legacy-app&client_secret=the-apps-old-secret",
        ),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(double.calls(), ["POST /token", "POST /token"]);
    // Userinfo and resource calls carry the app's bearer token: no app secret asked for.
    let r = egress::handle(&state, get("/userinfo")).await;
    assert_ne!(r.status, 401);
}

#[tokio::test]
async fn without_the_setting_the_app_secret_is_not_checked() {
    let (double, state) = stack("").await;
    let r = egress::handle(
        &state,
        common::egress_post("/token", None, "grant_type=refresh_token&refresh_token=rt"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(double.calls(), ["POST /token"]);
}

#[tokio::test]
async fn resource_paths_stay_under_their_target() {
    let (double, state) =
        stack("egress:\n  resources:\n    - { prefix: /rs/accounts, target: \"{issuer}/api/accounts/\" }\n").await;
    for path in [
        "/rs/accounts/%2e%2e/%2e%2e/admin",
        "/rs/accounts/%2E%2E/admin",
        "/rs/accounts/.%2e/admin",
        "/rs/accounts/../admin",
        "/rs/accounts/..;/admin",
        "/rs/accounts/a\\..\\..\\admin",
        "/rs/accounts/a%5c..%5c..%5cadmin",
        "/rs/accounts/a%2f..%2f..%2fadmin",
    ] {
        let r = egress::handle(&state, get(path)).await;
        assert_eq!((r.status, error_of(&r).as_str()), (400, "invalid_request"), "{path}");
    }
    // `/rs/accounts` does not match `/rs/accountsx`.
    let r = egress::handle(&state, get("/rs/accountsx/1")).await;
    assert_eq!(r.status, 404);
    assert!(double.calls().is_empty(), "{:?}", double.calls());
    let m = metrics(&state);
    assert!(m.contains(r#"outcome="bad_path",route="resource"} 8"#), "{m}");
    // Paths under the prefix map under the target.
    egress::handle(&state, get("/rs/accounts/1/balances")).await;
    egress::handle(&state, get("/rs/accounts")).await;
    assert_eq!(double.calls(), ["GET /api/accounts/1/balances", "GET /api/accounts"]);
}

/// An AS route's 3xx never reaches the app: an HTTP client following it would re-send the
/// body (refresh token, the app's secret) to the `Location`. 502, counted as `as_redirect`.
#[tokio::test]
async fn an_as_redirect_on_an_as_route_is_a_502_without_its_location() {
    let (double, state) = stack("").await;
    for status in [301u16, 302, 303, 307, 308] {
        double.replies.lock().unwrap().insert(
            "/token".into(),
            (
                status,
                vec![("location".into(), "https://attacker.example/collect".into())],
                String::new(),
            ),
        );
        let r = egress::handle(
            &state,
            common::egress_post(
                "/token",
                Some("legacy-app:s"),
                "grant_type=refresh_token&refresh_token=rt",
            ),
        )
        .await;
        assert_eq!(
            (r.status, error_of(&r).as_str()),
            (502, "temporarily_unavailable"),
            "{status}"
        );
        assert!(
            !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("location")),
            "{status}: {:?}",
            r.headers
        );
        assert!(!String::from_utf8_lossy(&r.body).contains("attacker.example"));
    }
    let m = metrics(&state);
    assert!(m.contains(r#"outcome="as_redirect",route="token"} 5"#), "{m}");
}

/// The client assertion is signed only once the egress permit is held: calls turned away
/// as overloaded cost no signature.
#[tokio::test]
async fn no_assertion_is_signed_for_a_call_turned_away_as_overloaded() {
    let (double, state) = stack("").await;
    let client = state.first_as().clone();
    let all = client.egress_permits.available_permits() as u32;
    let _held = client.egress_permits.acquire_many(all).await.unwrap();
    let r = egress::handle(
        &state,
        common::egress_post(
            "/token",
            Some("legacy-app:s"),
            "grant_type=refresh_token&refresh_token=rt",
        ),
    )
    .await;
    assert_eq!((r.status, error_of(&r).as_str()), (503, "temporarily_unavailable"));
    assert!(double.calls().is_empty());
    assert!(nothing_signed(&state), "{}", metrics(&state));
    assert!(metrics(&state).contains(r#"outcome="overloaded",route="token"} 1"#));
}
