//! Several ASs behind one sidecar, in process: two real-TLS AS doubles (same host, other
//! ports), per-AS PAR routing, the mix-up defence at the callback, code routing and
//! refusals at egress, and the configuration conflict that makes two ASs not ready.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::AsDouble;
use jsonwebtoken::Algorithm;
use par_sidecar::config::Settings;
use par_sidecar::egress;
use par_sidecar::front::callback::{self, CallbackOutcome};
use par_sidecar::front::login_start::{decide, RedirectDecision};
use par_sidecar::handoff::CodeRecord;
use par_sidecar::protocol::authorize::AuthorizeEndpoint;
use par_sidecar::protocol::AsIndex;
use par_sidecar::sidecar::Sidecar;

fn two_banks_yaml(pki: &Path, a: &str, b: &str, id_a: &str, id_b: &str) -> String {
    format!(
        r#"
listen: {{ public: "127.0.0.1:18080", admin: "127.0.0.1:19090" }}
upstream: "127.0.0.1:13000"
client:
  auth_method: private_key_jwt
  signing_key: {{ path: "{key}", alg: ES256 }}
  transport: {{ cert_path: "{cert}", key_path: "{tkey}" }}
authorization_servers:
  - {{ name: bank-a, issuer: "{a}", ca_file: "{ca}", client: {{ client_id: {id_a} }} }}
  - {{ name: bank-b, issuer: "{b}", ca_file: "{ca}", client: {{ client_id: {id_b} }} }}
callback: {{ cookie_secure: false }}
timeouts: {{ par_total_ms: 1500, connect_ms: 500 }}
"#,
        ca = pki.join("ca.crt").display(),
        key = pki.join("sign-es256.pem").display(),
        cert = pki.join("transport.crt").display(),
        tkey = pki.join("transport.key").display(),
    )
}

async fn two_banks(id_a: &str, id_b: &str) -> (AsDouble, AsDouble, Arc<Sidecar>) {
    let pki = common::pki();
    let a = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let b = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let yaml = two_banks_yaml(&pki, &a.issuer, &b.issuer, id_a, id_b);
    let state = common::loaded_state(&yaml, &pki.join("s.yaml")).await;
    (a, b, state)
}

fn login_at(issuer: &str, client_id: &str) -> String {
    format!(
        "{issuer}/authorize?response_type=code&client_id={client_id}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
         &scope=openid&state=app-state&nonce=n-1"
    )
}

/// The cookie pair a browser would send back from a Set-Cookie value.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn each_login_is_pushed_to_its_own_as_with_its_client() {
    let (a, b, state) = two_banks("tpp-a", "tpp-b").await;
    for (double, other, id) in [(&a, &b, "tpp-a"), (&b, &a, "tpp-b")] {
        let RedirectDecision::Rewrite { location, .. } =
            decide(&state.front, login_at(&double.issuer, id).as_bytes()).await
        else {
            panic!("not rewritten")
        };
        assert!(location.starts_with(&format!("{}/authorize?client_id={id}&request_uri=", double.issuer)));
        let seen = double.seen();
        let par = seen.last().unwrap();
        assert_eq!(par.verify_error, None);
        assert_eq!(par.form["client_id"], id);
        assert_eq!(par.request_claims["aud"], double.issuer.as_str());
        assert_eq!(par.request_claims["iss"], id);
        assert_eq!(par.assertion_claims.as_ref().unwrap()["aud"], double.issuer.as_str());
        assert!(other.seen().iter().all(|p| p.form["client_id"] != id));
    }
    assert_eq!((a.seen().len(), b.seen().len()), (1, 1));
    // Bank A's client_id sent to bank B's endpoint: refused, nothing pushed anywhere.
    let RedirectDecision::Fail(e) = decide(&state.front, login_at(&b.issuer, "tpp-a").as_bytes()).await else {
        panic!("a mixed-up redirect must fail closed")
    };
    assert_eq!(
        (e.code.as_str(), e.as_name.as_deref()),
        ("authorize_redirect_rejected", Some("bank-b"))
    );
    assert_eq!((a.seen().len(), b.seen().len()), (1, 1));
    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert!(
        m.contains(r#"par_sidecar_par_requests_total{as="bank-a",as_error="",outcome="success"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"par_sidecar_par_requests_total{as="bank-b",as_error="",outcome="success"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_response_claiming_the_other_banks_issuer_is_the_mix_up_attack() {
    let (a, b, state) = two_banks("tpp-a", "tpp-b").await;
    let RedirectDecision::Rewrite { set_cookie, .. } =
        decide(&state.front, login_at(&a.issuer, "tpp-a").as_bytes()).await
    else {
        panic!()
    };
    let cookie = cookie_pair(&set_cookie.unwrap());
    let sealed = a.seen()[0].request_claims["state"].as_str().unwrap().to_string();
    let q = |iss: &str, code: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", code)
            .append_pair("state", &sealed)
            .append_pair("iss", iss)
            .finish()
    };
    let outcome = |q: String| {
        let state = state.clone();
        let cookie = cookie.clone();
        async move { callback::check(&state.front, "/cb", Some(&q), &[cookie.as_bytes()]).await }
    };
    // Bank B's issuer (and code) with bank A's state: refused as the mix-up, by name.
    match outcome(q(&b.issuer, "code-from-b")).await {
        CallbackOutcome::Reject { code, as_name, .. } => {
            assert_eq!(code, "iss_mixup");
            assert_eq!(as_name.as_deref(), Some("bank-a"));
        }
        other => panic!("{other:?}"),
    }
    // An issuer nobody configured: a plain mismatch.
    match outcome(q("https://evil.example", "code-x")).await {
        CallbackOutcome::Reject { code, .. } => assert_eq!(code, "iss_mismatch"),
        other => panic!("{other:?}"),
    }
    assert!(
        state.codes.take(&"code-from-b".to_string()).is_none(),
        "a refused code is never remembered"
    );
    // The genuine response was not burnt by the refused ones.
    let CallbackOutcome::Forward { query, .. } = outcome(q(&a.issuer, "code-from-a")).await else {
        panic!("the genuine response must pass")
    };
    assert!(
        query.contains("state=app-state") && query.contains("code=code-from-a"),
        "{query}"
    );
    let rec = state.codes.take(&"code-from-a".to_string()).unwrap();
    assert_eq!(rec.as_index, AsIndex::new(0));
    assert_eq!(
        rec.nonce.as_ref().map(|n| n.expose()),
        Some("n-1"),
        "the pushed nonce is kept for the ID token check"
    );
    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert!(
        m.contains(r#"par_sidecar_callback_checks_total{as="bank-a",outcome="iss_mixup"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn egress_never_sends_a_code_to_another_as_and_never_guesses() {
    let (_a, _b, state) = two_banks("tpp-a", "tpp-b").await;
    let record = |as_index| CodeRecord {
        as_index: AsIndex::new(as_index),
        verifier: None,
        redirect_uri: None,
        nonce: None,
        max_age: None,
        claim_values: None,
    };
    // A code bank A issued, presented on bank B's route: refused before any AS call.
    state.codes.insert_new("code-a".into(), record(0));
    let resp = egress::handle(
        &state,
        common::egress_post("/as/bank-b/token", None, "grant_type=authorization_code&code=code-a"),
    )
    .await;
    assert_eq!(resp.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].as_str().unwrap().contains("bank-a"));
    // Unprefixed refresh: ambiguous in a multi-AS config, refused naming the routes.
    let resp = egress::handle(
        &state,
        common::egress_post("/token", None, "grant_type=refresh_token&refresh_token=r"),
    )
    .await;
    assert_eq!(resp.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(
        body["error_description"].as_str().unwrap().contains("/as/bank-a/token"),
        "{body}"
    );
    // Unknown AS name and unknown endpoint.
    let resp = egress::handle(
        &state,
        common::egress_post("/as/bank-z/token", None, "grant_type=refresh_token"),
    )
    .await;
    assert_eq!(resp.status, 404);
    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert!(
        m.contains(r#"as="bank-b",as_error="",outcome="as_mismatch",route="token"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"outcome="ambiguous",route="token"} 1"#), "{m}");
}

#[tokio::test]
async fn a_hub_endpoint_with_distinct_client_ids_is_fine() {
    // A hub: bank B's metadata names bank A's authorize endpoint; the client_id tells them apart.
    let (a, _b, state) = two_banks("tpp-a", "tpp-b").await;
    let md_a = state.registry.clients[0].discovery.get().unwrap();
    let mut md_b = (*state.registry.clients[1].discovery.get().unwrap()).clone();
    md_b.authorization_endpoint = md_a.authorization_endpoint.clone();
    state.registry.set_metadata(&state.registry.clients[1], md_b.clone());
    assert!(state.registry.clients.iter().all(|c| c.is_ready()));
    let RedirectDecision::Rewrite { .. } = decide(&state.front, login_at(&a.issuer, "tpp-b").as_bytes()).await else {
        panic!("the hub login for bank B must be pushed")
    };
}

/// A state whose two banks (same client_id) loaded their first documents with `endpoint` as
/// the authorize endpoint: neither owns it and neither moved onto it.
async fn both_first_loaded_at(endpoint: &AuthorizeEndpoint) -> (AsDouble, AsDouble, Arc<Sidecar>) {
    let (a, b, loaded) = two_banks("tpp", "tpp").await;
    let pki = common::pki();
    let yaml = two_banks_yaml(&pki, &a.issuer, &b.issuer, "tpp", "tpp");
    let state = Sidecar::load(Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    for (fresh, old) in state.registry.clients.iter().zip(&loaded.registry.clients) {
        let mut md = (*old.discovery.get().unwrap()).clone();
        md.authorization_endpoint = endpoint.clone();
        state.registry.set_metadata(fresh, md);
    }
    (a, b, state)
}

#[tokio::test]
async fn an_endpoint_nobody_owns_named_by_two_first_loads_makes_both_not_ready() {
    let hub = AuthorizeEndpoint::new(url::Url::parse("https://hub.example/authorize").unwrap());
    let (a, b, state) = both_first_loaded_at(&hub).await;
    assert!(!state.is_ready());
    let RedirectDecision::Fail(e) = decide(
        &state.front,
        b"https://hub.example/authorize?client_id=tpp&response_type=code",
    )
    .await
    else {
        panic!("must fail closed")
    };
    assert_eq!((e.status, e.code.as_str()), (503, "not_ready"));
    let ready = par_sidecar::ops::admin::route(&state, &http::Method::GET, "/readyz");
    assert_eq!(ready.status(), 503);
    let body = String::from_utf8(ready.body().clone()).unwrap();
    assert!(
        body.contains("bank-a: not ready: same authorization endpoint and client_id as `bank-b`"),
        "{body}"
    );
    assert!(body.contains("authorize_hosts"), "the fix is named: {body}");
    assert!(a.seen().is_empty() && b.seen().is_empty());
}

fn metrics(state: &Sidecar) -> String {
    String::from_utf8(state.metrics.render()).unwrap()
}

/// Bank A keeps its endpoint and its logins; bank B, whose document names it, is refused.
async fn assert_a_kept_b_refused(a: &AsDouble, state: &Arc<Sidecar>, pars_before: usize) {
    let (ca, cb) = (&state.registry.clients[0], &state.registry.clients[1]);
    assert!(ca.is_ready(), "{:?}", ca.not_ready_reason());
    assert!(!cb.is_ready());
    let ready = par_sidecar::ops::admin::route(state, &http::Method::GET, "/readyz");
    let body = String::from_utf8(ready.body().clone()).unwrap();
    assert_eq!(ready.status(), 200, "{body}");
    assert!(
        body.contains("bank-b: not ready: authorization endpoint") && body.contains("belongs to `bank-a`"),
        "{body}"
    );
    for _ in 0..2 {
        let RedirectDecision::Rewrite { location, .. } =
            decide(&state.front, login_at(&a.issuer, "tpp").as_bytes()).await
        else {
            panic!("bank A's login must be pushed")
        };
        assert!(location.starts_with(&format!("{}/authorize?client_id=tpp&request_uri=", a.issuer)));
    }
    assert_eq!(a.seen().len(), pars_before + 2, "pushed to bank A");
    let m = metrics(state);
    assert!(m.contains(r#"par_sidecar_as_metadata_loaded{as="bank-a"} 1"#), "{m}");
    assert!(m.contains(r#"par_sidecar_as_metadata_loaded{as="bank-b"} 0"#), "{m}");
    assert!(
        m.contains(r#"par_sidecar_discovery_failures_total{as="bank-b",reason="endpoint_conflict"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"par_sidecar_discovery_failures_total{as="bank-a",reason="endpoint_conflict"} 0"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_bank_whose_discovery_names_another_banks_endpoint_is_refused_alone() {
    // At start-up, in either load order: bank A's endpoint is on its issuer's host and port.
    for b_first in [false, true] {
        let pki = common::pki();
        let a = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
        let b = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
        b.metadata_overrides.lock().unwrap().insert(
            "authorization_endpoint".into(),
            format!("{}/authorize", a.issuer).into(),
        );
        let yaml = two_banks_yaml(&pki, &a.issuer, &b.issuer, "tpp", "tpp");
        let state = Sidecar::load(Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
        let (ca, cb) = (&state.registry.clients[0], &state.registry.clients[1]);
        let refresh = par_sidecar::ops::background::refresh_once;
        if b_first {
            assert!(!refresh(&state, cb).await, "bank B's document is refused");
            assert!(refresh(&state, ca).await);
        } else {
            assert!(refresh(&state, ca).await);
            assert!(!refresh(&state, cb).await, "bank B's document is refused");
        }
        assert_a_kept_b_refused(&a, &state, 0).await;
    }
}

#[tokio::test]
async fn a_refresh_never_moves_a_bank_onto_another_banks_endpoint() {
    let (a, b, state) = two_banks("tpp", "tpp").await;
    let (ca, cb) = (&state.registry.clients[0], &state.registry.clients[1]);
    let refresh = par_sidecar::ops::background::refresh_once;
    // Bank B's document changes at a refresh to name bank A's endpoint.
    b.metadata_overrides.lock().unwrap().insert(
        "authorization_endpoint".into(),
        format!("{}/authorize", a.issuer).into(),
    );
    assert!(!refresh(&state, cb).await);
    assert_a_kept_b_refused(&a, &state, 0).await;
    // Fixed at the next refresh: bank B is back, bank A untouched.
    b.metadata_overrides.lock().unwrap().clear();
    assert!(refresh(&state, cb).await);
    assert!(ca.is_ready() && cb.is_ready());
    assert!(matches!(
        decide(&state.front, login_at(&b.issuer, "tpp").as_bytes()).await,
        RedirectDecision::Rewrite { .. }
    ));
    assert_eq!(b.seen().len(), 1);

    // On a hub endpoint neither owns: the bank that was there first keeps it.
    let hub = "https://hub.example/authorize";
    a.metadata_overrides
        .lock()
        .unwrap()
        .insert("authorization_endpoint".into(), hub.into());
    assert!(refresh(&state, ca).await);
    b.metadata_overrides
        .lock()
        .unwrap()
        .insert("authorization_endpoint".into(), hub.into());
    assert!(!refresh(&state, cb).await);
    assert!(ca.is_ready() && !cb.is_ready());
    assert!(
        cb.not_ready_reason().unwrap().contains("`bank-a`"),
        "{:?}",
        cb.not_ready_reason()
    );
    let RedirectDecision::Rewrite { location, .. } = decide(
        &state.front,
        format!("{hub}?response_type=code&client_id=tpp&state=s").as_bytes(),
    )
    .await
    else {
        panic!("bank A keeps the hub's logins")
    };
    assert!(
        location.starts_with(&format!("{hub}?client_id=tpp&request_uri=")),
        "{location}"
    );
    assert_eq!((a.seen().len(), b.seen().len()), (3, 1));
    // A later rebuild (bank B's refresh again) does not change the outcome.
    assert!(!refresh(&state, cb).await);
    assert!(ca.is_ready() && !cb.is_ready());
}

#[tokio::test]
async fn without_usable_metadata_the_last_authorize_host_is_held_back_too() {
    // UAE-style: the authorize endpoint lives on another host than the issuer.
    let far = AuthorizeEndpoint::new(url::Url::parse("https://bank.example/oauth/authorize").unwrap());
    // Both banks name that endpoint with the same client_id at their first load: a
    // conflict nobody wins, neither usable.
    let (_a, _b, state) = both_first_loaded_at(&far).await;
    assert!(!state.is_ready());
    for loc in [
        "https://bank.example/oauth/authorize/?client_id=other-app&response_type=code",
        "https://bank.example/oauth/authorize?response_type=code",
        "https://BANK.example./elsewhere",
        "\\\\bank.example/oauth/authorize?client_id=x",
    ] {
        let RedirectDecision::Fail(e) = decide(&state.front, loc.as_bytes()).await else {
            panic!("{loc}: must be held back")
        };
        assert_eq!((e.status, e.code.as_str()), (503, "not_ready"), "{loc}");
    }
    let RedirectDecision::PassThrough = decide(&state.front, b"https://elsewhere.example/").await else {
        panic!("other hosts are the app's business")
    };
}

#[tokio::test]
async fn configured_authorize_hosts_are_held_back_before_the_first_load() {
    let pki = common::pki();
    let yaml = two_banks_yaml(
        &pki,
        "https://auth.bank-a.example",
        "https://auth.bank-b.example",
        "tpp-a",
        "tpp-b",
    )
    .replace(
        r#"name: bank-b, issuer: "https://auth.bank-b.example","#,
        r#"name: bank-b, issuer: "https://auth.bank-b.example", authorize_hosts: [bank-b.example],"#,
    );
    assert!(yaml.contains("authorize_hosts"));
    let state = Sidecar::load(Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    for loc in [
        "https://auth.bank-a.example/authorize?client_id=tpp-a&response_type=code",
        "https://bank-b.example/oauth/authorize?client_id=tpp-b&response_type=code",
        "/\\bank-b.example/oauth/authorize?client_id=tpp-b&response_type=code",
    ] {
        let RedirectDecision::Fail(e) = decide(&state.front, loc.as_bytes()).await else {
            panic!("{loc}: must be held back")
        };
        assert_eq!((e.status, e.code.as_str()), (503, "not_ready"), "{loc}");
        assert_eq!(
            e.as_name.as_deref(),
            Some(if loc.contains("tpp-a") { "bank-a" } else { "bank-b" })
        );
    }
    // Bank A's authorize host is unknown until its metadata loads (only its issuer host is),
    // but its client_id says whose login it is: held back too, never forwarded plain.
    let RedirectDecision::Fail(e) = decide(&state.front, b"https://bank-a.example/authorize?client_id=tpp-a").await
    else {
        panic!("bank A's client_id on an unknown host must be held back")
    };
    assert_eq!((e.code.as_str(), e.as_name.as_deref()), ("not_ready", Some("bank-a")));
    // Another app's client there passes.
    assert!(matches!(
        decide(&state.front, b"https://bank-a.example/authorize?client_id=someone-else").await,
        RedirectDecision::PassThrough
    ));
}

#[tokio::test]
async fn a_not_ready_banks_client_id_on_an_unknown_host_is_held_back() {
    // Bank B's metadata never loaded: its authorize host (off the issuer's host) is unknown.
    let pki = common::pki();
    let a = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let yaml = two_banks_yaml(&pki, &a.issuer, "https://127.0.0.1:9/down", "tpp-a", "tpp-b");
    let state = Sidecar::load(par_sidecar::config::Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    assert!(par_sidecar::ops::background::refresh_once(&state, &state.registry.clients[0]).await);
    let RedirectDecision::Fail(e) = decide(
        &state.front,
        login_at("https://auth.bank-b.example", "tpp-b").as_bytes(),
    )
    .await
    else {
        panic!("bank B's login must not be forwarded unpushed")
    };
    assert_eq!((e.code.as_str(), e.as_name.as_deref()), ("not_ready", Some("bank-b")));
    // Someone else's client there is not ours.
    assert!(matches!(
        decide(
            &state.front,
            login_at("https://auth.bank-b.example", "other-app").as_bytes()
        )
        .await,
        RedirectDecision::PassThrough
    ));
}

#[tokio::test]
async fn a_code_refused_before_reaching_the_as_is_kept_for_the_apps_retry() {
    let pki = common::pki();
    let a = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let yaml = two_banks_yaml(&pki, &a.issuer, "https://127.0.0.1:9/down", "tpp-a", "tpp-b");
    let state = Sidecar::load(par_sidecar::config::Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    let record = CodeRecord {
        as_index: AsIndex::new(1),
        verifier: None,
        redirect_uri: None,
        nonce: None,
        max_age: None,
        claim_values: None,
    };
    state.codes.insert_new("code-b".into(), record.clone());
    // Bank B not ready: 503 before anything is sent; the code stays for the retry.
    let resp = egress::handle(
        &state,
        common::egress_post("/token", None, "grant_type=authorization_code&code=code-b"),
    )
    .await;
    assert_eq!(resp.status, 503);
    assert!(state.codes.take(&"code-b".to_string()).is_some(), "kept for the retry");
    // Presented on another bank's route: burnt (suspect), not put back.
    state.codes.insert_new("code-b".into(), record);
    let resp = egress::handle(
        &state,
        common::egress_post("/as/bank-a/token", None, "grant_type=authorization_code&code=code-b"),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(state.codes.take(&"code-b".to_string()).is_none());
}
