//! A login start's PAR deadline counts from the hand-over to the AS client runtime, so a
//! login queued behind a busy runtime fails closed in time instead of waiting on. Its own
//! test binary: it stalls the process-wide AS client runtime on purpose.

mod common;

use std::time::{Duration, Instant};

use common::{settings_yaml, AsDouble};
use jsonwebtoken::Algorithm;
use par_sidecar::as_client::as_runtime;
use par_sidecar::front::login_start::{decide, RedirectDecision};

#[tokio::test]
async fn time_queued_for_the_as_client_runtime_counts_against_par_total_ms() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    // par_total_ms is 1500 in these settings.
    let yaml = settings_yaml(&pki, &double.issuer, "sign-es256.pem", "ES256", "private_key_jwt", "");
    let state = common::loaded_state(&yaml, &pki.join("sidecar.yaml")).await;
    let loc = format!(
        "{}/authorize?response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
         &scope=openid&state=st-1&nonce=n-1&code_challenge=E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8&code_challenge_method=S256",
        double.issuer
    );
    assert!(matches!(
        decide(&state.front, loc.as_bytes()).await,
        RedirectDecision::Rewrite { .. }
    ));

    // Stall the runtime's one worker (tests run with one) for longer than par_total_ms.
    let stall = tokio::spawn(as_runtime::run(async {
        std::thread::sleep(Duration::from_millis(1_800))
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    match decide(&state.front, loc.as_bytes()).await {
        RedirectDecision::Fail(e) => assert_eq!(e.code, "as_timeout"),
        other => panic!("a login queued past its deadline must fail closed, got {other:?}"),
    }
    // Bounded by par_total_ms plus the one-second outer bound, not by the stall plus a PAR.
    assert!(t0.elapsed() < Duration::from_millis(2_600), "{:?}", t0.elapsed());
    stall.await.unwrap();

    // The runtime is free again: logins work.
    assert!(matches!(
        decide(&state.front, loc.as_bytes()).await,
        RedirectDecision::Rewrite { .. }
    ));
}
