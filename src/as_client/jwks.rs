//! One AS's JWKS cache: fetched on demand (an unknown `kid`, a signature failure after a
//! key replaced under the same `kid`), rate-limited whatever the input, one fetch at a time.
//! Under every token the sidecar verifies with the AS's keys (`jws`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Map, Value};
use url::Url;

use crate::as_client::http_client::{AsHttp, AsRequest};
use crate::as_client::jws::{check_header, verify_with, JwksFetch, JwsError};
use crate::metrics::Metrics;

fn jwks_err(detail: impl Into<String>) -> JwsError {
    JwsError::Jwks(detail.into())
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
    pub(crate) min_refresh: Duration,
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
    ) -> Result<(), JwsError> {
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
                .map_err(|e| jwks_err(e.to_string()))?;
            if resp.status != 200 {
                return Err(jwks_err(format!("HTTP {}", resp.status)));
            }
            serde_json::from_slice::<JwkSet>(&resp.body).map_err(|e| jwks_err(e.to_string()))
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
    ) -> Result<std::sync::Arc<JwkSet>, JwsError> {
        let uri = jwks_uri.ok_or_else(|| jwks_err("the AS publishes no jwks_uri"))?;
        let known = |set: &JwkSet| kid.is_none_or(|k| set.find(k).is_some());
        match self.current.load_full() {
            Some(set) if known(&set) => Ok(set),
            _ => {
                self.refresh(http, uri, timeout, metrics).await?;
                self.current.load_full().ok_or_else(|| jwks_err("no AS key set loaded"))
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

    /// [`verify_with`] against this AS's key set: fetched when none is cached or the `kid`
    /// is unknown, and once more (rate-limited) after a signature failure, should the AS
    /// have replaced a key under the same `kid`.
    pub async fn verify_jws(
        &self,
        jwt: &str,
        advertised: Option<&[String]>,
        fetch: &JwksFetch<'_>,
    ) -> Result<Map<String, Value>, JwsError> {
        let header = check_header(jwt, advertised)?;
        let set = self
            .key_set(
                header.kid.as_deref(),
                fetch.http,
                fetch.jwks_uri,
                fetch.timeout,
                fetch.metrics,
            )
            .await?;
        match verify_with(jwt, &set, advertised) {
            Err(JwsError::Signature(d)) => {
                let fresh = self
                    .refetched_since(&set, fetch.http, fetch.jwks_uri, fetch.timeout, fetch.metrics)
                    .await;
                match fresh {
                    Some(set) => verify_with(jwt, &set, advertised),
                    None => Err(JwsError::Signature(d)),
                }
            }
            other => other,
        }
    }
}
