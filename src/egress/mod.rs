//! The app's back-channel calls, rewritten: its client secret out, the configured client
//! authentication in (fresh assertion per call), the injected PKCE verifier added, sent over
//! mTLS with the transport certificate so certificate-bound tokens work (TOK-1..10, RS-1..3).
//! No pingora here: requests and responses are plain values.

mod answer;
pub mod app_auth;
pub mod app_discovery;
mod bearer;
mod client_form;
mod dpop_call;
mod exchange;
#[cfg(feature = "server")]
pub mod listener;
mod outgoing;
pub mod refusal;
pub mod resource_path;
mod route;

use bytes::Bytes;

use crate::as_client::token_check::Grant;
use crate::protocol::{AsIndex, InteractionId};
use crate::sidecar::Sidecar;
use answer::{answer, Call};
use client_form::{parse_client_form, TakenCode};
use refusal::{refuse, Refusal, RefusalKind};
use route::{ambiguous, route, AsTarget, Route};

#[derive(Debug, Clone)]
pub struct EgressRequest {
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub struct EgressResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

pub(crate) fn oauth_error(status: u16, error: &str, description: String) -> EgressResponse {
    let body = serde_json::json!({ "error": error, "error_description": description });
    EgressResponse {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    }
}

/// Parses a token-style form strictly: duplicates are an error (RFC 6749 §3.2).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.iter().any(|(x, _)| *x == k) {
            return Err(format!("parameter `{k}` appears more than once"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// Passes a valid UUID from the app on; otherwise a fresh one (XF-1).
fn interaction_id(headers: &http::HeaderMap) -> String {
    headers
        .get("x-fapi-interaction-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| uuid::Uuid::parse_str(v).is_ok_and(|u| u.get_version_num() == 4))
        .map(str::to_string)
        .unwrap_or_else(|| InteractionId::new().to_string())
}

/// Answers one call of the app on the egress listener: the app-facing discovery, or a routed
/// call taken through [`routed`]'s steps.
pub async fn handle(state: &Sidecar, req: EgressRequest) -> EgressResponse {
    if let Some(resp) = app_discovery::serve(state, &req).await {
        return resp;
    }
    let (r, target) = match route(state, &req.path) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let iid = interaction_id(&req.headers);
    match routed(state, &req, r, target, &iid).await {
        Ok(resp) | Err(resp) => resp,
    }
}

/// A routed call, one step per line: the resource URL, the app's form (and code record), the
/// AS it is for, the outgoing request, the call, the answer. Each step's `Err` is the app's
/// answer, already counted and logged.
async fn routed(
    state: &Sidecar,
    req: &EgressRequest,
    r: Route,
    target: AsTarget,
    iid: &str,
) -> Result<EgressResponse, EgressResponse> {
    let label = r.label();
    let resource = outgoing::resource_url(state, r, &req.path)
        .map_err(|refusal| refuse(state, target_name(state, target), label, iid, refusal))?;
    let (form, mut code) = app_form(state, req, r, target, iid)?;
    let as_index = attribute(state, label, target, code.as_mut(), iid)?;
    let Some(client) = state.registry.get(as_index) else {
        return Err(oauth_error(
            500,
            "server_error",
            "par-sidecar: AS index out of range".into(),
        ));
    };
    let name = client.name();
    let Some(md) = client.metadata() else {
        let desc = format!("par-sidecar has not loaded the metadata of `{name}` yet");
        return Err(refuse(
            state,
            name,
            label,
            iid,
            Refusal::new(RefusalKind::NotReady, desc),
        ));
    };
    let out = outgoing::build(req, r, &md, resource, form.is_some(), name, iid)
        .map_err(|refusal| refuse(state, name, label, iid, refusal))?;
    let url = out.url.clone();
    let field = |k: &str| {
        form.as_ref()
            .and_then(|f| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    };
    let grant_type = field("grant_type");
    // The refresh token presented: its response's ID token must name the same `sub`.
    let presented_refresh_token = field("refresh_token");
    let sent = exchange::send(state, client, r, out, form, &mut code, iid).await?;
    let grant = match (grant_type.as_deref(), code.as_ref()) {
        (Some("authorization_code"), Some(taken)) => Grant::Code(&taken.record),
        (Some("refresh_token"), _) => Grant::Refresh(presented_refresh_token.as_deref()),
        (Some("client_credentials"), _) => Grant::ClientCredentials,
        _ => Grant::Other,
    };
    let call = Call {
        state,
        client,
        md: &md,
        route: r,
        iid,
        url: &url,
        elapsed: sent.elapsed,
        grant,
    };
    Ok(answer(&call, sent.result).await)
}

/// The AS a route names, for the count of a refusal before the call is attributed; empty for
/// an unprefixed call in a multi-AS config.
fn target_name(state: &Sidecar, target: AsTarget) -> &str {
    match target {
        AsTarget::As(i) => state.registry.get(i).map(|c| c.name()).unwrap_or(""),
        AsTarget::ByCode => "",
    }
}

/// The app's form without its credentials, and the code record of an authorization_code grant.
type AppForm<'a> = (Option<Vec<(String, String)>>, Option<TakenCode<'a>>);

/// Client-authenticated endpoints: the form is parsed once; an authorization_code grant
/// takes its code record here, which also says which AS the code came from.
fn app_form<'a>(
    state: &'a Sidecar,
    req: &EgressRequest,
    r: Route,
    target: AsTarget,
    iid: &str,
) -> Result<AppForm<'a>, EgressResponse> {
    if !r.authenticates_client() {
        return Ok((None, None));
    }
    let label = r.label();
    if req.method != http::Method::POST {
        return Err(oauth_error(405, "invalid_request", format!("{label} requires POST")));
    }
    let (form, code) = parse_client_form(state, r, req)
        .map_err(|refusal| refuse(state, target_name(state, target), label, iid, refusal))?;
    Ok((Some(form), code))
}

/// Which AS the call goes to: the route's, or for an unprefixed call in a multi-AS config
/// the one its code came from. A code presented at another AS is burnt and refused.
fn attribute(
    state: &Sidecar,
    label: &str,
    target: AsTarget,
    code: Option<&mut TakenCode<'_>>,
    iid: &str,
) -> Result<AsIndex, EgressResponse> {
    match (target, code) {
        (AsTarget::As(i), Some(taken)) if taken.record.as_index != i => {
            // Burnt, not put back: a code presented at the wrong AS is suspect.
            taken.consume();
            // A code seen at another AS's callback: never sent to this AS (mix-up).
            let name = state.registry.get(i).map(|c| c.name()).unwrap_or("");
            let other = state
                .registry
                .get(taken.record.as_index)
                .map(|c| c.name())
                .unwrap_or("");
            let desc = format!("this authorization code was issued by `{other}`, not `{name}`");
            Err(refuse(
                state,
                name,
                label,
                iid,
                Refusal::new(RefusalKind::AsMismatch, desc),
            ))
        }
        (AsTarget::As(i), _) => Ok(i),
        (AsTarget::ByCode, Some(taken)) => Ok(taken.record.as_index),
        (AsTarget::ByCode, None) => Err(refuse(state, "", label, iid, ambiguous(state, label))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_form() {
        assert!(parse_form(b"a=1&a=2").is_err());
        assert!(parse_form(b"grant_type=authorization_code&code=x").is_ok());
    }

    #[test]
    fn interaction_id_passes_only_uuids() {
        let mut h = http::HeaderMap::new();
        h.insert("x-fapi-interaction-id", "not-a-uuid".parse().unwrap());
        assert_ne!(interaction_id(&h), "not-a-uuid");
        let id = uuid::Uuid::new_v4().to_string();
        h.insert("x-fapi-interaction-id", id.parse().unwrap());
        assert_eq!(interaction_id(&h), id);
    }
}
