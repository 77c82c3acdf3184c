//! The conformance suite's JARM client cases, against a JWKS from a fake AS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use url::Url;

use crate::as_client::http_client::{AsHttp, AsRequest};
use std::time::Duration;

use super::*;
use crate::as_client::http_client::{AsResponse, TransportError};
use crate::as_client::jws::{Clock, JwksFetch};
use crate::as_client::request_object::now_secs;

const ISS: &str = "https://as.example.com";
const CLIENT: &str = "legacy-app";

struct Keys {
    /// The AS's key, published in its JWKS under kid `as-1`.
    good: EncodingKey,
    /// Someone else's key of the same type.
    other: EncodingKey,
    jwks: JwkSet,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let gen = || {
            let k = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            EncodingKey::from_ec_der(k.to_pkcs8v1().unwrap().as_ref())
        };
        let good = gen();
        let mut jwk = Jwk::from_encoding_key(&good, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("as-1".into());
        Keys {
            good,
            other: gen(),
            jwks: JwkSet { keys: vec![jwk] },
        }
    })
}

/// Serves the JWKS and counts the fetches.
#[derive(Default)]
struct FakeAs {
    fetches: AtomicUsize,
}

#[async_trait]
impl AsHttp for FakeAs {
    async fn send(&self, req: AsRequest) -> Result<AsResponse, TransportError> {
        assert_eq!(req.url.as_str(), "https://as.example.com/jwks");
        self.fetches.fetch_add(1, Ordering::SeqCst);
        // A slow AS: concurrent callers arrive while the first fetch is in flight.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        Ok(AsResponse {
            status: 200,
            headers: http::HeaderMap::new(),
            body: serde_json::to_vec(&keys().jwks).unwrap().into(),
        })
    }
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": CLIENT, "exp": now_secs() + 300, "state": "ps1.x", "code": "c-1"})
}

fn with(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut c = claims();
    edit(c.as_object_mut().unwrap());
    c
}

fn sign_with(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    encode(&h, claims, key).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(&keys().good, "as-1", claims)
}

async fn verify_with(jwks: &AsJwks, fake: &dyn AsHttp, token: &str) -> Result<Map<String, Value>, JarmError> {
    verify_skew(jwks, fake, token, 60).await
}

async fn verify_skew(
    jwks: &AsJwks,
    fake: &dyn AsHttp,
    token: &str,
    skew: u64,
) -> Result<Map<String, Value>, JarmError> {
    let uri = Url::parse("https://as.example.com/jwks").unwrap();
    let metrics = Metrics::new();
    let fetch = JwksFetch {
        http: fake,
        jwks_uri: Some(&uri),
        timeout: Duration::from_secs(1),
        metrics: &metrics,
    };
    let x = JarmExpect {
        issuer: ISS,
        client_id: CLIENT,
        advertised: None,
        clock: Clock::with_skew(skew),
    };
    jwks.verify_jarm(token, &x, &fetch).await
}

fn check_of(r: &Result<Map<String, Value>, JarmError>) -> &'static str {
    r.as_ref().err().map_or("accepted", JarmError::check)
}

async fn verify(token: &str) -> Result<Map<String, Value>, JarmError> {
    verify_with(&AsJwks::new("bank"), &FakeAs::default(), token).await
}

#[tokio::test]
async fn a_good_response_is_accepted() {
    let c = verify(&sign(&claims())).await.unwrap();
    assert_eq!((c["code"].as_str(), c["state"].as_str()), (Some("c-1"), Some("ps1.x")));
    // An aud array holding the client is fine too.
    let arr = with(|c| {
        c.insert("aud".into(), json!([CLIENT, "someone-else"]));
    });
    assert!(verify(&sign(&arr)).await.is_ok());
}

#[tokio::test]
async fn each_claim_fault_is_refused() {
    let cases: Vec<(&str, Value)> = vec![
        ("without iss", with(|c| drop(c.remove("iss")))),
        (
            "another iss",
            with(|c| drop(c.insert("iss".into(), json!("https://evil.example.com")))),
        ),
        (
            "iss with a trailing slash",
            with(|c| drop(c.insert("iss".into(), json!("https://as.example.com/")))),
        ),
        ("without aud", with(|c| drop(c.remove("aud")))),
        (
            "another aud",
            with(|c| drop(c.insert("aud".into(), json!("another-client")))),
        ),
        ("without exp", with(|c| drop(c.remove("exp")))),
        (
            "expired beyond the leeway",
            with(|c| drop(c.insert("exp".into(), json!(now_secs() - 120)))),
        ),
    ];
    for (name, claims) in cases {
        let r = verify(&sign(&claims)).await;
        let want = name
            .split(' ')
            .find(|w| ["iss", "aud", "exp"].contains(w))
            .unwrap_or("exp");
        assert_eq!(check_of(&r), want, "{name}: {r:?}");
        assert_eq!(r.unwrap_err().failure(), FailureCode::JarmInvalid);
    }
}

#[tokio::test]
async fn bad_signatures_and_algs_are_refused() {
    // Another key under the AS's kid.
    let r = verify(&sign_with(&keys().other, "as-1", &claims())).await;
    assert_eq!(check_of(&r), "signature", "{r:?}");
    // A tampered payload.
    let good = sign(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = B64.encode(with(|c| drop(c.insert("code".into(), json!("c-2")))).to_string());
    let r = verify(&format!("{}.{forged}.{}", parts[0], parts[2])).await;
    assert_eq!(check_of(&r), "signature", "{r:?}");
    // alg none, with and without a signature.
    let none = B64.encode(br#"{"alg":"none","kid":"as-1"}"#);
    for t in [
        format!("{none}.{}.", parts[1]),
        format!("{none}.{}.{}", parts[1], parts[2]),
    ] {
        let r = verify(&t).await;
        assert_eq!(check_of(&r), "alg", "{r:?}");
    }
    // HMAC with the public key as a secret, and RS256: not FAPI 2.0 algorithms.
    for alg in [Algorithm::HS256, Algorithm::RS256] {
        let h = B64.encode(format!(r#"{{"alg":"{alg:?}","kid":"as-1"}}"#));
        let r = verify(&format!("{h}.{}.{}", parts[1], parts[2])).await;
        assert_eq!(check_of(&r), "alg", "{alg:?}: {r:?}");
    }
    // ES256 claimed, a kid the AS never published.
    let r = verify(&sign_with(&keys().good, "unknown", &claims())).await;
    assert_eq!(check_of(&r), "unknown_kid", "{r:?}");
}

/// Serves one fixed JWKS.
struct Serves(JwkSet);

#[async_trait]
impl AsHttp for Serves {
    async fn send(&self, _req: AsRequest) -> Result<AsResponse, TransportError> {
        Ok(AsResponse {
            status: 200,
            headers: http::HeaderMap::new(),
            body: serde_json::to_vec(&self.0).unwrap().into(),
        })
    }
}

/// JARM selects keys by the ID token's rule (one function): an AS publishing an
/// encryption key and its signing key under one kid is verified with the signing key,
/// a P-384 key is no ES256 key, and a JWK whose own `alg` differs is not used.
#[tokio::test]
async fn jarm_and_id_tokens_select_keys_alike() {
    let good = keys().jwks.keys[0].clone();
    let mut enc = Jwk::from_encoding_key(&keys().other, Algorithm::ES256).unwrap();
    enc.common.key_id = Some("as-1".into());
    enc.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Encryption);
    let shared_kid = JwkSet {
        keys: vec![enc, good.clone()],
    };
    let r = verify_with(&AsJwks::new("bank"), &Serves(shared_kid), &sign(&claims())).await;
    assert!(r.is_ok(), "{r:?}");
    let mut p384 = good.clone();
    if let jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p) = &mut p384.algorithm {
        p.curve = jsonwebtoken::jwk::EllipticCurve::P384;
    }
    let mut wrong_alg = good;
    wrong_alg.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::PS256);
    for set in [vec![p384], vec![wrong_alg]] {
        let r = verify_with(&AsJwks::new("bank"), &Serves(JwkSet { keys: set }), &sign(&claims())).await;
        assert_eq!(check_of(&r), "alg", "{r:?}");
    }
}

/// Unknown kids cannot drive JWKS fetches: the limit holds from the first attempt.
#[tokio::test]
async fn unknown_kids_fetch_the_jwks_at_most_once_per_window() {
    let fake = Arc::new(FakeAs::default());
    let jwks = Arc::new(AsJwks::new("bank"));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (fake, jwks) = (fake.clone(), jwks.clone());
        tasks.push(tokio::spawn(async move {
            let t = sign_with(&keys().other, &format!("attacker-{i}"), &claims());
            verify_with(&jwks, fake.as_ref(), &t).await
        }));
    }
    for t in tasks {
        assert_eq!(check_of(&t.await.unwrap()), "unknown_kid");
    }
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 1, "one fetch in the window");
    // The genuine response still verifies from the cached set, without another fetch.
    assert!(verify_with(&jwks, fake.as_ref(), &sign(&claims())).await.is_ok());
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 1);
}

/// An AS whose published key set can be swapped.
struct RotatingAs {
    fetches: AtomicUsize,
    set: std::sync::Mutex<JwkSet>,
}

#[async_trait]
impl AsHttp for RotatingAs {
    async fn send(&self, _req: AsRequest) -> Result<AsResponse, TransportError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::to_vec(&*self.set.lock().unwrap()).unwrap();
        Ok(AsResponse {
            status: 200,
            headers: http::HeaderMap::new(),
            body: body.into(),
        })
    }
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_is_used_after_one_rate_limited_refetch() {
    let mut replaced = Jwk::from_encoding_key(&keys().other, Algorithm::ES256).unwrap();
    replaced.common.key_id = Some("as-1".into());
    let fake = RotatingAs {
        fetches: AtomicUsize::new(0),
        set: std::sync::Mutex::new(keys().jwks.clone()),
    };
    // Within the rate-limit window the replaced key is not fetched: refused, no fetch.
    let limited = AsJwks::new("bank");
    assert!(verify_with(&limited, &fake, &sign(&claims())).await.is_ok());
    *fake.set.lock().unwrap() = JwkSet {
        keys: vec![replaced.clone()],
    };
    let r = verify_with(&limited, &fake, &sign_with(&keys().other, "as-1", &claims())).await;
    assert_eq!(check_of(&r), "signature", "{r:?}");
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 1, "the refetch is rate-limited");

    // Once the window allows it, one refetch brings the new key and the response verifies.
    let mut open = AsJwks::new("bank");
    open.min_refresh = Duration::ZERO;
    *fake.set.lock().unwrap() = keys().jwks.clone();
    assert!(verify_with(&open, &fake, &sign(&claims())).await.is_ok());
    *fake.set.lock().unwrap() = JwkSet { keys: vec![replaced] };
    let before = fake.fetches.load(Ordering::SeqCst);
    let t = sign_with(&keys().other, "as-1", &claims());
    assert!(verify_with(&open, &fake, &t).await.is_ok());
    assert_eq!(fake.fetches.load(Ordering::SeqCst), before + 1);
    // The old key is gone from the set: its signature is refused after one refetch.
    let r = verify_with(&open, &fake, &sign(&claims())).await;
    assert_eq!(check_of(&r), "signature", "{r:?}");
    assert_eq!(fake.fetches.load(Ordering::SeqCst), before + 2);
}

#[tokio::test]
async fn concurrent_first_loads_wait_for_the_fetch_in_flight() {
    let jwks = std::sync::Arc::new(AsJwks::new("t"));
    let http = std::sync::Arc::new(FakeAs::default());
    let metrics = std::sync::Arc::new(Metrics::new());
    let uri = Url::parse("https://as.example.com/jwks").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (jwks, http, metrics, uri) = (jwks.clone(), http.clone(), metrics.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            jwks.key_set(
                None,
                http.as_ref(),
                Some(&uri),
                std::time::Duration::from_secs(1),
                &metrics,
            )
            .await
            .map(|_| ())
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_ok(), "no caller is turned away with nothing loaded");
    }
    assert_eq!(http.fetches.load(Ordering::SeqCst), 1);
}

/// JARM reads `exp` with the configured clock skew (`egress.clock_skew_seconds`), as ID
/// tokens do; it used to hard-code 60 s whatever the config said.
#[tokio::test]
async fn the_configured_clock_skew_applies() {
    let expired_90s = sign(&with(|c| drop(c.insert("exp".into(), json!(now_secs() - 90)))));
    let expired_10s = sign(&with(|c| drop(c.insert("exp".into(), json!(now_secs() - 10)))));
    let fake = FakeAs::default();
    let jwks = AsJwks::new("bank");
    assert_eq!(check_of(&verify_skew(&jwks, &fake, &expired_90s, 60).await), "exp");
    assert_eq!(
        check_of(&verify_skew(&jwks, &fake, &expired_90s, 120).await),
        "accepted"
    );
    assert_eq!(check_of(&verify_skew(&jwks, &fake, &expired_10s, 0).await), "exp");
    assert_eq!(check_of(&verify_skew(&jwks, &fake, &expired_10s, 60).await), "accepted");
}

/// The `crit` rule of ID tokens: a JARM response with a critical extension is refused.
#[tokio::test]
async fn a_crit_header_is_refused() {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("as-1".into());
    h.crit = Some(vec!["exp".into()]);
    let t = encode(&h, &claims(), &keys().good).unwrap();
    let r = verify(&t).await;
    assert_eq!(check_of(&r), "crit", "{r:?}");
    assert!(r.unwrap_err().to_string().contains("(crit)"));
}
