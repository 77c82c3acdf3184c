//! The egress call's answer to the app: the AS response passed back (a token response only
//! after the relying-party checks), an AS redirect refused, a transport failure as 502.

use std::sync::Arc;

use tracing::{info, warn};
use url::Url;

use super::outgoing::HOP_BY_HOP;
use super::refusal::{refuse, Refusal, RefusalKind};
use super::route::Route;
use super::{dpop_call, oauth_error, EgressResponse};
use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::http_client::{url_for_log, AsResponse, TransportError};
use crate::as_client::oauth_error::sanitize_error_code;
use crate::as_client::registry::AsClient;
use crate::as_client::token_check::Grant;
use crate::as_client::userinfo_jwt;
use crate::metrics::{EgressLabels, TokenCheckLabels};
use crate::sidecar::Sidecar;

/// One egress call that reached the AS (or failed to), for [`answer`].
pub(super) struct Call<'a> {
    pub(super) state: &'a Sidecar,
    pub(super) client: &'a Arc<AsClient>,
    pub(super) md: &'a ProviderMetadata,
    pub(super) route: Route,
    pub(super) iid: &'a str,
    pub(super) url: &'a Url,
    pub(super) elapsed: std::time::Duration,
    pub(super) grant: Grant<'a>,
}

/// The app's answer: the AS response passed back (a token response only once checked), a
/// redirect refused, a transport failure as 502; counted and logged either way.
pub(super) async fn answer(c: &Call<'_>, result: Result<AsResponse, TransportError>) -> EgressResponse {
    let (state, client, r, iid) = (c.state, c.client, c.route, c.iid);
    let (m, name, label) = (&state.metrics, client.name(), r.label());
    match result {
        Ok(resp) => {
            let as_error = if resp.status >= 400 && !matches!(r, Route::Resource(_)) {
                serde_json::from_slice::<serde_json::Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(sanitize_error_code))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            if (300..400).contains(&resp.status) && !matches!(r, Route::Resource(_)) {
                return refuse(state, name, label, iid, as_redirect(name, label, iid, resp.status));
            }
            let outcome = if resp.status < 400 { "success" } else { "as_error" };
            m.egress_request(EgressLabels {
                as_name: name,
                route: label,
                outcome,
                as_error: &as_error,
            });
            if as_error == "invalid_client" {
                // The sidecar's own credentials were refused: our fault, not the app's (TOK-10).
                warn!(interaction_id = %iid, r#as = name, route = label, "AS refused the sidecar's client authentication");
            }
            info!(
                interaction_id = %iid,
                r#as = name,
                route = label,
                url = %url_for_log(c.url),
                as_status = resp.status,
                as_error,
                latency_ms = c.elapsed.as_millis() as u64,
                "egress call"
            );
            if r == Route::Token && (200..300).contains(&resp.status) {
                let replaced = match check_token_response(state, client, c.md, c.grant, &resp.body, iid).await {
                    Ok(replaced) => replaced,
                    Err(refused) => return refused,
                };
                let mut resp = resp;
                if let Some(body) = replaced {
                    resp.body = body.into();
                }
                resp.body = dpop_call::token_type_for_app(client, resp.body);
                return pass_back(resp);
            }
            if r == Route::Userinfo && resp.status == 200 && userinfo_jwt::is_jwt(&resp.headers) {
                return userinfo_as_json(c, resp).await;
            }
            pass_back(resp)
        }
        Err(e) => {
            let desc = format!(
                "par-sidecar could not complete the call ({}); interaction id {iid}",
                e.label()
            );
            let detail = format!("egress call to {} failed: {e}", url_for_log(c.url));
            let refusal = Refusal::new(RefusalKind::of_transport(&e), desc).logged_as(detail);
            refuse(state, name, label, iid, refusal)
        }
    }
}

/// An AS route answered 3xx. Never passed on: many HTTP clients follow a `Location` and
/// re-send the body (a refresh token, the app's secret) to wherever it points, and an AS has
/// no business redirecting a back-channel call. The `Location` is not logged either.
fn as_redirect(name: &str, label: &str, iid: &str, status: u16) -> Refusal {
    let desc = format!(
        "par-sidecar refused a redirect (HTTP {status}) from `{name}` on the {label} route; interaction id {iid}"
    );
    let detail = format!("the AS answered a back-channel call with a redirect (HTTP {status}); not passed to the app");
    Refusal::new(RefusalKind::AsRedirect, desc).logged_as(detail)
}

/// Runs the token-response checks; on failure the app gets an OAuth error without any of
/// the tokens, and the tokens are revoked at the AS in the background.
async fn check_token_response(
    state: &Sidecar,
    client: &Arc<AsClient>,
    md: &ProviderMetadata,
    grant: Grant<'_>,
    body: &[u8],
    iid: &str,
) -> Result<Option<Vec<u8>>, EgressResponse> {
    let name = client.name();
    let count = |outcome: &str| {
        state.metrics.token_check(TokenCheckLabels {
            as_name: name,
            grant: grant.label(),
            outcome,
        })
    };
    match client.check_token_response(&state.check_env(), md, grant, body).await {
        Ok(replaced) => {
            count("valid");
            Ok(replaced)
        }
        Err((e, issued)) => {
            count(e.label());
            warn!(interaction_id = %iid, r#as = name, grant = grant.label(), check = e.label(), detail = %e.detail(), "token response refused; the app gets an error, not the tokens");
            client.revoke_in_background(md, state.metrics.clone(), issued, iid.to_string());
            Err(oauth_error(
                502,
                "invalid_token_response",
                format!(
                    "par-sidecar refused the token response of `{name}`: check `{}` failed; interaction id {iid}",
                    e.label()
                ),
            ))
        }
    }
}

/// A JWT userinfo response (signed, or signed then encrypted) verified and handed to the app
/// as JSON claims; refused as `invalid_token_response` naming the check, the JWT never logged.
async fn userinfo_as_json(c: &Call<'_>, mut resp: AsResponse) -> EgressResponse {
    let (state, client, iid) = (c.state, c.client, c.iid);
    let name = client.name();
    let count = |outcome: &str| {
        state.metrics.token_check(TokenCheckLabels {
            as_name: name,
            grant: "userinfo",
            outcome,
        })
    };
    match userinfo_jwt::claims_json(&state.check_env(), client, c.md, &resp.body).await {
        Ok(json) => {
            count("valid");
            resp.body = json.into();
            resp.headers.remove(http::header::CONTENT_LENGTH);
            resp.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            pass_back(resp)
        }
        Err(e) => {
            count(e.label());
            warn!(interaction_id = %iid, r#as = name, check = e.label(), "userinfo JWT refused; the app gets an error, not the claims");
            oauth_error(
                502,
                "invalid_token_response",
                format!(
                    "par-sidecar refused the userinfo response of `{name}`: check `{}` failed; interaction id {iid}",
                    e.label()
                ),
            )
        }
    }
}

/// The AS response goes back unchanged: status, body and the headers that matter.
fn pass_back(resp: AsResponse) -> EgressResponse {
    let mut headers = Vec::new();
    for (k, v) in resp.headers.iter() {
        if HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        if let Ok(v) = v.to_str() {
            headers.push((k.as_str().to_string(), v.to_string()));
        }
    }
    EgressResponse {
        status: resp.status,
        headers,
        body: resp.body,
    }
}
