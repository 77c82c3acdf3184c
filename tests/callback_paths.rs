//! Which requests the callback check looks at: authorization responses on callback paths,
//! JARM responses and sealed states on any path; everything else (the app's own pages at a
//! callback path, `response` parameters while no AS uses JARM) passes through untouched.

mod common;

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::{settings_yaml, AsDouble};
use jsonwebtoken::Algorithm;
use par_sidecar::as_client::request_object::now_secs;
use par_sidecar::front::callback::{check, is_candidate, CallbackOutcome};
use par_sidecar::front::sealed_state::TransactionState;
use par_sidecar::sidecar::Sidecar;

/// Counts allocations made by the current thread (the hot-path test below).
struct Counting;

thread_local! {
    static ALLOCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches no memory it hands out.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract; passed on as is.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: `p` came from `System.alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(|c| c.get());
    f();
    ALLOCS.with(|c| c.get()) - before
}

async fn state_with(pki: &Path, double: &AsDouble, extra: &str) -> Arc<Sidecar> {
    let yaml = settings_yaml(pki, &double.issuer, "sign-es256.pem", "ES256", "private_key_jwt", extra);
    common::loaded_state(&yaml, &pki.join("sidecar.yaml")).await
}

fn sealed(state: &Sidecar, nonce: &str, jarm: bool) -> String {
    state.front.sealer.seal(&TransactionState {
        app_state: Some("app-state".into()),
        verifier: None,
        redirect_uri: Some("https://app.example/cb".into()),
        issued_at: now_secs(),
        nonce: nonce.into(),
        jarm,
        binding: None,
        as_name: None,
        oidc_nonce: None,
        max_age: None,
        claim_values: None,
        form_post: false,
    })
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A compact JWS shape with these claims and a junk signature (never verifies).
fn unsigned_jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(br#"{"alg":"ES256","kid":"k1"}"#),
        B64.encode(claims.to_string()),
        B64.encode([7u8; 64])
    )
}

fn is_not_callback(o: &CallbackOutcome) -> bool {
    matches!(o, CallbackOutcome::NotCallback)
}

#[tokio::test]
async fn the_apps_own_pages_at_a_callback_path_pass_through() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_with(&pki, &double, "callback: { paths: [\"/cb\"], cookie_secure: false }").await;
    for q in [
        None,
        Some(""),
        Some("login"),
        Some("logout"),
        Some("tenant=x&next=%2Fhome"),
        Some("codes=1&states=2&responses=3"),
    ] {
        assert!(!is_candidate(&state.front, "/cb", q), "{q:?}");
        assert!(is_not_callback(&check(&state.front, "/cb", q, &[]).await), "{q:?}");
    }
    // Authorization-response parameters, however their names are encoded, are checked.
    for q in [
        "code=x",
        "error=access_denied",
        "state=anything",
        "%63ode=x",
        "co%64e=x",
        "x=1;code=y",
        "%73tate=s",
        // Spellings other parsers read as response parameters (PHP, Rails, ASP.NET).
        "%20code=x",
        "code[]=x",
        "ISS=x",
        // On a callback path `response` is checked even while no AS uses JARM: an app's
        // own JARM-aware library could read it.
        "response=yes",
    ] {
        assert!(is_candidate(&state.front, "/cb", Some(q)), "{q}");
        assert!(!is_not_callback(&check(&state.front, "/cb", Some(q), &[]).await), "{q}");
    }
    // Every path spelling a framework routes to `/cb` is a callback path (issue 18 H1).
    for p in [
        "/%63b", "/%2563b", "//cb", "/x/../cb", "/./cb", "/CB", "/cb.json", "/cb;a=b", "/cb%2F", "/%2Fcb", "\\cb",
    ] {
        assert!(is_candidate(&state.front, p, Some("code=x")), "{p}");
        let CallbackOutcome::Reject { code, .. } = check(&state.front, p, Some("code=x"), &[]).await else {
            panic!("{p}: an unchecked code reached the app")
        };
        assert_eq!(code.as_str(), "state_missing", "{p}");
    }
    for p in ["/cbx", "/cb/x", "/other", "/"] {
        assert!(!is_candidate(&state.front, p, Some("code=x")), "{p}");
    }
    // Other paths: untouched unless they carry a sealed state (in any encoding).
    assert!(!is_candidate(&state.front, "/other", Some("code=1&state=2")));
    let s = sealed(&state, "n-enc", false);
    let encoded_prefix = format!("%73tate={}", s.replacen("ps1.", "ps1%2E", 1));
    assert!(is_candidate(&state.front, "/other", Some(&encoded_prefix)));
}

#[tokio::test]
async fn the_hot_path_does_not_allocate() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_with(&pki, &double, "callback: { paths: [\"/cb\"], cookie_secure: false }").await;
    assert!(
        allocations(|| drop(std::hint::black_box(String::from("x")))) > 0,
        "the counter counts"
    );
    // Warm up (first loads of lazily initialised things).
    let _ = is_candidate(&state.front, "/cb", Some("login"));
    for (path, q) in [
        ("/", None),
        ("/assets/app.js", Some("v=3")),
        ("/search", Some("q=a%20b&page=2;sort=asc")),
        ("/cb", Some("login")),
        ("/cb", None),
        ("/other", Some("code=1&state=x&response=y")),
        ("/OTHER/", Some("code=1")),
    ] {
        let n = allocations(|| assert!(!is_candidate(&state.front, path, q)));
        assert_eq!(n, 0, "{path} {q:?}");
    }
}

#[tokio::test]
async fn without_jarm_configured_a_response_parameter_is_ignored() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_with(&pki, &double, "callback: { paths: [\"/cb\"], cookie_secure: false }").await;
    assert!(!state.front.jarm_configured());
    let s = sealed(&state, "n-nojarm", false);
    let jwt = unsigned_jwt(serde_json::json!({"state": s, "iss": double.issuer, "aud": "legacy-app"}));
    // Not a candidate off a callback path while no AS uses JARM.
    assert!(!is_candidate(
        &state.front,
        "/elsewhere",
        Some(&format!("response={jwt}"))
    ));
    // Next to a plain response, `response` is not JARM: no JWKS, the plain checks apply.
    let q = format!(
        "code=c-1&state={}&iss={}&response={}",
        enc(&s),
        enc(&double.issuer),
        enc(&jwt)
    );
    let CallbackOutcome::Forward { query, .. } = check(&state.front, "/cb", Some(&q), &[]).await else {
        panic!("a plain response with a stray `response` parameter must be checked as plain")
    };
    assert!(
        query.contains("code=c-1") && query.contains("state=app-state"),
        "{query}"
    );
    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert!(
        !m.lines()
            .any(|l| l.starts_with("par_sidecar_jwks_refreshes_total{") && !l.ends_with(" 0")),
        "no JWKS fetch: {m}"
    );
}

#[tokio::test]
async fn with_jarm_configured_a_jarm_response_is_checked_on_any_path() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    // `client.response_mode: jwt`, and `/cb` neither configured nor learned yet.
    let yaml = settings_yaml(
        &pki,
        &double.issuer,
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        "callback: { cookie_secure: false }",
    )
    .replace("client_id: legacy-app", "client_id: legacy-app\n  response_mode: jwt");
    // A fresh process: no learned callback path, as after a restart.
    let state = common::loaded_state(&yaml, &pki.join("sidecar.yaml")).await;
    assert!(state.front.jarm_configured());
    assert!(!state.front.is_callback_path("/cb"));

    let s = sealed(&state, "n-jarm", true);
    let jwt = unsigned_jwt(serde_json::json!({"state": s, "iss": double.issuer, "aud": "legacy-app", "code": "c"}));
    let q = format!("response={}", enc(&jwt));
    assert!(is_candidate(&state.front, "/cb", Some(&q)));
    match check(&state.front, "/cb", Some(&q), &[]).await {
        // The double publishes no jwks_uri: the response can never be verified.
        CallbackOutcome::Reject { code, .. } => {
            assert!(["jwks_unavailable", "jarm_invalid"].contains(&code.as_str()), "{code}")
        }
        other => panic!("a JARM response on an unlearned path must be checked: {other:?}"),
    }
    // Off a callback path, a `response` that carries no sealed state is the app's own.
    for q in ["response=yes", "response=a.b.c"] {
        assert!(
            is_not_callback(&check(&state.front, "/survey", Some(q), &[]).await),
            "{q}"
        );
    }
    let foreign = unsigned_jwt(serde_json::json!({"state": "the-apps-state"}));
    let q = format!("response={}", enc(&foreign));
    assert!(is_not_callback(&check(&state.front, "/survey", Some(&q), &[]).await));
    // A sealed state that did not ask for JARM: refused before any JWKS fetch.
    let plain = sealed(&state, "n-plain", false);
    let jwt = unsigned_jwt(serde_json::json!({"state": plain, "iss": double.issuer, "aud": "legacy-app"}));
    let q = format!("response={}", enc(&jwt));
    let CallbackOutcome::Reject { code, .. } = check(&state.front, "/elsewhere", Some(&q), &[]).await else {
        panic!()
    };
    assert_eq!(code.as_str(), "jarm_invalid");
}

#[tokio::test]
async fn check_all_paths_applies_the_callback_rule_everywhere() {
    let pki = common::pki();
    let double = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = state_with(
        &pki,
        &double,
        "callback: { paths: [\"/cb\"], cookie_secure: false, check_all_paths: true }",
    )
    .await;
    for p in ["/anything", "/api/v1/Return", "/"] {
        assert!(is_candidate(&state.front, p, Some("%20code=x")), "{p}");
        let CallbackOutcome::Reject { code, .. } = check(&state.front, p, Some("code=x"), &[]).await else {
            panic!("{p}: forwarded unchecked")
        };
        assert_eq!(code.as_str(), "state_missing");
    }
    // Requests without response parameters still pass everywhere.
    assert!(!is_candidate(&state.front, "/anything", Some("q=1")));
}
