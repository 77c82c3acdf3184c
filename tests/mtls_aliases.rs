//! RFC 8705 §5 endpoint aliases against the in-process AS double: with `par_endpoint: auto`
//! every back-channel call, PAR included, goes to the `mtls_endpoint_aliases` URL when the
//! AS lists one, whatever the client authentication; `top_level` keeps PAR on the top-level
//! URL (the pre-issue-20 private_key_jwt behaviour).

mod common;

use common::{settings_yaml, AsDouble};
use jsonwebtoken::Algorithm;
use par_sidecar::front::login_start::{decide, RedirectDecision};

fn app_redirect(issuer: &str) -> String {
    format!(
        "{issuer}/authorize?response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
         &scope=openid&state=st-1&nonce=n-1&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8&code_challenge_method=S256"
    )
}

/// Lists aliases on `/mtls/...` (the double serves them like the top-level paths).
fn list_aliases(double: &AsDouble) {
    let base = format!("https://localhost:{}", double.addr.port());
    let mut o = double.metadata_overrides.lock().unwrap();
    o.insert("revocation_endpoint".into(), format!("{}/revoke", double.issuer).into());
    o.insert(
        "mtls_endpoint_aliases".into(),
        serde_json::json!({
            "pushed_authorization_request_endpoint": format!("{base}/mtls/par"),
            "token_endpoint": format!("{base}/mtls/token"),
            "revocation_endpoint": format!("{base}/mtls/revoke"),
        }),
    );
}

async fn login_start(double: &AsDouble, yaml: &str) -> (std::sync::Arc<par_sidecar::sidecar::Sidecar>, String) {
    let pki = common::pki();
    let state = common::loaded_state(yaml, &pki.join("sidecar.yaml")).await;
    let RedirectDecision::Rewrite { .. } = decide(&state.front, app_redirect(&double.issuer).as_bytes()).await else {
        panic!("not rewritten; AS saw {:?}", double.calls());
    };
    let ready = par_sidecar::ops::admin::route(&state, &http::Method::GET, "/readyz");
    (state, String::from_utf8(ready.into_body()).unwrap())
}

#[tokio::test]
async fn auto_sends_the_private_key_jwt_par_and_every_other_call_to_the_aliases() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-ps256.pem"), Algorithm::PS256).await;
    list_aliases(&double);
    let yaml = settings_yaml(&pki, &double.issuer, "sign-ps256.pem", "PS256", "private_key_jwt", "");
    let (state, ready) = login_start(&double, &yaml).await;

    assert_eq!(
        double.calls(),
        vec!["POST /mtls/par".to_string()],
        "PAR went to the alias"
    );
    let seen = double.seen();
    assert!(seen[0].client_cert_present);
    assert!(seen[0].verify_error.is_none(), "{:?}", seen[0].verify_error);

    let md = state.first_as().discovery.get().unwrap();
    assert!(md.par_endpoint.path().starts_with("/mtls/"), "{}", md.par_endpoint);
    assert_eq!(md.token_endpoint.as_ref().unwrap().path(), "/mtls/token");
    assert_eq!(md.revocation_endpoint.as_ref().unwrap().path(), "/mtls/revoke");
    // /readyz shows the URL of every call and where it came from.
    let port = double.addr.port();
    for line in [
        format!("par: https://localhost:{port}/mtls/par (mtls alias)"),
        format!("token: https://localhost:{port}/mtls/token (mtls alias)"),
        format!("revocation: https://localhost:{port}/mtls/revoke (mtls alias)"),
    ] {
        assert!(ready.contains(&line), "{line} not in:\n{ready}");
    }
}

#[tokio::test]
async fn top_level_keeps_par_on_the_top_level_url_and_the_token_calls_on_the_aliases() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-ps256.pem"), Algorithm::PS256).await;
    list_aliases(&double);
    let yaml = settings_yaml(&pki, &double.issuer, "sign-ps256.pem", "PS256", "private_key_jwt", "")
        .replace("  ca_file:", "  par_endpoint: top_level\n  ca_file:");
    let (state, ready) = login_start(&double, &yaml).await;

    assert_eq!(double.calls(), vec!["POST /par".to_string()]);
    let md = state.first_as().discovery.get().unwrap();
    assert_eq!(md.token_endpoint.as_ref().unwrap().path(), "/mtls/token");
    let port = double.addr.port();
    assert!(
        ready.contains(&format!("par: https://localhost:{port}/par (top level)")),
        "{ready}"
    );
}

#[tokio::test]
async fn without_aliases_every_call_uses_the_top_level_urls() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-ps256.pem"), Algorithm::PS256).await;
    let yaml = settings_yaml(&pki, &double.issuer, "sign-ps256.pem", "PS256", "tls_client_auth", "");
    let (state, ready) = login_start(&double, &yaml).await;
    assert_eq!(double.calls(), vec!["POST /par".to_string()]);
    let md = state.first_as().discovery.get().unwrap();
    assert!(md.endpoints.iter().all(|e| !e.via_alias), "{:?}", md.endpoints);
    assert!(
        ready.contains("(top level)") && !ready.contains("(mtls alias)"),
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_online_names_the_url_of_every_call() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-ps256.pem"), Algorithm::PS256).await;
    list_aliases(&double);
    // A separate (debug) process doing TLS to the double: generous timeouts on a busy machine.
    let yaml = settings_yaml(&pki, &double.issuer, "sign-ps256.pem", "PS256", "private_key_jwt", "").replace(
        "timeouts: { par_total_ms: 1500, connect_ms: 500 }",
        "timeouts: { par_total_ms: 5000, connect_ms: 5000, discovery_total_ms: 10000 }",
    );
    let config = pki.join(format!("check-{}.yaml", double.addr.port()));
    std::fs::write(&config, yaml).unwrap();
    // The double is served by this test's runtime: run the CLI off it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_par-sidecar"))
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = double.addr.port();
    for line in [
        format!("[default] endpoint:      par: https://localhost:{port}/mtls/par (mtls alias)"),
        format!("[default] endpoint:      token: https://localhost:{port}/mtls/token (mtls alias)"),
        format!("[default] endpoint:      revocation: https://localhost:{port}/mtls/revoke (mtls alias)"),
    ] {
        assert!(stdout.contains(&line), "{line} not in:\n{stdout}");
    }
}
