//! Client authentication at the AS (CA-1, CA-2): the `private_key_jwt` assertion each
//! back-channel call carries (pooled or signed now), or none for `tls_client_auth`; and the
//! app's own credentials taken out of a form it sends through the egress.

use std::sync::Arc;

use thiserror::Error;

use crate::as_client::assertion_pool::AssertionPool;
use crate::as_client::jose::SigningKey;
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::{now_secs, CLIENT_ASSERTION_TYPE};
use crate::as_client::signing::{sign_all, JwtToSign, SigningFailed};
use crate::config::AuthMethod;
use crate::metrics::Metrics;

/// Why a call could not be given the client's authentication.
#[derive(Debug, Error)]
pub enum ClientAuthError {
    /// The assertion could not be signed (the key, or the signing threads gone).
    #[error("signing failed")]
    Signing,
}

impl From<SigningFailed> for ClientAuthError {
    fn from(_: SigningFailed) -> Self {
        ClientAuthError::Signing
    }
}

/// Form parameters that authenticate a client (RFC 6749 §2.3, RFC 7523 §2.2) or name it:
/// what the app sent is never forwarded, the AS gets this client's own (CA-1/TOK-1).
const CREDENTIAL_PARAMS: [&str; 4] = [
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "client_id",
];

/// Takes every client credential (and `client_id`) out of a form, the app's or an
/// earlier attempt's, so that exactly one client authentication goes out.
pub fn strip_credentials(form: &mut Vec<(String, String)>) {
    form.retain(|(k, _)| !CREDENTIAL_PARAMS.contains(&k.as_str()));
}

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

impl AsClient {
    /// A fresh `private_key_jwt` assertion (new `jti`) for one back-channel call with
    /// `key`, or `None` for `tls_client_auth`.
    pub async fn fresh_client_assertion(
        &self,
        key: Arc<SigningKey>,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<String>, ClientAuthError> {
        if self.settings.client.auth_method != AuthMethod::PrivateKeyJwt {
            return Ok(None);
        }
        match next_assertion(&self.assertions, key, metrics, self.name()) {
            NextAssertion::Pooled(jwt) => Ok(Some(jwt)),
            NextAssertion::Sign(jwt) => Ok(sign_all(vec![jwt], metrics.clone()).await?.pop()),
        }
    }

    /// The client authentication form parameters for one back-channel call to this AS
    /// (token, introspection, revocation): its client_id and, for private_key_jwt, a fresh
    /// assertion signed with the active key (CA-1: exactly one mechanism).
    pub async fn client_auth(&self, metrics: &Arc<Metrics>) -> Result<Vec<(String, String)>, ClientAuthError> {
        let mut form = vec![(
            "client_id".to_string(),
            self.settings.client.client_id.as_str().to_string(),
        )];
        let key = self.keys.load().active().clone();
        if let Some(a) = self.fresh_client_assertion(key, metrics).await? {
            form.push(("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()));
            form.push(("client_assertion".into(), a));
        }
        Ok(form)
    }

    /// What an egress form gets: any credentials in it (the app's, or a refused attempt's
    /// assertion) out, this client's authentication in.
    pub async fn authenticate_form(
        &self,
        form: &mut Vec<(String, String)>,
        metrics: &Arc<Metrics>,
    ) -> Result<(), ClientAuthError> {
        strip_credentials(form);
        form.extend(self.client_auth(metrics).await?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_and_the_client_id_are_stripped() {
        let mut form: Vec<(String, String)> = [
            ("grant_type", "authorization_code"),
            ("client_id", "app"),
            ("client_secret", "s"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "a.b.c"),
            ("code", "c"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        strip_credentials(&mut form);
        let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["grant_type", "code"]);
    }
}
