//! Issue 18 item 3 (M3): a flood of login starts from one address leaves another address's
//! login start working, against a real-TLS AS double. Addresses come from the peer or from a
//! trusted `client_address_header`, derived the way the proxy derives them.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{settings_yaml, AsDouble};
use jsonwebtoken::Algorithm;
use par_sidecar::front::login_guard::RedirectContext;
use par_sidecar::front::login_limit::client_ip;
use par_sidecar::front::login_start::{decide_for, RedirectDecision};
use par_sidecar::sidecar::Sidecar;

fn app_redirect(issuer: &str) -> String {
    format!(
        "{issuer}/authorize?response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
         &scope=openid&state=st-1&nonce=n-1"
    )
}

async fn sidecar(per_second: u32) -> (AsDouble, Arc<Sidecar>) {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let extra = format!("limits: {{ login_starts_per_second: {per_second} }}");
    let yaml = settings_yaml(
        &pki,
        &double.issuer,
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        &extra,
    );
    let state = common::loaded_state(&yaml, &pki.join("sidecar.yaml")).await;
    (double, state)
}

/// 16 tasks flood login starts from `flooder` while `user` starts a login every 250 ms;
/// returns how many of the user's 6 login starts were pushed, and the flood's counts.
async fn flood_while_user_logs_in(
    state: &Arc<Sidecar>,
    issuer: &str,
    flooder: IpAddr,
    user: IpAddr,
) -> (u32, u32, u32) {
    let stop = Arc::new(AtomicBool::new(false));
    let (pushed, refused) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (state, stop, pushed, refused) = (state.clone(), stop.clone(), pushed.clone(), refused.clone());
        let loc = app_redirect(issuer);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match decide_for(
                    &state.front,
                    loc.as_bytes(),
                    &RedirectContext::app_login(),
                    Some(flooder),
                )
                .await
                {
                    RedirectDecision::Rewrite { .. } => pushed.fetch_add(1, Ordering::Relaxed),
                    RedirectDecision::Fail(e) => {
                        assert_eq!(e.code.as_str(), "too_many_logins");
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    RedirectDecision::PassThrough => panic!("never forwarded unpushed"),
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    // Let the flood drain the burst first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ok = 0;
    for _ in 0..6 {
        match decide_for(
            &state.front,
            app_redirect(issuer).as_bytes(),
            &RedirectContext::app_login(),
            Some(user),
        )
        .await
        {
            RedirectDecision::Rewrite { location, .. } => {
                assert!(location.contains("request_uri="), "{location}");
                ok += 1;
            }
            RedirectDecision::Fail(e) => assert_eq!(e.code.as_str(), "too_many_logins"),
            RedirectDecision::PassThrough => panic!("never forwarded unpushed"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (ok, pushed.load(Ordering::Relaxed), refused.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_peer_address_leaves_another_addresss_login_working() {
    let (double, state) = sidecar(10).await;
    let (flooder, user): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let (ok, pushed, refused) = flood_while_user_logs_in(&state, &double.issuer, flooder, user).await;
    assert_eq!(ok, 6, "every login start of the other address was pushed");
    assert!(refused > 100, "the flood was refused: {refused}");
    // The flood got at most the burst and the rate (~2 s), minus what the user took.
    assert!(pushed <= 20 + 10 * 3, "{pushed}");
    assert_eq!(
        double.seen().len() as u32,
        pushed + ok,
        "one PAR per pushed login, none for refused ones"
    );
    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert!(
        m.contains(r#"par_sidecar_login_rate_limited_total{as="default",scope="fair_share"}"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_ingress_the_forwarded_address_and_ipv6_slash_64_count() {
    let (double, state) = sidecar(10).await;
    // Every request comes from the ingress; the header's rightmost entry names the client.
    // IPv6 counts by /64: a neighbour in the same /48 is another subscriber.
    let ingress: IpAddr = "10.0.0.5".parse().unwrap();
    let flooder = client_ip(Some(ingress), Some(b"198.51.100.1, 2001:db8:aa:bb::17")).unwrap();
    let user = client_ip(Some(ingress), Some(b"2001:db8:aa:cc::1")).unwrap();
    assert_ne!(flooder, ingress);
    let (ok, _, refused) = flood_while_user_logs_in(&state, &double.issuer, flooder, user).await;
    assert_eq!(ok, 6, "every login start of the other address was pushed");
    assert!(refused > 100, "{refused}");
}
