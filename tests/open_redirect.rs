//! Issue 18 M4: an open redirect in the app must not become a PAR signed with the TPP's key.
//! Each case runs `decide_for` with the facts of the request the app answered, built from
//! its URI and headers the way the proxy builds them, against the in-process AS double:
//! a refused redirect must reach neither the AS nor the browser.

mod common;

use std::sync::Arc;

use common::{settings_yaml, AsDouble};
use jsonwebtoken::Algorithm;
use par_sidecar::front::login_guard::RedirectContext;
use par_sidecar::front::login_start::{decide_for, RedirectDecision};
use par_sidecar::sidecar::Sidecar;

async fn state_with(double: &Double, extra: &str) -> Arc<Sidecar> {
    state_with_client(double, "", extra).await
}

/// `client_extra`: lines added to the `client` block.
async fn state_with_client(double: &Double, client_extra: &str, extra: &str) -> Arc<Sidecar> {
    let pki = &double.pki;
    let yaml = settings_yaml(pki, &double.issuer, "sign-es256.pem", "ES256", "private_key_jwt", extra).replace(
        "  auth_method: private_key_jwt\n",
        &format!("  auth_method: private_key_jwt\n{client_extra}"),
    );
    common::loaded_state(&yaml, &pki.join("sidecar.yaml")).await
}

/// The AS double and the PKI it and the sidecar share.
struct Double {
    pki: std::path::PathBuf,
    double: AsDouble,
}

impl std::ops::Deref for Double {
    type Target = AsDouble;
    fn deref(&self) -> &AsDouble {
        &self.double
    }
}

async fn double() -> Double {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    Double { pki, double }
}

/// The app's authorize redirect with `extra` parameters and the given redirect_uri.
fn authorize(issuer: &str, redirect_uri: &str, extra: &str) -> String {
    let ru: String = url::form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect();
    format!(
        "{issuer}/authorize?response_type=code&client_id=legacy-app&redirect_uri={ru}&scope=openid+payments\
         &state=st-1&nonce=n-1&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8&code_challenge_method=S256{extra}"
    )
}

const PAYMENT: &str = "&authorization_details=%5B%7B%22type%22%3A%22payment%22%2C%22creditor%22%3A%22ATTACKER-IBAN%22%2C%22amount%22%3A%229999.00%22%7D%5D";

/// Runs the decision for `location` as the answer to `GET {target}` with `headers`.
async fn answer(state: &Arc<Sidecar>, target: &str, headers: &[(&str, &str)], location: &str) -> RedirectDecision {
    let uri: http::Uri = target.parse().unwrap();
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let trust = state.settings.client_address_header.is_some();
    let cx = RedirectContext::from_request(&uri, &h, trust);
    decide_for(&state.front, location.as_bytes(), &cx, None).await
}

fn refused_with(d: RedirectDecision, code: &str) {
    match d {
        RedirectDecision::Fail(e) => assert_eq!(e.code.as_str(), code),
        other => panic!("expected {code}, got {other:?}"),
    }
}

fn assert_counted(state: &Sidecar, code: &str, n: u32) {
    let m = String::from_utf8(state.metrics.render()).unwrap();
    let sample = format!("par_sidecar_errors_total{{code=\"{code}\"}} {n}");
    assert!(m.contains(&sample), "{sample} not in:\n{m}");
}

const HOST: [(&str, &str); 1] = [("host", "app.example")];

#[tokio::test]
async fn a_reflected_next_open_redirect_is_refused_and_nothing_is_pushed() {
    let double = double().await;
    let state = state_with(&double, "").await;
    let attack = authorize(
        &double.issuer,
        "https://app.example/cb",
        &format!("{PAYMENT}&login_hint=victim%40bank"),
    );
    let next: String = url::form_urlencoded::byte_serialize(attack.as_bytes()).collect();
    // The app's `/redirect?next=` sends the browser wherever `next` says.
    let d = answer(&state, &format!("/redirect?next={next}"), &HOST, &attack).await;
    refused_with(d, "open_redirect");
    // Twice encoded (`returnUrl` passed through another page), and raw.
    let twice: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    refused_with(
        answer(&state, &format!("/sso?returnUrl={twice}"), &HOST, &attack).await,
        "open_redirect",
    );
    assert!(double.seen().is_empty(), "no PAR: {:?}", double.seen());
    assert_counted(&state, "open_redirect", 2);
}

#[tokio::test]
async fn a_foreign_redirect_uri_is_refused_and_nothing_is_pushed() {
    let double = double().await;
    let state = state_with(&double, "").await;
    // Not reflected (the app built it), but the callback would land where this sidecar
    // never sees it: the code would never be checked.
    let loc = authorize(&double.issuer, "https://evil.example/cb", "");
    refused_with(answer(&state, "/login", &HOST, &loc).await, "redirect_uri_foreign");
    // Another port of the same host is another origin.
    let loc = authorize(&double.issuer, "https://app.example:8443/cb", "");
    refused_with(answer(&state, "/login", &HOST, &loc).await, "redirect_uri_foreign");
    // A forged X-Forwarded-Host counts only behind a configured ingress.
    let loc = authorize(&double.issuer, "https://evil.example/cb", "");
    let forged = [("host", "app.example"), ("x-forwarded-host", "evil.example")];
    refused_with(answer(&state, "/login", &forged, &loc).await, "redirect_uri_foreign");
    assert!(double.seen().is_empty(), "no PAR: {:?}", double.seen());
    assert_counted(&state, "redirect_uri_foreign", 3);
}

#[tokio::test]
async fn the_apps_own_login_route_with_authorization_details_is_pushed() {
    let double = double().await;
    // Today's config shape, callback paths configured: nothing new to set.
    let state = state_with(&double, "callback: { paths: [\"/cb\"] }").await;
    let loc = authorize(&double.issuer, "https://app.example/cb", PAYMENT);
    // The UAE consent flow: the app's own route builds the payment from its own data.
    let d = answer(&state, "/pay/start?order=42", &HOST, &loc).await;
    let RedirectDecision::Rewrite { location, .. } = d else {
        panic!("not pushed: {d:?}")
    };
    assert!(location.contains("request_uri="), "{location}");
    let seen = double.seen();
    assert_eq!(seen.len(), 1);
    let ro = &seen[0].request_claims;
    assert_eq!(ro["authorization_details"][0]["creditor"], "ATTACKER-IBAN");
    assert_eq!(ro["redirect_uri"], "https://app.example/cb");
    // The same redirect_uri on a path that is not a configured callback: refused.
    let loc = authorize(&double.issuer, "https://app.example/elsewhere", "");
    refused_with(answer(&state, "/login", &HOST, &loc).await, "redirect_uri_foreign");
}

#[tokio::test]
async fn behind_a_trusted_ingress_its_forwarded_host_and_proto_are_the_origin() {
    let double = double().await;
    let state = state_with(&double, "limits: { client_address_header: x-forwarded-for }").await;
    let loc = authorize(&double.issuer, "https://app.example/cb", "");
    let ingress = [
        ("host", "app-svc.default.svc:8080"),
        ("x-forwarded-host", "app.example"),
        ("x-forwarded-proto", "https"),
    ];
    assert!(matches!(
        answer(&state, "/login", &ingress, &loc).await,
        RedirectDecision::Rewrite { .. }
    ));
    let plain = [("host", "app.example"), ("x-forwarded-proto", "http")];
    refused_with(answer(&state, "/login", &plain, &loc).await, "redirect_uri_foreign");
}

#[tokio::test]
async fn stricter_config_login_paths_origins_and_parameter_allowlist() {
    let double = double().await;
    let state = state_with_client(
        &double,
        "  allowed_authorize_parameters: [authorization_details]\n",
        "par:\n  login_paths: [/login]\n  redirect_uri_origins: [\"https://app.example\"]\n",
    )
    .await;
    let loc = authorize(&double.issuer, "https://app.example/cb", PAYMENT);
    // An internal Host (no X-Forwarded-Host): the configured origin decides.
    let internal = [("host", "app-svc:3000")];
    assert!(matches!(
        answer(&state, "/login", &internal, &loc).await,
        RedirectDecision::Rewrite { .. }
    ));
    refused_with(
        answer(&state, "/redirect", &internal, &loc).await,
        "login_path_not_allowed",
    );
    let loc = authorize(&double.issuer, "https://app.example/cb", "&prompt=none");
    refused_with(
        answer(&state, "/login", &internal, &loc).await,
        "authorize_parameter_not_allowed",
    );
    assert_eq!(double.seen().len(), 1);
    assert_counted(&state, "login_path_not_allowed", 1);
}
