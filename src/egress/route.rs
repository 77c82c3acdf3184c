//! Which AS and endpoint an egress request is for: `/as/<name>/<endpoint>`, the unprefixed
//! routes (the only AS, or in a multi-AS config an authorization_code grant routed by its
//! code), or a resource prefix bound to an AS. Never guessed.

use super::refusal::{Refusal, RefusalKind};
use super::{oauth_error, EgressResponse};
use crate::protocol::AsIndex;
use crate::sidecar::Sidecar;

/// Where an egress request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Token,
    Userinfo,
    Introspect,
    Revoke,
    Resource(usize),
}

impl Route {
    pub(super) fn label(self) -> &'static str {
        match self {
            Route::Token => "token",
            Route::Userinfo => "userinfo",
            Route::Introspect => "introspection",
            Route::Revoke => "revocation",
            Route::Resource(_) => "resource",
        }
    }

    /// Endpoints that authenticate the client: the app's credentials are swapped.
    pub(super) fn authenticates_client(self) -> bool {
        matches!(self, Route::Token | Route::Introspect | Route::Revoke)
    }
}

/// Which AS an egress request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AsTarget {
    As(AsIndex),
    /// Unprefixed route in a multi-AS config: only an authorization_code grant can be
    /// attributed (by the code the sidecar saw at the callback).
    ByCode,
}

fn as_route(rest: &str) -> Option<Route> {
    match rest {
        "/token" => Some(Route::Token),
        "/userinfo" => Some(Route::Userinfo),
        "/introspect" => Some(Route::Introspect),
        "/revoke" => Some(Route::Revoke),
        _ => None,
    }
}

/// `/as/<name>/<endpoint>`, the unprefixed AS routes, or a resource prefix.
pub(super) fn route(state: &Sidecar, path: &str) -> Result<(Route, AsTarget), EgressResponse> {
    if let Some(rest) = path.strip_prefix("/as/") {
        let name = rest.split('/').next().unwrap_or("");
        let Some(i) = state.settings.as_index(name).map(AsIndex::new) else {
            return Err(oauth_error(
                404,
                "not_found",
                "par-sidecar egress: no configured AS by that name".into(),
            ));
        };
        return match as_route(&rest[name.len()..]) {
            Some(r) => Ok((r, AsTarget::As(i))),
            None => Err(oauth_error(
                404,
                "not_found",
                format!("par-sidecar egress has no route for {path}"),
            )),
        };
    }
    if let Some(r) = as_route(path) {
        return Ok((
            r,
            if state.settings.multi_as {
                AsTarget::ByCode
            } else {
                AsTarget::As(AsIndex::new(0))
            },
        ));
    }
    match state
        .settings
        .resources
        .iter()
        .position(|r| super::resource_path::strip_prefix(&r.prefix, path).is_some())
    {
        Some(i) => Ok((
            Route::Resource(i),
            AsTarget::As(AsIndex::new(state.settings.resources[i].authorization_server)),
        )),
        None => Err(oauth_error(
            404,
            "not_found",
            format!("par-sidecar egress has no route for {path}"),
        )),
    }
}

/// The refusal for an unprefixed call that cannot be attributed to one AS: never guessed.
pub(super) fn ambiguous(state: &Sidecar, label: &str) -> Refusal {
    let routes: Vec<String> = state
        .registry
        .clients
        .iter()
        .take(5)
        .map(|c| format!("/as/{}/{}", c.name(), label_path(label)))
        .collect();
    let desc = format!(
        "par-sidecar serves several authorization servers: call the per-AS route ({}{}); only an authorization_code grant may use the unprefixed /token",
        routes.join(", "),
        if state.registry.clients.len() > 5 { ", ..." } else { "" }
    );
    Refusal::new(RefusalKind::Ambiguous, desc)
}

fn label_path(label: &str) -> &str {
    match label {
        "introspection" => "introspect",
        "revocation" => "revoke",
        other => other,
    }
}
