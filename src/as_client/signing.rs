//! Signing orchestration for one back-channel call's JWTs (request object, client
//! assertion): each timed, and RSA moved off the proxy's threads.

use std::sync::Arc;
use std::time::Instant;

use crate::as_client::jose::SigningKey;
use crate::metrics::Metrics;

/// A JWT could not be signed: the key failed, or the signing threads are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signing failed")]
pub struct SigningFailed;

/// One JWT to sign: its `typ` header, the metric `purpose` label, its claims.
pub(crate) struct JwtToSign {
    pub(crate) key: Arc<SigningKey>,
    pub(crate) typ: Option<&'static str>,
    pub(crate) purpose: &'static str,
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
}

/// Signs JWTs (each with its own key), timing each. RSA and P-384/P-521 signing (~0.3 ms
/// and more each) runs on the low-priority signing threads so it never stalls or starves
/// the proxy; ES256 and Ed25519 (~15 us) sign inline.
pub(crate) async fn sign_all(jwts: Vec<JwtToSign>, metrics: Arc<Metrics>) -> Result<Vec<String>, SigningFailed> {
    let slow = jwts.iter().any(|j| j.key.alg().signs_slowly());
    let work = move || -> Result<Vec<String>, SigningFailed> {
        jwts.into_iter()
            .map(|j| {
                let t = Instant::now();
                let jwt = j.key.sign_jwt(j.typ, &j.claims).map_err(|_| SigningFailed)?;
                metrics
                    .signing_duration
                    .with_label_values(&[j.key.alg().as_str(), j.purpose])
                    .observe(t.elapsed().as_secs_f64());
                Ok(jwt)
            })
            .collect()
    };
    if slow {
        super::signing_pool::run(work).await.ok_or(SigningFailed)?
    } else {
        work()
    }
}
