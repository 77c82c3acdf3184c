//! One call to the AS or a resource server through the HTTP seam, with DPoP (RFC 9449) when
//! the client binds tokens: a fresh proof per attempt (new `jti`), one answer to a nonce
//! challenge (with a fresh client assertion when the call carries one), nonces remembered
//! per origin from any response, and one retry with the previous key for a token bound to
//! it. Proofs are never logged.

use std::sync::Arc;

use thiserror::Error;
use tracing::warn;

use crate::as_client::dpop::{self, sign_proof};
use crate::as_client::http_client::{AsHttp, AsRequest, AsResponse, TransportError};
use crate::as_client::jose::SigningKey;
use crate::as_client::registry::AsClient;
use crate::metrics::Metrics;

/// The DPoP side of one call: the keys that prove possession and the token `ath` covers.
pub struct DpopProof {
    pub key: Arc<SigningKey>,
    /// The key before the last rotation, within its grace period (userinfo and resource
    /// calls): a token issued to it is refused with the current key's proofs.
    pub previous: Option<Arc<SigningKey>>,
    /// The access token a proof's `ath` covers (userinfo and resource calls).
    pub access_token: Option<String>,
    /// The metric `route` label.
    pub route: &'static str,
}

/// Why a call got no response.
#[derive(Debug, Error)]
pub enum SendError {
    #[error(transparent)]
    Transport(TransportError),
    /// A DPoP proof, or the client assertion of a nonce retry, could not be signed.
    #[error("signing failed")]
    Signing,
}

impl AsClient {
    /// Sends one call over `http` (this client's, or the one with the previous transport
    /// certificate). With `dpop`, signs a proof per attempt and answers one nonce challenge.
    pub async fn send(
        &self,
        http: &dyn AsHttp,
        dpop: Option<&DpopProof>,
        call: AsRequest,
        metrics: &Arc<Metrics>,
    ) -> Result<AsResponse, SendError> {
        let Some(d) = dpop else {
            return http.send(call).await.map_err(SendError::Transport);
        };
        let result = self.send_with_key(d, &d.key, http, call.clone(), metrics).await;
        // A token bound to the key we rotated away from: the server refuses the new key's
        // proof as `invalid_token`. Prove possession of the previous key once, within its grace.
        if let (Some(prev), Ok(resp)) = (&d.previous, &result) {
            if resp.status == 401 && dpop::dpop_challenge_error(&resp.headers).as_deref() == Some("invalid_token") {
                metrics
                    .dpop_previous_key_retries
                    .with_label_values(&[self.name(), d.route])
                    .inc();
                return self.send_with_key(d, prev, http, call, metrics).await;
            }
        }
        result
    }

    async fn send_with_key(
        &self,
        d: &DpopProof,
        key: &Arc<SigningKey>,
        http: &dyn AsHttp,
        mut call: AsRequest,
        metrics: &Arc<Metrics>,
    ) -> Result<AsResponse, SendError> {
        let name = self.name();
        self.add_proof(d, key, &mut call, metrics).await?;
        let first = http.send(call.clone()).await.map_err(SendError::Transport)?;
        let nonce = self.dpop_nonces.remember(&call.url, &first.headers);
        if !dpop::is_nonce_challenge(first.status, &first.headers, &first.body) {
            count_refusal(metrics, name, d.route, &first);
            return Ok(first);
        }
        if nonce.is_none() {
            metrics
                .dpop_errors
                .with_label_values(&[name, d.route, "nonce_missing"])
                .inc();
            warn!(
                r#as = name,
                route = d.route,
                "use_dpop_nonce without a usable DPoP-Nonce header"
            );
            return Ok(first);
        }
        metrics.dpop_nonce_retries.with_label_values(&[name, d.route]).inc();
        // The rejected attempt's assertion jti may be recorded by the AS: sign a new one.
        if let Some(form) = call
            .form
            .as_mut()
            .filter(|f| f.iter().any(|(k, _)| k == "client_assertion"))
        {
            if self.authenticate_form(form, metrics).await.is_err() {
                return Err(signing_failed(metrics, name, d.route));
            }
        }
        self.add_proof(d, key, &mut call, metrics).await?;
        let second = http.send(call.clone()).await.map_err(SendError::Transport)?;
        self.dpop_nonces.remember(&call.url, &second.headers);
        if dpop::is_nonce_challenge(second.status, &second.headers, &second.body) {
            metrics
                .dpop_errors
                .with_label_values(&[name, d.route, "nonce_rejected"])
                .inc();
            warn!(
                r#as = name,
                route = d.route,
                "the server refused its own DPoP nonce; not retrying again"
            );
        } else {
            count_refusal(metrics, name, d.route, &second);
        }
        Ok(second)
    }

    /// Signs a proof for this attempt (with the origin's latest nonce) and sets the header.
    async fn add_proof(
        &self,
        d: &DpopProof,
        key: &Arc<SigningKey>,
        call: &mut AsRequest,
        metrics: &Metrics,
    ) -> Result<(), SendError> {
        let name = self.name();
        let nonce = self.dpop_nonces.get(&call.url);
        let proof = sign_proof(
            key,
            &call.method,
            &call.url,
            nonce.as_deref(),
            d.access_token.as_deref(),
            metrics,
        )
        .await
        .map_err(|_| signing_failed(metrics, name, d.route))?;
        call.headers.retain(|(k, _)| k != "dpop");
        call.headers.push(("dpop".into(), proof));
        metrics.dpop_proofs.with_label_values(&[name, d.route]).inc();
        Ok(())
    }
}

/// Counts a proof or assertion that could not be signed.
fn signing_failed(metrics: &Metrics, name: &str, route: &str) -> SendError {
    metrics
        .dpop_errors
        .with_label_values(&[name, route, "signing_failed"])
        .inc();
    SendError::Signing
}

/// Counts a DPoP refusal by the server (bounded reasons, see README).
fn count_refusal(metrics: &Metrics, name: &str, route: &str, resp: &AsResponse) {
    if resp.status != 400 && resp.status != 401 {
        return;
    }
    let error = dpop::dpop_challenge_error(&resp.headers).or_else(|| dpop::body_error(&resp.body));
    if error.as_deref() == Some("invalid_dpop_proof") {
        metrics
            .dpop_errors
            .with_label_values(&[name, route, "invalid_dpop_proof"])
            .inc();
        warn!(r#as = name, route, "the server refused the sidecar's DPoP proof");
    }
}
