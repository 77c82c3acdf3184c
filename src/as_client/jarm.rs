//! JARM (JWT Secured Authorization Response Mode) verification against the AS JWKS, which
//! is fetched, cached, refreshed on an unknown `kid` and rate-limited (CB-2, CB-3).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use crate::as_client::http_client::{AsHttp, AsRequest};
use crate::ops::metrics::Metrics;

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
    pub fn code(&self) -> &'static str {
        match self {
            JarmError::Jwks(_) => "jwks_unavailable",
            _ => "jarm_invalid",
        }
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
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
    /// The AS's configured name: the metric label.
    as_name: String,
}

impl AsJwks {
    pub fn new(as_name: &str) -> Self {
        AsJwks {
            current: ArcSwapOption::empty(),
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

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let set = self.current.load_full()?;
        let jwk = match kid {
            Some(k) => set.find(k)?,
            // Without a kid, only an unambiguous single key of the right type is acceptable.
            None => {
                let fit: Vec<_> = set
                    .keys
                    .iter()
                    .filter(|j| DecodingKey::from_jwk(j).is_ok() && key_fits(j, alg))
                    .collect();
                if fit.len() != 1 {
                    return None;
                }
                fit[0]
            }
        };
        key_fits(jwk, alg).then(|| DecodingKey::from_jwk(jwk).ok()).flatten()
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
        let key = match self.find(header.kid.as_deref(), header.alg) {
            Some(k) => k,
            None => {
                self.refresh(http, uri, timeout, metrics).await?;
                self.find(header.kid.as_deref(), header.alg)
                    .ok_or_else(|| JarmError::UnknownKey(header.kid.clone()))?
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[issuer]);
        v.set_audience(&[client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = 60;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| JarmError::Invalid(e.to_string()))?;
        Ok(data.claims)
    }
}

fn key_fits(jwk: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let type_ok = matches!(
        (&jwk.algorithm, alg),
        (P::RSA(_), Algorithm::PS256)
            | (P::EllipticCurve(_), Algorithm::ES256)
            | (P::OctetKeyPair(_), Algorithm::EdDSA)
    );
    let use_ok = !matches!(
        jwk.common.public_key_use,
        Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
    );
    type_ok && use_ok
}
