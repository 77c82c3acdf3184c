//! The request that leaves the pod for one egress call: the AS endpoint or the mapped
//! resource URL, the headers (the app's own, minus hop-by-hop ones, on userinfo and resource
//! calls), an access token moved out of the URL or form body, the method.

use bytes::Bytes;
use tracing::info;
use url::Url;

use super::refusal::{Refusal, RefusalKind};
use super::route::Route;
use super::{bearer, resource_path, EgressRequest};
use crate::as_client::discovery::ProviderMetadata;
use crate::protocol::secret::Secret;
use crate::sidecar::Sidecar;

pub(super) const HOP_BY_HOP: &[&str] = &[
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

/// What goes to the AS or resource server (the form, when there is one, travels apart: the
/// client authentication is added to it later, with the egress permit held).
pub(super) struct Outgoing {
    pub(super) url: Url,
    pub(super) method: http::Method,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Option<Bytes>,
}

/// A resource route's URL, mapped (and checked) by [`resource_path::map`]: a resource path
/// never leaves its target's base path, it is refused rather than normalised.
pub(super) fn resource_url(state: &Sidecar, r: Route, path: &str) -> Result<Option<Url>, Refusal> {
    let Route::Resource(i) = r else {
        return Ok(None);
    };
    let rr = &state.settings.resources[i];
    let rest = resource_path::strip_prefix(&rr.prefix, path).unwrap_or("");
    resource_path::map(&rr.target, rest)
        .map(Some)
        .map_err(|desc| Refusal::new(RefusalKind::BadPath, desc))
}

/// Builds the outgoing request. Userinfo and resource calls: an access token in the query or
/// a form body goes into the Authorization header, never into a URL (issue 19 item 3).
pub(super) fn build(
    req: &EgressRequest,
    r: Route,
    md: &ProviderMetadata,
    resource: Option<Url>,
    has_form: bool,
    as_name: &str,
    iid: &str,
) -> Result<Outgoing, Refusal> {
    let lifted = if r.authenticates_client() {
        None
    } else {
        let has_auth = req.headers.contains_key(http::header::AUTHORIZATION);
        let ct = req.headers.get(http::header::CONTENT_TYPE).map(|v| v.as_bytes());
        let l = bearer::lift(req.query.as_deref(), has_auth, ct, &req.body)
            .map_err(|desc| Refusal::new(RefusalKind::TokenMisplaced, desc))?;
        Some(l)
    };
    let query = match &lifted {
        Some(l) => l.query.as_deref(),
        None => req.query.as_deref(),
    };
    let label = r.label();
    let url = target_url(md, r, resource, query).ok_or_else(|| {
        Refusal::new(
            RefusalKind::NoEndpoint,
            format!("`{as_name}` publishes no {label} endpoint"),
        )
    })?;

    let mut headers: Vec<(String, String)> = vec![("x-fapi-interaction-id".into(), iid.to_string())];
    let mut body = None;
    if has_form {
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
            info!(interaction_id = %iid, r#as = as_name, route = label, "access token moved from the URL or form body into the Authorization header");
        }
    }
    // A userinfo POST whose form body held only the access token is the same request as a
    // GET (OIDC Core §5.3.1); an AS may refuse a POST without a body.
    let method = match (&lifted, r) {
        (Some(l), Route::Userinfo) if l.token.is_some() && l.body.is_empty() => http::Method::GET,
        _ => req.method.clone(),
    };
    Ok(Outgoing {
        url,
        method,
        headers,
        body,
    })
}

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
