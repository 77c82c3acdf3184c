//! Discovery for the app (issue 19 item 1): most OIDC client stacks take only an issuer or a
//! discovery URL (Authlib `server_metadata_url`, openid-client `discovery()`, Spring
//! `issuer-uri`, ASP.NET Core `MetadataAddress`). Pointed at the AS, they would call its
//! mTLS-only token endpoint themselves; pointed here, they get the AS's last good metadata
//! rewritten for what the *app* should do: back-channel endpoints and `jwks_uri` on this
//! egress listener, the app's own client authentication methods, nothing the sidecar does in
//! its place (PAR, mTLS aliases, DPoP, request objects). Front-channel URLs (`issuer`,
//! `authorization_endpoint`, `end_session_endpoint`) stay, so the app's redirect is still
//! recognised and its ID tokens still match.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::refusal::{refuse, Refusal, RefusalKind};
use super::{oauth_error, EgressRequest, EgressResponse};
use crate::metrics::EgressLabels;
use crate::sidecar::Sidecar;

/// Fields of the AS's document the app must not act on: the sidecar does these for it.
pub const REMOVED: &[&str] = &[
    "pushed_authorization_request_endpoint",
    "require_pushed_authorization_requests",
    "mtls_endpoint_aliases",
    "tls_client_certificate_bound_access_tokens",
    "dpop_signing_alg_values_supported",
    "request_parameter_supported",
    "request_uri_parameter_supported",
    "require_request_uri_registration",
    "require_signed_request_object",
    "request_object_signing_alg_values_supported",
    "request_object_encryption_alg_values_supported",
    "request_object_encryption_enc_values_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "introspection_endpoint_auth_signing_alg_values_supported",
    "revocation_endpoint_auth_signing_alg_values_supported",
    "authorization_signing_alg_values_supported",
    "authorization_encryption_alg_values_supported",
    "authorization_encryption_enc_values_supported",
    "registration_endpoint",
    "backchannel_authentication_endpoint",
    "backchannel_token_delivery_modes_supported",
    "backchannel_authentication_request_signing_alg_values_supported",
    "device_authorization_endpoint",
    "pushed_authorization_request_endpoint_auth_methods_supported",
];

/// Back-channel endpoints and the egress route that replaces each.
const REWRITTEN: &[(&str, &str)] = &[
    ("token_endpoint", "token"),
    ("userinfo_endpoint", "userinfo"),
    ("introspection_endpoint", "introspect"),
    ("revocation_endpoint", "revoke"),
];

/// Which document a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask<'a> {
    Metadata(Option<&'a str>),
    Jwks(Option<&'a str>),
}

fn parse(path: &str) -> Option<Ask<'_>> {
    const WELL_KNOWN: [&str; 2] = [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ];
    if WELL_KNOWN.contains(&path) {
        return Some(Ask::Metadata(None));
    }
    if path == "/jwks" {
        return Some(Ask::Jwks(None));
    }
    // RFC 8414 §3.1 path insertion: `/.well-known/oauth-authorization-server/as/<name>`.
    if let Some(name) = path
        .strip_prefix("/.well-known/oauth-authorization-server/as/")
        .or_else(|| path.strip_prefix("/.well-known/openid-configuration/as/"))
    {
        return (!name.contains('/')).then_some(Ask::Metadata(Some(name)));
    }
    let rest = path.strip_prefix("/as/")?;
    let (name, tail) = rest.split_once('/')?;
    if WELL_KNOWN.contains(&format!("/{tail}").as_str()) {
        Some(Ask::Metadata(Some(name)))
    } else if tail == "jwks" {
        Some(Ask::Jwks(Some(name)))
    } else {
        None
    }
}

/// The app-facing discovery document or JWKS, when `req` asks for one; `None` otherwise.
pub(super) async fn serve(state: &Sidecar, req: &EgressRequest) -> Option<EgressResponse> {
    let ask = parse(&req.path)?;
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Some(oauth_error(
            405,
            "invalid_request",
            "discovery documents are read with GET".into(),
        ));
    }
    let (name, jwks) = match ask {
        Ask::Metadata(n) => (n, false),
        Ask::Jwks(n) => (n, true),
    };
    let route = if jwks { "jwks" } else { "discovery" };
    let client =
        match name {
            Some(n) => state
                .settings
                .as_index(n)
                .and_then(|i| state.registry.get(crate::protocol::AsIndex::new(i))),
            None if !state.settings.multi_as => Some(state.first_as()),
            None => return Some(oauth_error(
                404,
                "not_found",
                "par-sidecar serves several authorization servers: read /as/<name>/.well-known/openid-configuration"
                    .into(),
            )),
        };
    let Some(client) = client else {
        return Some(oauth_error(
            404,
            "not_found",
            "par-sidecar egress: no configured AS by that name".into(),
        ));
    };
    let as_name = client.name();
    let not_ready = |desc: String| {
        let iid = super::interaction_id(&req.headers);
        Some(refuse(
            state,
            as_name,
            route,
            &iid,
            Refusal::new(RefusalKind::NotReady, desc),
        ))
    };
    let Some(md) = client.metadata() else {
        return not_ready(format!("par-sidecar has not loaded the metadata of `{as_name}` yet"));
    };
    let max_age = client.settings.discovery_refresh.as_secs();
    let body = if jwks {
        let http = client.http.load();
        match client
            .jwks
            .key_set(
                None,
                http.as_ref().as_ref(),
                md.jwks_uri.as_ref(),
                state.settings.discovery_timeout,
                &state.metrics,
            )
            .await
        {
            Ok(set) => serde_json::to_vec(set.as_ref()).unwrap_or_default(),
            Err(e) => return not_ready(format!("the JWKS of `{as_name}`: {e}")),
        }
    } else {
        let base = egress_base(state, &req.headers);
        let prefix = match name {
            Some(_) => format!("{base}/as/{as_name}"),
            None => base,
        };
        serde_json::to_vec(&app_document(
            &md.document,
            &prefix,
            state.settings.app_secret.is_some(),
            &state.settings.allowed_grant_types,
        ))
        .unwrap_or_default()
    };
    state.metrics.egress_request(EgressLabels {
        as_name,
        route,
        outcome: "success",
        as_error: "",
    });
    Some(EgressResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), format!("max-age={max_age}")),
        ],
        body: Bytes::from(body),
    })
}

/// The origin the app reached this listener at (its `Host`, when it is a plain authority),
/// else the configured egress address.
fn egress_base(state: &Sidecar, headers: &http::HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.parse::<http::uri::Authority>().is_ok_and(|a| a.as_str() == *h) && !h.contains('@'));
    match (host, state.settings.egress_addr) {
        (Some(h), _) => format!("http://{h}"),
        (None, Some(a)) => format!("http://{a}"),
        (None, None) => "http://127.0.0.1".into(),
    }
}

/// The AS's document rewritten for the app; `prefix` is where this AS's egress routes live.
pub fn app_document(doc: &Map<String, Value>, prefix: &str, app_secret: bool, grants: &[String]) -> Map<String, Value> {
    let mut out = doc.clone();
    for f in REMOVED {
        out.remove(*f);
    }
    for (field, route) in REWRITTEN {
        if out.contains_key(*field) {
            out.insert((*field).into(), Value::String(format!("{prefix}/{route}")));
        }
    }
    if out.contains_key("jwks_uri") {
        out.insert("jwks_uri".into(), Value::String(format!("{prefix}/jwks")));
    }
    // What the app may send on the loopback hop: its old secret (checked when configured),
    // or nothing; the sidecar authenticates to the AS in its place.
    let mut methods = vec!["client_secret_basic", "client_secret_post"];
    if !app_secret {
        methods.push("none");
    }
    let methods: Vec<Value> = methods.into_iter().map(|m| Value::String(m.into())).collect();
    for f in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        if f == "token_endpoint_auth_methods_supported" || out.contains_key(f) {
            out.insert(f.into(), Value::Array(methods.clone()));
        }
    }
    // Only the grants the egress forwards; only the query response mode (JARM is verified
    // by the sidecar and handed over as a plain query).
    if let Some(Value::Array(list)) = out.get_mut("grant_types_supported") {
        list.retain(|g| g.as_str().is_some_and(|g| grants.iter().any(|a| a == g)));
    }
    out.insert(
        "response_modes_supported".into(),
        Value::Array(vec![Value::String("query".into())]),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_document_and_the_as() {
        assert_eq!(parse("/.well-known/openid-configuration"), Some(Ask::Metadata(None)));
        assert_eq!(
            parse("/.well-known/oauth-authorization-server"),
            Some(Ask::Metadata(None))
        );
        assert_eq!(
            parse("/as/bank-a/.well-known/openid-configuration"),
            Some(Ask::Metadata(Some("bank-a")))
        );
        assert_eq!(
            parse("/.well-known/oauth-authorization-server/as/bank-a"),
            Some(Ask::Metadata(Some("bank-a")))
        );
        assert_eq!(parse("/as/bank-a/jwks"), Some(Ask::Jwks(Some("bank-a"))));
        assert_eq!(parse("/jwks"), Some(Ask::Jwks(None)));
        for p in [
            "/token",
            "/as/bank-a/token",
            "/.well-known/x",
            "/as/bank-a/.well-known/openid-configuration/x",
            "/as/",
        ] {
            assert_eq!(parse(p), None, "{p}");
        }
    }

    /// The shape of oidc-provider's FAPI 2.0 document (with mTLS aliases and DPoP).
    fn as_doc() -> Map<String, Value> {
        let mut doc = serde_json::json!({
            "issuer": "https://as.example",
            "authorization_endpoint": "https://as.example/auth",
            "end_session_endpoint": "https://as.example/session/end",
            "token_endpoint": "https://as.example/token",
            "userinfo_endpoint": "https://as.example/me",
            "introspection_endpoint": "https://as.example/token/introspection",
            "revocation_endpoint": "https://as.example/token/revocation",
            "jwks_uri": "https://as.example/jwks",
            "scopes_supported": ["openid", "email"],
            "claims_supported": ["sub", "email"],
            "id_token_signing_alg_values_supported": ["PS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "jwt", "query.jwt", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "implicit"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
            "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
            "authorization_response_iss_parameter_supported": true,
        });
        let m = doc.as_object_mut().unwrap();
        for f in REMOVED {
            m.insert((*f).into(), Value::String("present at the AS".into()));
        }
        doc.as_object().unwrap().clone()
    }

    #[test]
    fn the_document_is_rewritten_for_the_app() {
        let grants = vec!["authorization_code".to_string(), "refresh_token".to_string()];
        let d = app_document(&as_doc(), "http://127.0.0.1:7000/as/bank-a", false, &grants);
        let s = |f: &str| d.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        // Back channel: the egress routes of that AS, the JWKS from the sidecar's cache.
        assert_eq!(s("token_endpoint"), "http://127.0.0.1:7000/as/bank-a/token");
        assert_eq!(s("userinfo_endpoint"), "http://127.0.0.1:7000/as/bank-a/userinfo");
        assert_eq!(
            s("introspection_endpoint"),
            "http://127.0.0.1:7000/as/bank-a/introspect"
        );
        assert_eq!(s("revocation_endpoint"), "http://127.0.0.1:7000/as/bank-a/revoke");
        assert_eq!(s("jwks_uri"), "http://127.0.0.1:7000/as/bank-a/jwks");
        // Front channel and identity: unchanged.
        assert_eq!(s("issuer"), "https://as.example");
        assert_eq!(s("authorization_endpoint"), "https://as.example/auth");
        assert_eq!(s("end_session_endpoint"), "https://as.example/session/end");
        assert_eq!(
            d["id_token_signing_alg_values_supported"],
            serde_json::json!(["PS256", "ES256"])
        );
        assert_eq!(d["scopes_supported"], serde_json::json!(["openid", "email"]));
        assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(d["authorization_response_iss_parameter_supported"], Value::Bool(true));
        // What the app may send, and do.
        let methods = serde_json::json!(["client_secret_basic", "client_secret_post", "none"]);
        assert_eq!(d["token_endpoint_auth_methods_supported"], methods);
        assert_eq!(d["introspection_endpoint_auth_methods_supported"], methods);
        assert!(!d.contains_key("revocation_endpoint_auth_methods_supported"));
        assert_eq!(
            d["grant_types_supported"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(d["response_modes_supported"], serde_json::json!(["query"]));
        for f in REMOVED {
            assert!(!d.contains_key(*f), "{f} must be removed");
        }
        // An app secret on the loopback hop: `none` is not offered.
        let d = app_document(&as_doc(), "http://h", true, &grants);
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post"])
        );
        // Endpoints the AS does not publish are not invented.
        let mut bare = as_doc();
        bare.remove("revocation_endpoint");
        assert!(!app_document(&bare, "http://h", false, &grants).contains_key("revocation_endpoint"));
    }
}
