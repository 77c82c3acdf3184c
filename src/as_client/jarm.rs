//! JARM (JWT Secured Authorization Response Mode) verification against the AS JWKS, which
//! is fetched, cached, refreshed on an unknown `kid` and rate-limited (CB-2, CB-3).

use crate::errors::FailureCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use crate::as_client::http_client::{AsHttp, AsRequest};
use crate::as_client::jose::{select_verification_key, KeySelectError};
use crate::metrics::Metrics;

#[derive(Debug, Error)]
pub enum JarmError {
    #[error("response JWT is malformed: {0}")]
    Malformed(String),
    #[error("response JWT alg {0:?} is not allowed")]
    Alg(String),
    #[error("no AS key for kid {0:?}")]
    UnknownKey(Option<String>),
    #[error("AS JWKS unavailable: {0}")]
    Jwks(String),
    #[error("response JWT rejected: {0}")]
    Invalid(String),
}

impl JarmError {
    /// The browser-facing failure this error becomes.
    pub fn failure(&self) -> FailureCode {
        match self {
            JarmError::Jwks(_) => FailureCode::JwksUnavailable,
            _ => FailureCode::JarmInvalid,
        }
    }

    /// The stable code (metric label).
    pub fn code(&self) -> &'static str {
        self.failure().as_str()
    }
}

/// FAPI 2.0 algorithms only (CR-1): never `none` (unparseable here) or HMAC.
fn allowed(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA)
}

/// One AS's JWKS. Fetches are rate-limited whether or not a set was ever loaded, so no
/// input (unknown kids, garbage JWTs) can make the sidecar fetch faster than `min_refresh`.
pub struct AsJwks {
    current: ArcSwapOption<JwkSet>,
    /// One fetch at a time: concurrent callers wait for the one in flight and use its result
    /// instead of being turned away by the rate limit with nothing loaded.
    fetching: tokio::sync::Mutex<()>,
    /// Completed fetch attempts, so a waiter can tell that one finished while it waited.
    attempts: std::sync::atomic::AtomicU64,
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
    /// The AS's configured name: the metric label.
    as_name: String,
}

impl AsJwks {
    pub fn new(as_name: &str) -> Self {
        AsJwks {
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
            attempts: std::sync::atomic::AtomicU64::new(0),
            last_fetch: Mutex::new(None),
            min_refresh: Duration::from_secs(10),
            as_name: as_name.to_string(),
        }
    }

    async fn refresh(
        &self,
        http: &dyn AsHttp,
        uri: &Url,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Result<(), JarmError> {
        use std::sync::atomic::Ordering;
        let seen = self.attempts.load(Ordering::Acquire);
        let _one_at_a_time = self.fetching.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            // A fetch completed while this caller waited: use what it got.
            return Ok(());
        }
        {
            let mut last = self.last_fetch.lock().expect("lock");
            if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
                metrics
                    .jwks_refreshes
                    .with_label_values(&[&self.as_name, "rate_limited"])
                    .inc();
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let result = async {
            let resp = http
                .send(AsRequest::get(uri.clone(), timeout))
                .await
                .map_err(|e| JarmError::Jwks(e.to_string()))?;
            if resp.status != 200 {
                return Err(JarmError::Jwks(format!("HTTP {}", resp.status)));
            }
            serde_json::from_slice::<JwkSet>(&resp.body).map_err(|e| JarmError::Jwks(e.to_string()))
        }
        .await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(set) => {
                metrics
                    .jwks_refreshes
                    .with_label_values(&[&self.as_name, "success"])
                    .inc();
                self.current.store(Some(std::sync::Arc::new(set)));
                Ok(())
            }
            Err(e) => {
                // Keep the last good set.
                metrics
                    .jwks_refreshes
                    .with_label_values(&[&self.as_name, "failure"])
                    .inc();
                Err(e)
            }
        }
    }

    /// The AS's key set, fetched when none is cached or when `kid` is not in it (a key
    /// rotation at the AS); the fetch is rate-limited like every other.
    pub async fn key_set(
        &self,
        kid: Option<&str>,
        http: &dyn AsHttp,
        jwks_uri: Option<&Url>,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Result<std::sync::Arc<JwkSet>, JarmError> {
        let uri = jwks_uri.ok_or_else(|| JarmError::Jwks("the AS publishes no jwks_uri".into()))?;
        let known = |set: &JwkSet| kid.is_none_or(|k| set.find(k).is_some());
        match self.current.load_full() {
            Some(set) if known(&set) => Ok(set),
            _ => {
                self.refresh(http, uri, timeout, metrics).await?;
                self.current
                    .load_full()
                    .ok_or_else(|| JarmError::Jwks("no AS key set loaded".into()))
            }
        }
    }

    /// After a signature failed with a cached key: the AS may have replaced the key under the
    /// same `kid`. Refetches (rate-limited like every fetch) and returns the new set only if
    /// one was loaded since `seen`, so the caller verifies at most once more.
    pub async fn refetched_since(
        &self,
        seen: &std::sync::Arc<JwkSet>,
        http: &dyn AsHttp,
        jwks_uri: Option<&Url>,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Option<std::sync::Arc<JwkSet>> {
        self.refresh(http, jwks_uri?, timeout, metrics).await.ok()?;
        let now = self.current.load_full()?;
        (!std::sync::Arc::ptr_eq(seen, &now)).then_some(now)
    }

    /// The key for this JWS by the rule ID tokens use too ([`select_verification_key`]).
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, JarmError> {
        let set = self
            .current
            .load_full()
            .ok_or_else(|| JarmError::UnknownKey(kid.map(str::to_string)))?;
        let jwk = select_verification_key(&set, kid, alg).map_err(|e| match e {
            KeySelectError::WrongKey => JarmError::Alg(format!("{alg:?} with AS key {kid:?}")),
            KeySelectError::NoKid { .. } | KeySelectError::UnknownKid => JarmError::UnknownKey(kid.map(str::to_string)),
        })?;
        DecodingKey::from_jwk(jwk).map_err(|e| JarmError::Invalid(format!("AS key unusable: {e}")))
    }

    /// Verifies a JARM response and returns its claims (`code`, `state`, `error`, ...).
    #[allow(clippy::too_many_arguments)]
    pub async fn verify(
        &self,
        token: &str,
        http: &dyn AsHttp,
        jwks_uri: Option<&Url>,
        issuer: &str,
        client_id: &str,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Result<Map<String, Value>, JarmError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| JarmError::Malformed(e.to_string()))?;
        if !allowed(header.alg) {
            return Err(JarmError::Alg(format!("{:?}", header.alg)));
        }
        let uri = jwks_uri.ok_or_else(|| JarmError::Jwks("the AS publishes no jwks_uri".into()))?;
        let cached = self.current.load_full();
        let (key, cached) = match (self.find(header.kid.as_deref(), header.alg), cached) {
            (Ok(k), Some(set)) => (k, Some(set)),
            _ => {
                self.refresh(http, uri, timeout, metrics).await?;
                (self.find(header.kid.as_deref(), header.alg)?, None)
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[issuer]);
        v.set_audience(&[client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = 60;
        let decode = |key: &DecodingKey| jsonwebtoken::decode::<Map<String, Value>>(token, key, &v);
        match decode(&key) {
            Ok(data) => Ok(data.claims),
            // Verified with a cached key: once more after a refetch, should the AS have
            // replaced the key under the same kid.
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) && cached.is_some() => {
                let seen = cached.expect("checked");
                if self
                    .refetched_since(&seen, http, Some(uri), timeout, metrics)
                    .await
                    .is_some()
                {
                    if let Ok(k) = self.find(header.kid.as_deref(), header.alg) {
                        return decode(&k)
                            .map(|d| d.claims)
                            .map_err(|e| JarmError::Invalid(e.to_string()));
                    }
                }
                Err(JarmError::Invalid(e.to_string()))
            }
            Err(e) => Err(JarmError::Invalid(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The conformance suite's JARM client cases, against a JWKS from a fake AS.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    use async_trait::async_trait;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::as_client::http_client::{AsResponse, TransportError};
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
        let uri = Url::parse("https://as.example.com/jwks").unwrap();
        jwks.verify(
            token,
            fake,
            Some(&uri),
            ISS,
            CLIENT,
            Duration::from_secs(1),
            &Metrics::new(),
        )
        .await
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
            assert!(matches!(r, Err(JarmError::Invalid(_))), "{name}: {r:?}");
        }
    }

    #[tokio::test]
    async fn bad_signatures_and_algs_are_refused() {
        // Another key under the AS's kid.
        let r = verify(&sign_with(&keys().other, "as-1", &claims())).await;
        assert!(matches!(r, Err(JarmError::Invalid(_))), "{r:?}");
        // A tampered payload.
        let good = sign(&claims());
        let parts: Vec<&str> = good.split('.').collect();
        let forged = B64.encode(with(|c| drop(c.insert("code".into(), json!("c-2")))).to_string());
        let r = verify(&format!("{}.{forged}.{}", parts[0], parts[2])).await;
        assert!(matches!(r, Err(JarmError::Invalid(_))), "{r:?}");
        // alg none, with and without a signature.
        let none = B64.encode(br#"{"alg":"none","kid":"as-1"}"#);
        for t in [
            format!("{none}.{}.", parts[1]),
            format!("{none}.{}.{}", parts[1], parts[2]),
        ] {
            let r = verify(&t).await;
            assert!(matches!(r, Err(JarmError::Malformed(_) | JarmError::Alg(_))), "{r:?}");
        }
        // HMAC with the public key as a secret, and RS256: not FAPI 2.0 algorithms.
        for alg in [Algorithm::HS256, Algorithm::RS256] {
            let h = B64.encode(format!(r#"{{"alg":"{alg:?}","kid":"as-1"}}"#));
            let r = verify(&format!("{h}.{}.{}", parts[1], parts[2])).await;
            assert!(matches!(r, Err(JarmError::Alg(_))), "{alg:?}: {r:?}");
        }
        // ES256 claimed, a kid the AS never published.
        let r = verify(&sign_with(&keys().good, "unknown", &claims())).await;
        assert!(matches!(r, Err(JarmError::UnknownKey(_))), "{r:?}");
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
            assert!(matches!(r, Err(JarmError::Alg(_))), "{r:?}");
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
            assert!(matches!(t.await.unwrap(), Err(JarmError::UnknownKey(_))));
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
        assert!(matches!(r, Err(JarmError::Invalid(_))), "{r:?}");
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
        assert!(matches!(r, Err(JarmError::Invalid(_))), "{r:?}");
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
}
