//! Client authentication at the AS (CA-1, CA-2): the `private_key_jwt` assertion each
//! back-channel call carries (pooled or signed now), or none for `tls_client_auth`.

use std::sync::Arc;

use crate::as_client::assertion_pool::AssertionPool;
use crate::as_client::jose::SigningKey;
use crate::as_client::par::ParError;
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::{now_secs, CLIENT_ASSERTION_TYPE};
use crate::as_client::signing::{sign_all, JwtToSign};
use crate::config::AuthMethod;
use crate::metrics::Metrics;

/// Where one call's client assertion comes from.
pub(crate) enum NextAssertion {
    /// Pre-signed, taken from the pool (used once).
    Pooled(String),
    /// To sign now, with the rest of the call's JWTs.
    Sign(JwtToSign),
}

/// The one place a `private_key_jwt` assertion is chosen for a back-channel call (PAR,
/// token, revocation, DPoP nonce retries): a fresh pooled one signed with `key` when there
/// is one, else new claims to sign inline. Either way a new `jti` (CA-2), and the pool's
/// background refill is started (never waited for).
pub(crate) fn next_assertion(
    pool: &Arc<AssertionPool>,
    key: Arc<SigningKey>,
    metrics: &Arc<Metrics>,
    as_name: &str,
) -> NextAssertion {
    let (pooled, discarded) = pool.take(&key);
    if discarded.stale > 0 {
        metrics
            .assertion_pool_discarded
            .with_label_values(&[as_name, "stale"])
            .inc_by(discarded.stale as u64);
    }
    if discarded.rotated > 0 {
        metrics
            .assertion_pool_discarded
            .with_label_values(&[as_name, "rotated"])
            .inc_by(discarded.rotated as u64);
    }
    pool.refill_in_background(key.clone(), metrics.clone());
    match pooled {
        Some(jwt) => {
            metrics.client_assertions.with_label_values(&[as_name, "pooled"]).inc();
            NextAssertion::Pooled(jwt)
        }
        None => {
            metrics.client_assertions.with_label_values(&[as_name, "inline"]).inc();
            NextAssertion::Sign(JwtToSign {
                key,
                typ: None,
                purpose: "client_assertion",
                claims: pool.claims(now_secs()),
            })
        }
    }
}

/// A fresh `private_key_jwt` assertion (new `jti`) for one back-channel call, or `None`
/// for `tls_client_auth`.
pub async fn fresh_client_assertion(
    client: &AsClient,
    key: Arc<SigningKey>,
    metrics: Arc<Metrics>,
) -> Result<Option<String>, ParError> {
    let c = &client.settings.client;
    if c.auth_method != AuthMethod::PrivateKeyJwt {
        return Ok(None);
    }
    match next_assertion(&client.assertions, key, &metrics, client.name()) {
        NextAssertion::Pooled(jwt) => Ok(Some(jwt)),
        NextAssertion::Sign(jwt) => Ok(sign_all(vec![jwt], metrics).await?.pop()),
    }
}

/// The client authentication form parameters for one back-channel call to this AS: its
/// client_id and, for private_key_jwt, a fresh assertion (CA-1: exactly one mechanism).
pub async fn client_auth_form(
    client: &AsClient,
    key: Arc<SigningKey>,
    metrics: Arc<Metrics>,
) -> Result<Vec<(String, String)>, ParError> {
    let mut form = vec![(
        "client_id".to_string(),
        client.settings.client.client_id.as_str().to_string(),
    )];
    if let Some(a) = fresh_client_assertion(client, key, metrics).await? {
        form.push(("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()));
        form.push(("client_assertion".into(), a));
    }
    Ok(form)
}
