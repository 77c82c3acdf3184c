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
#[cfg(feature = "server")]
pub mod listener;
pub mod refusal;
pub mod resource_path;
mod route;

use std::time::Instant;

use bytes::Bytes;
use tracing::info;
use url::Url;

use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::http_client::AsRequest;
use crate::as_client::token_check::Grant;
use crate::protocol::secret::Secret;
use crate::protocol::InteractionId;
use crate::sidecar::Sidecar;
use answer::{answer, Call};
use client_form::{add_client_auth, parse_client_form};
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

/// How long tokens bound to a rotated-away certificate are still served with it.
const PREVIOUS_CERT_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The AS endpoint for an AS route; for a resource route, the URL already mapped (and
/// checked) by [`resource_path::map`].
fn target_url(md: &ProviderMetadata, r: Route, resource: Option<Url>, query: Option<&str>) -> Option<Url> {
    let mut u = match r {
        Route::Token => md.token_endpoint.clone()?,
        Route::Userinfo => md.userinfo_endpoint.clone()?,
        Route::Introspect => md.introspection_endpoint.clone()?,
        Route::Revoke => md.revocation_endpoint.clone()?,
        Route::Resource(_) => resource?,
    };
    if matches!(r, Route::Resource(_) | Route::Userinfo) {
        u.set_query(query);
    }
    Some(u)
}

pub async fn handle(state: &Sidecar, req: EgressRequest) -> EgressResponse {
    if let Some(resp) = app_discovery::serve(state, &req).await {
        return resp;
    }
    let (r, target) = match route(state, &req.path) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let label = r.label();
    let m = &state.metrics;
    let iid = interaction_id(&req.headers);

    // A resource path never leaves its target's base path: refused, not normalised.
    let mut resource_url = None;
    if let Route::Resource(i) = r {
        let rr = &state.settings.resources[i];
        let rest = resource_path::strip_prefix(&rr.prefix, &req.path).unwrap_or("");
        match resource_path::map(&rr.target, rest) {
            Ok(u) => resource_url = Some(u),
            Err(desc) => {
                let name = state
                    .registry
                    .get(crate::protocol::AsIndex::new(rr.authorization_server))
                    .map(|c| c.name())
                    .unwrap_or("");
                return refuse(state, name, label, &iid, Refusal::new(RefusalKind::BadPath, desc));
            }
        }
    }

    // Client-authenticated endpoints: the form is parsed once; an authorization_code grant
    // takes its code record here, which also says which AS the code came from.
    let mut form = None;
    let mut code_record = None;
    if r.authenticates_client() {
        if req.method != http::Method::POST {
            return oauth_error(405, "invalid_request", format!("{label} requires POST"));
        }
        let (f, rec) = match parse_client_form(state, r, &req) {
            Ok(x) => x,
            Err(refusal) => {
                let name = match target {
                    AsTarget::As(i) => state.registry.get(i).map(|c| c.name()).unwrap_or(""),
                    AsTarget::ByCode => "",
                };
                return refuse(state, name, label, &iid, refusal);
            }
        };
        form = Some(f);
        code_record = rec;
    }
    let as_index = match (target, code_record.as_mut()) {
        (AsTarget::As(i), Some(taken)) if taken.record.as_index != i => {
            // Burnt, not put back: a code presented at the wrong AS is suspect.
            taken.consume();
            let rec = &taken.record;
            // A code seen at another AS's callback: never sent to this AS (mix-up).
            let name = state.registry.get(i).map(|c| c.name()).unwrap_or("");
            let other = state.registry.get(rec.as_index).map(|c| c.name()).unwrap_or("");
            let desc = format!("this authorization code was issued by `{other}`, not `{name}`");
            return refuse(state, name, label, &iid, Refusal::new(RefusalKind::AsMismatch, desc));
        }
        (AsTarget::As(i), _) => i,
        (AsTarget::ByCode, Some(taken)) => taken.record.as_index,
        (AsTarget::ByCode, None) => {
            return refuse(state, "", label, &iid, ambiguous(state, label));
        }
    };
    let Some(client) = state.registry.get(as_index) else {
        return oauth_error(500, "server_error", "par-sidecar: AS index out of range".into());
    };
    let name = client.name();
    let Some(md) = client.metadata() else {
        let desc = format!("par-sidecar has not loaded the metadata of `{name}` yet");
        return refuse(state, name, label, &iid, Refusal::new(RefusalKind::NotReady, desc));
    };
    // Userinfo and resource calls: an access token in the query or a form body goes into
    // the Authorization header, never into a URL (issue 19 item 3).
    let lifted = if r.authenticates_client() {
        None
    } else {
        let has_auth = req.headers.contains_key(http::header::AUTHORIZATION);
        let ct = req.headers.get(http::header::CONTENT_TYPE).map(|v| v.as_bytes());
        match bearer::lift(req.query.as_deref(), has_auth, ct, &req.body) {
            Ok(l) => Some(l),
            Err(desc) => {
                return refuse(
                    state,
                    name,
                    label,
                    &iid,
                    Refusal::new(RefusalKind::TokenMisplaced, desc),
                )
            }
        }
    };
    let query = match &lifted {
        Some(l) => l.query.as_deref(),
        None => req.query.as_deref(),
    };
    let Some(url) = target_url(&md, r, resource_url, query) else {
        let desc = format!("`{name}` publishes no {label} endpoint");
        return refuse(state, name, label, &iid, Refusal::new(RefusalKind::NoEndpoint, desc));
    };

    let mut headers: Vec<(String, String)> = vec![("x-fapi-interaction-id".into(), iid.clone())];
    let mut body = None;
    if form.is_some() {
        headers.push(("accept".into(), "application/json".into()));
    } else {
        // Userinfo and resource calls: the app's headers (its access token included) as
        // they are, minus hop-by-hop ones; the body untouched.
        for (k, v) in req.headers.iter() {
            if HOP_BY_HOP.contains(&k.as_str()) || k.as_str() == "x-fapi-interaction-id" {
                continue;
            }
            if let Ok(v) = v.to_str() {
                headers.push((k.as_str().to_string(), v.to_string()));
            }
        }
        let lifted_body = lifted.as_ref().map_or(&req.body, |l| &l.body);
        if !lifted_body.is_empty() {
            body = Some(lifted_body.clone());
        }
        if let Some(token) = lifted.as_ref().and_then(|l| l.token.as_ref().map(Secret::expose)) {
            if body.is_none() {
                // Nothing left of a form body: no content type for an empty body.
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
            }
            headers.push(("authorization".into(), format!("Bearer {token}")));
            info!(interaction_id = %iid, r#as = name, route = label, "access token moved from the URL or form body into the Authorization header");
        }
    }

    // Egress has its own bound per AS, apart from logins: a login flood cannot starve it.
    let Ok(Ok(_permit)) = tokio::time::timeout(client.settings.par_timeout, client.egress_permits.acquire()).await
    else {
        let desc = "par-sidecar: too many concurrent calls to the AS";
        return refuse(state, name, label, &iid, Refusal::new(RefusalKind::Overloaded, desc));
    };
    // Signed only now, with the permit held: a call turned away as overloaded costs no
    // signature (a flood of egress calls cannot keep the signer busy for nothing).
    if let Some(f) = form.as_mut() {
        if let Err(refusal) = add_client_auth(state, client, f, code_record.as_ref().map(|t| &t.record)).await {
            return refuse(state, name, label, &iid, refusal);
        }
    }
    let field = |name: &str| {
        form.as_ref()
            .and_then(|f| f.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    };
    let grant_type = field("grant_type");
    // The refresh token presented: its response's ID token must name the same `sub`.
    let presented_refresh_token = field("refresh_token");
    let started = Instant::now();
    let http = client.http.load();
    // DPoP clients: `Authorization: DPoP` and a proof per attempt (RFC 9449).
    let dpop = dpop_call::prepare(client, r, &mut headers);
    // A userinfo POST whose form body held only the access token is the same request as a
    // GET (OIDC Core §5.3.1); an AS may refuse a POST without a body.
    let method = match (&lifted, r) {
        (Some(l), Route::Userinfo) if l.token.is_some() && l.body.is_empty() => http::Method::GET,
        _ => req.method.clone(),
    };
    let call = AsRequest {
        method,
        url: url.clone(),
        headers,
        form,
        body,
        timeout: client.settings.par_timeout,
    };
    // From here the code goes to the AS: it is spent whatever the answer.
    if let Some(taken) = code_record.as_mut() {
        taken.consume();
    }
    let mut result = match dpop_call::send(state, client, dpop.as_ref(), http.as_ref().as_ref(), call.clone()).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // A token bound to the certificate we just rotated away from: the resource server says
    // 401. Present the previous certificate once, while such tokens can still be alive.
    if !r.authenticates_client() && matches!(&result, Ok(resp) if resp.status == 401) {
        if let Some(prev) = client.previous_http.load_full() {
            if prev.retired_at.elapsed() < PREVIOUS_CERT_GRACE {
                m.egress_requests
                    .with_label_values(&[name, label, "retry_previous_cert", ""])
                    .inc();
                result = match dpop_call::send(state, client, dpop.as_ref(), prev.http.as_ref().as_ref(), call).await {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
            }
        }
    }
    let elapsed = started.elapsed();
    m.egress_duration
        .with_label_values(&[name, label])
        .observe(elapsed.as_secs_f64());
    let grant = match (grant_type.as_deref(), code_record.as_ref()) {
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
        iid: &iid,
        url: &url,
        elapsed,
        grant,
    };
    answer(&call, result).await
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
