//! Egress calls to an AS that binds tokens with DPoP (RFC 9449): the app's `Bearer` token
//! becomes `DPoP <token>` with a proof carrying `ath`; the token call gets a proof for the
//! token URL. A fresh proof is signed for every attempt; a nonce challenge is answered once
//! (with a fresh client assertion on the token route); nonces arriving on any response are
//! remembered per origin. Proofs are never logged.

use std::sync::Arc;

use tracing::warn;

use super::route::Route;
use super::{oauth_error, EgressResponse};
use crate::as_client::dpop::{self, sign_proof};
use crate::as_client::http_client::{AsHttp, AsRequest, AsResponse, TransportError};
use crate::as_client::jose::SigningKey;
use crate::as_client::registry::AsClient;
use crate::sidecar::Sidecar;

/// How long tokens bound to a rotated-away DPoP key are still served with it (as long as
/// the previous transport certificate is kept for certificate-bound tokens).
const PREVIOUS_KEY_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The DPoP side of one egress call.
pub(super) struct DpopCall {
    key: Arc<SigningKey>,
    /// The key before the last rotation, within its grace period (userinfo and resource
    /// calls): a token issued to it is refused with the current key's proofs.
    previous: Option<Arc<SigningKey>>,
    /// The access token a proof's `ath` covers (userinfo and resource calls).
    access_token: Option<String>,
    route: &'static str,
}

/// For a DPoP client: rewrites the app's `Authorization` (userinfo, resource) and returns
/// what each attempt needs to sign its proof. `None` for mTLS clients, for introspection and
/// revocation (no proof is defined there), and for resource calls without a token.
pub(super) fn prepare(client: &AsClient, r: Route, headers: &mut Vec<(String, String)>) -> Option<DpopCall> {
    client.settings.client.dpop.as_ref()?;
    // The app holds no DPoP key: a `DPoP` header from it is never forwarded.
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("dpop"));
    let keys = client.keys.load();
    let key = keys.dpop.clone()?;
    let previous = keys
        .dpop_previous
        .as_ref()
        .filter(|(_, retired)| retired.elapsed() < PREVIOUS_KEY_GRACE)
        .map(|(k, _)| k.clone());
    let access_token = match r {
        Route::Token => None,
        Route::Userinfo | Route::Resource(_) => {
            let i = headers
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case("authorization"))?;
            let token = dpop::app_access_token(&headers[i].1)?.to_string();
            headers[i].1 = format!("DPoP {token}");
            Some(token)
        }
        Route::Introspect | Route::Revoke => return None,
    };
    Some(DpopCall {
        key,
        previous: if access_token.is_some() { previous } else { None },
        access_token,
        route: r.label(),
    })
}

fn signing_failed(state: &Sidecar, name: &str, route: &str) -> EgressResponse {
    state
        .metrics
        .dpop_errors
        .with_label_values(&[name, route, "signing_failed"])
        .inc();
    oauth_error(500, "server_error", "par-sidecar could not sign a DPoP proof".into())
}

/// Signs a proof for this attempt (with the origin's latest nonce) and sets the header.
async fn add_proof(
    state: &Sidecar,
    client: &AsClient,
    d: &DpopCall,
    key: &Arc<SigningKey>,
    call: &mut AsRequest,
) -> Result<(), EgressResponse> {
    let name = client.name();
    let nonce = client.dpop_nonces.get(&call.url);
    let proof = sign_proof(
        key,
        &call.method,
        &call.url,
        nonce.as_deref(),
        d.access_token.as_deref(),
        &state.metrics,
    )
    .await
    .map_err(|_| signing_failed(state, name, d.route))?;
    call.headers.retain(|(k, _)| k != "dpop");
    call.headers.push(("dpop".into(), proof));
    state.metrics.dpop_proofs.with_label_values(&[name, d.route]).inc();
    Ok(())
}

/// Counts a DPoP refusal by the server (bounded reasons, see README).
fn count_refusal(state: &Sidecar, name: &str, route: &str, resp: &AsResponse) {
    if resp.status != 400 && resp.status != 401 {
        return;
    }
    let error = dpop::dpop_challenge_error(&resp.headers).or_else(|| dpop::body_error(&resp.body));
    if error.as_deref() == Some("invalid_dpop_proof") {
        state
            .metrics
            .dpop_errors
            .with_label_values(&[name, route, "invalid_dpop_proof"])
            .inc();
        warn!(r#as = name, route, "the server refused the sidecar's DPoP proof");
    }
}

/// Sends one egress call; with DPoP, signs a proof per attempt and answers one nonce
/// challenge. `Err` is a response for the app when a proof or assertion could not be signed.
pub(super) async fn send(
    state: &Sidecar,
    client: &AsClient,
    dpop: Option<&DpopCall>,
    http: &dyn AsHttp,
    call: AsRequest,
) -> Result<Result<AsResponse, TransportError>, EgressResponse> {
    let Some(d) = dpop else {
        return Ok(http.send(call).await);
    };
    let result = send_with_key(state, client, d, &d.key, http, call.clone()).await?;
    // A token bound to the key we rotated away from: the server refuses the new key's proof
    // as `invalid_token`. Prove possession of the previous key once, within its grace.
    if let (Some(prev), Ok(resp)) = (&d.previous, &result) {
        if resp.status == 401 && dpop::dpop_challenge_error(&resp.headers).as_deref() == Some("invalid_token") {
            state
                .metrics
                .dpop_previous_key_retries
                .with_label_values(&[client.name(), d.route])
                .inc();
            return send_with_key(state, client, d, prev, http, call).await;
        }
    }
    Ok(result)
}

async fn send_with_key(
    state: &Sidecar,
    client: &AsClient,
    d: &DpopCall,
    key: &Arc<SigningKey>,
    http: &dyn AsHttp,
    mut call: AsRequest,
) -> Result<Result<AsResponse, TransportError>, EgressResponse> {
    let name = client.name();
    add_proof(state, client, d, key, &mut call).await?;
    let first = match http.send(call.clone()).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let nonce = client.dpop_nonces.remember(&call.url, &first.headers);
    if !dpop::is_nonce_challenge(first.status, &first.headers, &first.body) {
        count_refusal(state, name, d.route, &first);
        return Ok(Ok(first));
    }
    if nonce.is_none() {
        state
            .metrics
            .dpop_errors
            .with_label_values(&[name, d.route, "nonce_missing"])
            .inc();
        warn!(
            r#as = name,
            route = d.route,
            "use_dpop_nonce without a usable DPoP-Nonce header"
        );
        return Ok(Ok(first));
    }
    state
        .metrics
        .dpop_nonce_retries
        .with_label_values(&[name, d.route])
        .inc();
    // The rejected attempt's assertion jti may be recorded by the AS: sign a new one.
    if let Some(form) = call.form.as_mut() {
        if form.iter().any(|(k, _)| k == "client_assertion") {
            client
                .authenticate_form(form, &state.metrics)
                .await
                .map_err(|_| signing_failed(state, name, d.route))?;
        }
    }
    add_proof(state, client, d, key, &mut call).await?;
    let second = match http.send(call.clone()).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    client.dpop_nonces.remember(&call.url, &second.headers);
    if dpop::is_nonce_challenge(second.status, &second.headers, &second.body) {
        state
            .metrics
            .dpop_errors
            .with_label_values(&[name, d.route, "nonce_rejected"])
            .inc();
        warn!(
            r#as = name,
            route = d.route,
            "the server refused its own DPoP nonce; not retrying again"
        );
    } else {
        count_refusal(state, name, d.route, &second);
    }
    Ok(Ok(second))
}

/// `token_type_to_app: bearer`: the app is told `Bearer` (it keeps sending `Bearer`, the
/// egress listener turns that into DPoP). Any other field is passed as the AS sent it.
pub(super) fn token_type_for_app(client: &AsClient, body: bytes::Bytes) -> bytes::Bytes {
    use crate::config::TokenTypeToApp;
    let Some(d) = &client.settings.client.dpop else {
        return body;
    };
    if d.token_type_to_app != TokenTypeToApp::Bearer {
        return body;
    }
    let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    doc.insert("token_type".into(), "Bearer".into());
    serde_json::to_vec(&doc).map(bytes::Bytes::from).unwrap_or(body)
}
