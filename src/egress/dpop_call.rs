//! Egress calls to an AS that binds tokens with DPoP (RFC 9449): the app's `Bearer` token
//! becomes `DPoP <token>` with a proof carrying `ath`; the token call gets a proof for the
//! token URL. The proofs, the nonce retry and the previous-key retry are
//! [`AsClient::send`]'s (`as_client::send`). Proofs are never logged.

use super::refusal::{Refusal, RefusalKind};
use super::route::Route;
use super::EgressResponse;
use crate::as_client::dpop;
use crate::as_client::http_client::{AsHttp, AsRequest, AsResponse, TransportError};
use crate::as_client::registry::AsClient;
use crate::as_client::send::{DpopProof, SendError};
use crate::sidecar::Sidecar;

/// How long tokens bound to a rotated-away DPoP key are still served with it (as long as
/// the previous transport certificate is kept for certificate-bound tokens).
const PREVIOUS_KEY_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The DPoP side of one egress call (signed and retried by [`AsClient::send`]).
pub(super) type DpopCall = DpopProof;

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

/// Sends one egress call through [`AsClient::send`]; with DPoP, a proof per attempt and one
/// nonce challenge answered. `Err` is a response for the app when a proof or assertion could
/// not be signed.
pub(super) async fn send(
    state: &Sidecar,
    client: &AsClient,
    dpop: Option<&DpopCall>,
    http: &dyn AsHttp,
    call: AsRequest,
) -> Result<Result<AsResponse, TransportError>, EgressResponse> {
    match client.send(http, dpop, call, &state.metrics).await {
        Ok(resp) => Ok(Ok(resp)),
        Err(SendError::Transport(e)) => Ok(Err(e)),
        // Counted as a DPoP error (by `AsClient::send`), not as an egress outcome.
        Err(SendError::Signing) => {
            Err(Refusal::new(RefusalKind::SigningFailed, "par-sidecar could not sign a DPoP proof").response())
        }
    }
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
