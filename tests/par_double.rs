//! The PAR flow against an in-process HTTPS AS double: real TLS with client-certificate
//! verification, real signatures verified with openssl-derived public keys.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{settings_yaml, AsDouble, Fault};
use jsonwebtoken::Algorithm;
use par_sidecar::config::Settings;
use par_sidecar::front::login_start::{decide, RedirectDecision};
use par_sidecar::sidecar::Sidecar;

async fn state_for(pki: &Path, double: &AsDouble, key: &str, alg: &str, auth: &str, extra: &str) -> Arc<Sidecar> {
    let yaml = settings_yaml(pki, &double.issuer, key, alg, auth, extra);
    common::loaded_state(&yaml, &pki.join("sidecar.yaml")).await
}

/// Asserts that a Prometheus sample line is in a scrape.
fn assert_sample(scrape: &str, sample: &str) {
    assert!(scrape.contains(sample), "{sample} not in:\n{scrape}");
}

fn app_redirect(issuer: &str) -> String {
    format!(
        "{issuer}/authorize?response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
         &scope=openid&state=st-1&nonce=n-1&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8&code_challenge_method=S256\
         &claims=%7B%22id_token%22%3A%7B%22acr%22%3Anull%7D%7D"
    )
}

#[tokio::test]
async fn par_is_signed_authenticated_and_sent_over_mtls_for_every_alg() {
    let pki = common::pki();
    for (file, alg, jalg) in [
        ("sign-ps256.pem", "PS256", Algorithm::PS256),
        ("sign-es256.pem", "ES256", Algorithm::ES256),
        ("sign-eddsa.pem", "EdDSA", Algorithm::EdDSA),
    ] {
        let double = AsDouble::start(&pki, &pki.join(file), jalg).await;
        let state = state_for(&pki, &double, file, alg, "private_key_jwt", "").await;
        let md = state.first_as().discovery.get().unwrap();
        assert!(
            md.par_endpoint.as_str().starts_with("https://localhost:"),
            "PAR endpoint comes from discovery, on another host"
        );

        let RedirectDecision::Rewrite {
            location,
            interaction_id,
            set_cookie,
        } = decide(&state.front, app_redirect(&double.issuer).as_bytes()).await
        else {
            panic!("{alg}: not rewritten; AS saw {:?}", double.seen());
        };
        assert_eq!(
            location,
            format!(
                "{}/authorize?client_id=legacy-app&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Adouble-1",
                double.issuer
            )
        );
        let cookie = set_cookie.expect("browser-binding cookie");
        // cookie_secure defaults to true: a `__Host-` cookie (Secure, Path=/, no Domain).
        assert!(
            cookie.starts_with("__Host-par_sidecar_tx_")
                && cookie.contains("HttpOnly")
                && cookie.contains("; Secure")
                && cookie.contains("; Path=/;")
                && !cookie.to_ascii_lowercase().contains("domain"),
            "{cookie}"
        );
        let seen = double.seen();
        assert_eq!(seen.len(), 1);
        let p = &seen[0];
        assert!(p.verify_error.is_none(), "{alg}: {:?}", p.verify_error);
        assert!(p.client_cert_present);
        assert_eq!(p.interaction_id.as_deref(), Some(interaction_id.to_string().as_str()));
        // Only client_id, request and client authentication outside the object.
        let mut keys: Vec<_> = p.form.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["client_assertion", "client_assertion_type", "client_id", "request"]
        );
        assert_eq!(
            p.form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );

        let ro = &p.request_claims;
        assert_eq!(ro["aud"], double.issuer.as_str());
        assert_eq!(ro["iss"], "legacy-app");
        assert_eq!(ro["client_id"], "legacy-app");
        // The app's state travels sealed inside the sidecar's state.
        let sealed = ro["state"].as_str().unwrap();
        let tx = state
            .front
            .sealer
            .open(sealed, par_sidecar::as_client::request_object::now_secs(), 600)
            .unwrap();
        assert_eq!(tx.app_state.as_deref(), Some("st-1"));
        assert_eq!(tx.verifier, None, "the app sent S256: nothing injected");
        assert_eq!(ro["code_challenge_method"], "S256");
        assert_eq!(ro["redirect_uri"], "https://app.example/cb");
        assert!(ro["claims"]["id_token"].is_object(), "claims is JSON inside the object");
        assert!(ro.get("sub").is_none());
        assert_eq!(ro["exp"].as_u64().unwrap() - ro["nbf"].as_u64().unwrap(), 300);
        assert!(ro["jti"].is_string());

        let a = p.assertion_claims.as_ref().unwrap();
        assert_eq!(a["iss"], "legacy-app");
        assert_eq!(a["sub"], "legacy-app");
        assert!(a["aud"].is_string(), "aud is a single string");
        assert_eq!(a["aud"], double.issuer.as_str());
        assert!(a["exp"].as_u64().unwrap() - a["iat"].as_u64().unwrap() <= 300);
        assert_ne!(a["jti"], ro["jti"]);
    }
}

#[tokio::test]
async fn tls_client_auth_sends_no_assertion() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_for(&pki, &double, "sign-es256.pem", "ES256", "tls_client_auth", "").await;
    assert!(matches!(
        decide(&state.front, app_redirect(&double.issuer).as_bytes()).await,
        RedirectDecision::Rewrite { .. }
    ));
    let p = &double.seen()[0];
    assert!(p.client_cert_present);
    assert!(!p.form.contains_key("client_assertion"));
    assert!(!p.form.contains_key("client_secret"));
}

#[tokio::test]
async fn as_faults_fail_closed_with_a_code_and_the_next_login_works() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_for(&pki, &double, "sign-es256.pem", "ES256", "private_key_jwt", "").await;
    let loc = app_redirect(&double.issuer);
    let cases = [
        (Fault::Status(500, "<html>boom</html>"), "as_server_error"),
        (
            Fault::Status(503, r#"{"error":"temporarily_unavailable"}"#),
            "as_server_error",
        ),
        (Fault::Status(429, "slow down"), "as_rate_limited"),
        (
            Fault::Status(401, r#"{"error":"invalid_client","error_description":"jti reused"}"#),
            "par_rejected",
        ),
        (
            Fault::Status(400, r#"{"error":"invalid_request_object"}"#),
            "par_rejected",
        ),
        (Fault::Status(400, "<html>400</html>"), "as_bad_response"),
        (Fault::Status(201, r#"{"expires_in":60}"#), "as_bad_response"),
        (Fault::Status(201, "not json"), "as_bad_response"),
        (Fault::Delay(Duration::from_secs(3)), "as_timeout"),
        (Fault::Redirect, "as_bad_response"),
        (Fault::Huge, "as_bad_response"),
    ];
    for (fault, code) in cases {
        double.set_fault(fault.clone());
        match decide(&state.front, loc.as_bytes()).await {
            RedirectDecision::Fail(e) => {
                assert_eq!(e.code, code, "{fault:?}");
                assert_eq!(e.status, 502);
            }
            other => panic!("{fault:?}: expected failure, got {other:?}"),
        }
        double.set_fault(Fault::None);
        assert!(
            matches!(
                decide(&state.front, loc.as_bytes()).await,
                RedirectDecision::Rewrite { .. }
            ),
            "{fault:?}: the next login must succeed"
        );
    }
    // Retries: transient 5xx/429 are retried within the deadline, each with a fresh assertion.
    for flaky in [Fault::Flaky(2, 503, "busy"), Fault::Flaky(1, 429, "later")] {
        double.attempts.lock().unwrap().clear();
        double.set_fault(flaky.clone());
        assert!(
            matches!(
                decide(&state.front, loc.as_bytes()).await,
                RedirectDecision::Rewrite { .. }
            ),
            "{flaky:?}"
        );
        let jtis: Vec<String> = double
            .attempts
            .lock()
            .unwrap()
            .iter()
            .map(|f| f["client_assertion"].split('.').nth(1).unwrap().to_string())
            .collect();
        assert!(jtis.len() >= 2);
        let unique: std::collections::HashSet<_> = jtis.iter().collect();
        assert_eq!(unique.len(), jtis.len(), "every attempt carries a new assertion");
    }
    // A 4xx is never retried.
    double.attempts.lock().unwrap().clear();
    double.set_fault(Fault::Status(400, r#"{"error":"invalid_request"}"#));
    assert!(matches!(
        decide(&state.front, loc.as_bytes()).await,
        RedirectDecision::Fail(_)
    ));
    assert_eq!(double.attempts.lock().unwrap().len(), 1);
    double.set_fault(Fault::None);

    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert_sample(
        &m,
        r#"par_sidecar_par_retries_total{as="default",reason="as_server_error"}"#,
    );
    assert_sample(
        &m,
        r#"par_sidecar_par_requests_total{as="default",as_error="invalid_client",outcome="par_rejected"} 1"#,
    );
    assert_sample(
        &m,
        r#"par_sidecar_par_requests_total{as="default",as_error="",outcome="as_timeout"} 1"#,
    );
}

/// An AS's `Retry-After` is input: 2^64-1 seconds (or more digits) must not overflow the
/// deadline arithmetic (a panic in the login start); it is capped at the deadline, so the
/// login fails `as_rate_limited` after one attempt. A short one is waited for and retried.
#[tokio::test]
async fn retry_after_is_honoured_within_the_deadline_and_never_overflows() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_for(&pki, &double, "sign-es256.pem", "ES256", "private_key_jwt", "").await;
    let loc = app_redirect(&double.issuer);
    for huge in ["18446744073709551615", "99999999999999999999999999999"] {
        double.attempts.lock().unwrap().clear();
        double.set_fault(Fault::RetryAfter(1, huge));
        let started = std::time::Instant::now();
        match decide(&state.front, loc.as_bytes()).await {
            RedirectDecision::Fail(e) => assert_eq!((e.code.as_str(), e.status), ("as_rate_limited", 502), "{huge}"),
            other => panic!("{huge}: expected as_rate_limited, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "not waited for");
        assert_eq!(
            double.attempts.lock().unwrap().len(),
            1,
            "{huge}: no retry past the deadline"
        );
        double.set_fault(Fault::None);
        assert!(matches!(
            decide(&state.front, loc.as_bytes()).await,
            RedirectDecision::Rewrite { .. }
        ));
    }
    // `Retry-After: 1` fits the 1500 ms deadline: waited for, then retried and pushed.
    double.attempts.lock().unwrap().clear();
    double.set_fault(Fault::RetryAfter(1, "1"));
    let started = std::time::Instant::now();
    assert!(matches!(
        decide(&state.front, loc.as_bytes()).await,
        RedirectDecision::Rewrite { .. }
    ));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(double.attempts.lock().unwrap().len(), 2);
    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert_sample(
        &m,
        r#"par_sidecar_par_requests_total{as="default",as_error="",outcome="as_rate_limited"} 2"#,
    );
    assert!(!m.contains(r#"code="internal""#), "no contained panic: {m}");
}

#[tokio::test]
async fn unreachable_as_and_bad_certificates_fail_closed() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let good = state_for(&pki, &double, "sign-es256.pem", "ES256", "private_key_jwt", "").await;
    let md = good.first_as().discovery.get().unwrap();
    let loc = app_redirect(&double.issuer);

    // Connection refused: PAR endpoint on a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dead = (*md).clone();
    dead.par_endpoint = format!("https://127.0.0.1:{closed}/par").parse().unwrap();
    good.registry.set_metadata(good.first_as(), dead);
    let RedirectDecision::Fail(e) = decide(&good.front, loc.as_bytes()).await else {
        panic!()
    };
    assert_eq!(e.code, "as_unavailable");

    // A client certificate from another CA: the AS refuses the handshake.
    let yaml = settings_yaml(&pki, &double.issuer, "sign-es256.pem", "ES256", "private_key_jwt", "")
        .replace("transport.crt", "rogue.crt")
        .replace("transport.key", "rogue.key");
    let rogue = Sidecar::load(Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    rogue.registry.set_metadata(rogue.first_as(), (*md).clone());
    let RedirectDecision::Fail(e) = decide(&rogue.front, loc.as_bytes()).await else {
        panic!()
    };
    assert!(
        matches!(e.code.as_str(), "as_tls_failure" | "as_unavailable"),
        "{}",
        e.code
    );

    // The AS's server certificate does not chain to the configured CA.
    let yaml = settings_yaml(&pki, &double.issuer, "sign-es256.pem", "ES256", "private_key_jwt", "")
        .replace("ca.crt", "rogue-ca.crt");
    let untrusting = Sidecar::load(Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    untrusting.registry.set_metadata(untrusting.first_as(), (*md).clone());
    let RedirectDecision::Fail(e) = decide(&untrusting.front, loc.as_bytes()).await else {
        panic!()
    };
    assert_eq!(e.code, "as_tls_failure");
    assert!(double.seen().is_empty(), "no PAR reached the AS");

    // An AS certificate for another host name, or expired (both chain to the right CA): refused.
    for cert in ["as-wronghost", "as-expired"] {
        let wrong = AsDouble::start_with_server_cert(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256, cert).await;
        let mut md_wrong = (*md).clone();
        md_wrong.par_endpoint = format!("https://127.0.0.1:{}/par", wrong.addr.port()).parse().unwrap();
        good.registry.set_metadata(good.first_as(), md_wrong);
        let RedirectDecision::Fail(e) = decide(&good.front, loc.as_bytes()).await else {
            panic!()
        };
        assert_eq!(e.code, "as_tls_failure", "{cert}");
        assert!(wrong.seen().is_empty());
    }
    let m = String::from_utf8(good.metrics.render()).unwrap();
    assert_sample(
        &m,
        r#"par_sidecar_par_requests_total{as="default",as_error="",outcome="as_tls_failure"} 2"#,
    );
    assert_sample(
        &m,
        r#"par_sidecar_par_requests_total{as="default",as_error="",outcome="as_unavailable"} 1"#,
    );
}

#[tokio::test]
async fn discovery_rejects_an_issuer_mismatch() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let yaml = settings_yaml(
        &pki,
        &format!("{}/", double.issuer),
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        "",
    )
    .replace(
        "ca_file:",
        &format!(
            "discovery_url: \"{}/.well-known/openid-configuration\"\n  ca_file:",
            double.issuer
        ),
    );
    let state = Sidecar::load(Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    let http = state.first_as().http.load();
    let err = par_sidecar::as_client::discovery::fetch(http.as_ref().as_ref(), &state.first_as().settings)
        .await
        .unwrap_err();
    assert_eq!(err.label(), "issuer_mismatch", "a trailing slash counts (DISC-2)");
    // Not ready, so nothing is rewritten and redirects naming the AS are held back.
    let RedirectDecision::Fail(e) = decide(&state.front, app_redirect(&double.issuer).as_bytes()).await else {
        panic!()
    };
    assert_eq!(e.code, "not_ready");
    assert!(matches!(
        decide(&state.front, b"/elsewhere").await,
        RedirectDecision::PassThrough
    ));
}

#[tokio::test]
async fn callback_restores_state_keeps_redirect_uri_query_and_refuses_replay() {
    use par_sidecar::front::callback::{check, CallbackOutcome};
    use par_sidecar::front::sealed_state::TransactionState;
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_for(
        &pki,
        &double,
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        "callback: { paths: [\"/cb\"] }",
    )
    .await;
    let sealed = state.front.sealer.seal(&TransactionState {
        app_state: Some("app state/ü".into()),
        verifier: Some("v".repeat(43).into()),
        redirect_uri: Some("https://app.example/cb?tenant=x".into()),
        issued_at: par_sidecar::as_client::request_object::now_secs(),
        nonce: "nonce-1".into(),
        jarm: false,
        binding: None,
        as_name: None,
        oidc_nonce: None,
        max_age: None,
        claim_values: None,
        form_post: false,
    });
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let q = format!("tenant=x&code=abc&state={}&iss={}", enc(&sealed), enc(&double.issuer));
    let CallbackOutcome::Forward { query, .. } = check(&state.front, "/cb", Some(&q), &[]).await else {
        panic!("not forwarded")
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("tenant"), Some("x"), "the redirect_uri's own parameter survives");
    assert_eq!(get("code"), Some("abc"));
    assert_eq!(get("state"), Some("app state/ü"), "the app's own state is restored");
    assert_eq!(
        state.codes.take(&"abc".to_string()).unwrap().verifier,
        Some("v".repeat(43).into())
    );
    let CallbackOutcome::Reject { code, .. } = check(&state.front, "/cb", Some(&q), &[]).await else {
        panic!()
    };
    assert_eq!(code, "callback_replayed");
    // Unrelated paths are never touched.
    assert!(matches!(
        check(&state.front, "/other", Some("code=1&state=2"), &[]).await,
        CallbackOutcome::NotCallback
    ));
}

#[tokio::test]
async fn form_post_is_pushed_as_the_query_mode_and_jarm_modes_need_jarm() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_for(&pki, &double, "sign-es256.pem", "ES256", "private_key_jwt", "").await;
    // form_post: the AS answers in the query (checked at the callback); the app gets a POST.
    let loc = format!("{}&response_mode=form_post", app_redirect(&double.issuer));
    let RedirectDecision::Rewrite { .. } = decide(&state.front, loc.as_bytes()).await else {
        panic!("form_post must be pushed")
    };
    let p = &double.seen()[0];
    assert!(p.request_claims.get("response_mode").is_none(), "{}", p.request_claims);
    assert!(!p.form.contains_key("response_mode"));
    let sealed = p.request_claims["state"].as_str().unwrap().to_string();
    let tx = state
        .front
        .sealer
        .open(&sealed, par_sidecar::as_client::request_object::now_secs(), 600)
        .unwrap();
    assert!(tx.form_post, "the callback must know to deliver a POST");
    // The app asking for JARM itself at an AS not configured for it: the callback would not
    // treat `response` as JARM there, so it is refused here rather than lost there.
    for mode in ["jwt", "query.jwt", "form_post.jwt"] {
        let loc = format!("{}&response_mode={mode}", app_redirect(&double.issuer));
        let RedirectDecision::Fail(e) = decide(&state.front, loc.as_bytes()).await else {
            panic!("{mode}")
        };
        assert_eq!(e.code, "unsupported_response_mode");
    }
    assert_eq!(double.seen().len(), 1, "nothing else was pushed");
}

#[tokio::test]
async fn par_without_jar_sends_form_parameters_when_configured() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_for(
        &pki,
        &double,
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        "par: { request_object: false }",
    )
    .await;
    assert!(matches!(
        decide(&state.front, app_redirect(&double.issuer).as_bytes()).await,
        RedirectDecision::Rewrite { .. }
    ));
    let p = &double.seen()[0];
    assert!(p.verify_error.is_none(), "{:?}", p.verify_error);
    assert!(!p.form.contains_key("request"));
    assert_eq!(p.form["response_type"], "code");
    assert_eq!(p.form["redirect_uri"], "https://app.example/cb");
    assert!(p.form["state"].starts_with("ps1."));
    assert_eq!(p.form["code_challenge_method"], "S256");
    let claims: serde_json::Value = serde_json::from_str(&p.form["claims"]).unwrap();
    assert!(
        claims["id_token"].is_object(),
        "JSON parameters serialised as JSON text"
    );
    assert!(
        p.assertion_claims.is_some(),
        "still authenticated with a verified assertion"
    );
}

/// Client-assertion pool (issue 12): logins after the first use pre-signed assertions that
/// the AS verifies like inline ones, each `jti` once; a key reload discards the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_assertions_are_verified_used_once_and_dropped_on_key_reload() {
    let pki = common::pki();
    for (file, alg, jalg) in [
        ("sign-ps256.pem", "PS256", Algorithm::PS256),
        ("sign-es256.pem", "ES256", Algorithm::ES256),
    ] {
        let double = AsDouble::start(&pki, &pki.join(file), jalg).await;
        let yaml = settings_yaml(&pki, &double.issuer, file, alg, "private_key_jwt", "").replace(
            "  auth_method: private_key_jwt\n",
            "  auth_method: private_key_jwt\n  assertion_pool: 3\n",
        );
        let state = common::loaded_state(&yaml, &pki.join("sidecar.yaml")).await;
        let client = state.first_as().clone();
        let pool_full = || async {
            for _ in 0..400 {
                if client.assertions.len() == 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("{alg}: the pool was not refilled in the background");
        };
        for _ in 0..6 {
            assert!(matches!(
                decide(&state.front, app_redirect(&double.issuer).as_bytes()).await,
                RedirectDecision::Rewrite { .. }
            ));
            pool_full().await;
        }
        // A reload makes new key objects: the pooled assertions are not sent.
        let keys = par_sidecar::as_client::keys::KeySet::load(&client.settings.client).unwrap();
        client.keys.store(Arc::new(keys));
        assert!(matches!(
            decide(&state.front, app_redirect(&double.issuer).as_bytes()).await,
            RedirectDecision::Rewrite { .. }
        ));
        let seen = double.seen();
        assert_eq!(seen.len(), 7);
        let mut jtis = std::collections::HashSet::new();
        for p in &seen {
            assert!(p.verify_error.is_none(), "{alg}: {:?}", p.verify_error);
            let a = p.assertion_claims.as_ref().expect("assertion");
            assert!(
                jtis.insert(a["jti"].as_str().unwrap().to_string()),
                "{alg}: jti sent twice"
            );
            assert_eq!(a["exp"].as_u64().unwrap() - a["iat"].as_u64().unwrap(), 60);
        }
        let m = String::from_utf8(state.metrics.render()).unwrap();
        // 1st login inline (empty pool), 2nd-6th pooled, the one after the reload inline.
        assert_sample(
            &m,
            r#"par_sidecar_client_assertions_total{as="default",source="pooled"} 5"#,
        );
        assert_sample(
            &m,
            r#"par_sidecar_client_assertions_total{as="default",source="inline"} 2"#,
        );
        assert_sample(
            &m,
            r#"par_sidecar_assertion_pool_discarded_total{as="default",reason="rotated"} 3"#,
        );
    }
}
