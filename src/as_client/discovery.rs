//! AS metadata (RFC 8414 / OIDC Discovery): fetched, checked, kept, refreshed.
//!
//! Every endpoint the sidecar uses comes from here (DISC-1), never from string-building on
//! the issuer: the PAR endpoint may live on another host.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use thiserror::Error;
use url::Url;

use crate::as_client::http_client::{AsHttp, AsRequest, TransportError};
use crate::as_client::mtls_alias::{self, EndpointChoice};
use crate::config::{AsSettings, AuthMethod};
use crate::protocol::authorize::AuthorizeEndpoint;
use crate::protocol::jose::Alg;
use crate::protocol::IssuerUrl;

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("fetching {url}: {source}")]
    Transport { url: String, source: TransportError },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: not a JSON metadata document: {message}")]
    Json { url: String, message: String },
    #[error("issuer mismatch: the document says `{found}`, configured `{expected}` (DISC-2)")]
    IssuerMismatch { expected: String, found: String },
    #[error("metadata field `{field}`: {message}")]
    Field { field: &'static str, message: String },
}

impl DiscoveryError {
    pub fn label(&self) -> &'static str {
        match self {
            DiscoveryError::Transport { source, .. } => source.label(),
            DiscoveryError::Status { .. } => "http_status",
            DiscoveryError::Json { .. } => "bad_json",
            DiscoveryError::IssuerMismatch { .. } => "issuer_mismatch",
            DiscoveryError::Field { .. } => "bad_metadata",
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawMetadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    pushed_authorization_request_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    jwks_uri: Option<String>,
    #[serde(default)]
    mtls_endpoint_aliases: std::collections::HashMap<String, serde_json::Value>,
    #[serde(default)]
    request_object_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    require_pushed_authorization_requests: bool,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    require_signed_request_object: bool,
    #[serde(default)]
    id_token_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    dpop_signing_alg_values_supported: Option<Vec<String>>,
    end_session_endpoint: Option<String>,
}

/// The checked subset of AS metadata the sidecar acts on.
#[derive(Debug, Clone)]
pub struct ProviderMetadata {
    pub issuer: IssuerUrl,
    /// The authorization endpoint, pre-split once for matching the app's redirects.
    pub authorization_endpoint: AuthorizeEndpoint,
    /// Where PAR goes, already resolved against the alias policy.
    pub par_endpoint: Url,
    pub token_endpoint: Option<Url>,
    pub userinfo_endpoint: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    /// Which URL each back-channel call uses and whether it is the mTLS alias, for
    /// `check-config` and `/readyz`.
    pub endpoints: Vec<EndpointChoice>,
    pub jwks_uri: Option<Url>,
    pub require_par: bool,
    pub iss_parameter_supported: bool,
    /// JAR §10.5: the AS refuses unsigned requests; the sidecar then always sends JAR.
    pub require_signed_request_object: bool,
    /// ID tokens signed with another alg are refused, whatever their signature.
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    /// RP-initiated logout: the app's redirect there carries the client_id legitimately.
    pub end_session_endpoint: Option<AuthorizeEndpoint>,
    /// The whole document as the AS sent it: rewritten for the app's own discovery
    /// (`egress::app_discovery`).
    pub document: serde_json::Map<String, serde_json::Value>,
}

fn https_url(field: &'static str, v: &str) -> Result<Url, DiscoveryError> {
    let u = Url::parse(v).map_err(|e| DiscoveryError::Field {
        field,
        message: format!("`{v}` is not a URL: {e}"),
    })?;
    if u.scheme() != "https" {
        return Err(DiscoveryError::Field {
            field,
            message: format!("`{v}` is not https"),
        });
    }
    Ok(u)
}

impl ProviderMetadata {
    /// Parses and checks a metadata document against the configuration.
    pub fn from_json(body: &[u8], settings: &AsSettings, url: &str) -> Result<Self, DiscoveryError> {
        let raw: RawMetadata = serde_json::from_slice(body).map_err(|e| DiscoveryError::Json {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        if raw.issuer != settings.issuer.as_str() {
            return Err(DiscoveryError::IssuerMismatch {
                expected: settings.issuer.to_string(),
                found: raw.issuer,
            });
        }
        let authz = raw.authorization_endpoint.as_deref().ok_or(DiscoveryError::Field {
            field: "authorization_endpoint",
            message: "missing".into(),
        })?;
        let authorization_endpoint = https_url("authorization_endpoint", authz)?;
        // RFC 8414 §2: omitted means no PKCE; FAPI 2.0 needs S256 (§5.3.2.2).
        if !raw
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| m.iter().any(|x| x == "S256"))
        {
            return Err(DiscoveryError::Field {
                field: "code_challenge_methods_supported",
                message: "does not list S256: this AS cannot do FAPI 2.0 PKCE".into(),
            });
        }
        let par_top = raw
            .pushed_authorization_request_endpoint
            .as_deref()
            .ok_or(DiscoveryError::Field {
                field: "pushed_authorization_request_endpoint",
                message: "missing: this AS does not offer PAR (RFC 9126 §5)".into(),
            })?;
        // One rule for every back-channel call (RFC 8705 §5; `mtls_alias` module): the alias
        // when the policy takes it and the AS lists it, the top-level URL otherwise.
        let mut endpoints = Vec::new();
        let mut pick = |call: &'static str, top: Option<&str>| -> Result<Option<Url>, DiscoveryError> {
            let (raw_url, via_alias) = match mtls_alias::alias_for(settings.par_alias, &raw.mtls_endpoint_aliases, call)
            {
                Some(a) => (a, true),
                None => match top {
                    Some(t) => (t, false),
                    None => return Ok(None),
                },
            };
            let url = https_url(call, raw_url)?;
            endpoints.push(EndpointChoice {
                call,
                url: url.clone(),
                via_alias,
            });
            Ok(Some(url))
        };
        let par_endpoint =
            pick("pushed_authorization_request_endpoint", Some(par_top))?.ok_or(DiscoveryError::Field {
                field: "pushed_authorization_request_endpoint",
                message: "missing".into(),
            })?;
        let token_endpoint = pick("token_endpoint", raw.token_endpoint.as_deref())?;
        let userinfo_endpoint = pick("userinfo_endpoint", raw.userinfo_endpoint.as_deref())?;
        let introspection_endpoint = pick("introspection_endpoint", raw.introspection_endpoint.as_deref())?;
        let revocation_endpoint = pick("revocation_endpoint", raw.revocation_endpoint.as_deref())?;
        let jwks_uri = raw.jwks_uri.as_deref().map(|u| https_url("jwks_uri", u)).transpose()?;

        check_client_fits(&raw, settings)?;
        Ok(ProviderMetadata {
            issuer: settings.issuer.clone(),
            authorization_endpoint: AuthorizeEndpoint::new(authorization_endpoint),
            par_endpoint,
            token_endpoint,
            userinfo_endpoint,
            introspection_endpoint,
            revocation_endpoint,
            endpoints,
            jwks_uri,
            require_par: raw.require_pushed_authorization_requests,
            iss_parameter_supported: raw.authorization_response_iss_parameter_supported,
            require_signed_request_object: raw.require_signed_request_object,
            id_token_signing_alg_values_supported: raw.id_token_signing_alg_values_supported,
            end_session_endpoint: raw
                .end_session_endpoint
                .as_deref()
                .map(|u| https_url("end_session_endpoint", u))
                .transpose()?
                .map(AuthorizeEndpoint::new),
            document: serde_json::from_slice(body).unwrap_or_default(),
        })
    }
}

/// Whether this client can work with this AS at all: the algs it signs with and its client
/// authentication are among those the AS lists (a list that is absent does not restrict).
/// Said at discovery, because otherwise every PAR or token call would fail.
fn check_client_fits(raw: &RawMetadata, settings: &AsSettings) -> Result<(), DiscoveryError> {
    let alg = settings.client.signing_keys[0].alg;
    let request_object_alg = settings.client.request_object_key.as_ref().map_or(alg, |k| k.alg);
    check_alg(
        "request_object_signing_alg_values_supported",
        &raw.request_object_signing_alg_values_supported,
        request_object_alg,
    )?;
    if settings.client.auth_method == AuthMethod::PrivateKeyJwt {
        check_alg(
            "token_endpoint_auth_signing_alg_values_supported",
            &raw.token_endpoint_auth_signing_alg_values_supported,
            alg,
        )?;
    }
    // RFC 9449 §5.1: an AS that lists its DPoP algs refuses proofs with any other, so
    // every token call would fail; say so at discovery instead.
    if let Some(dpop) = &settings.client.dpop {
        check_alg(
            "dpop_signing_alg_values_supported",
            &raw.dpop_signing_alg_values_supported,
            dpop.alg,
        )?;
    }
    if let Some(methods) = &raw.token_endpoint_auth_methods_supported {
        let m = settings.client.auth_method.as_str();
        if !methods.iter().any(|x| x == m) {
            return Err(DiscoveryError::Field {
                field: "token_endpoint_auth_methods_supported",
                message: format!("does not list `{m}`"),
            });
        }
    }
    Ok(())
}

fn check_alg(field: &'static str, listed: &Option<Vec<String>>, alg: Alg) -> Result<(), DiscoveryError> {
    match listed {
        Some(l) if !l.iter().any(|a| alg.advertised_as(a)) => Err(DiscoveryError::Field {
            field,
            message: format!("the AS does not accept {} (it lists {})", alg.as_str(), l.join(", ")),
        }),
        _ => Ok(()),
    }
}

/// Fetches and checks the metadata once.
pub async fn fetch(http: &dyn AsHttp, settings: &AsSettings) -> Result<ProviderMetadata, DiscoveryError> {
    let url = settings.discovery_url.clone();
    let resp = http
        .send(AsRequest::get(url.clone(), settings.discovery_timeout))
        .await
        .map_err(|source| DiscoveryError::Transport {
            url: url.to_string(),
            source,
        })?;
    if resp.status != 200 {
        return Err(DiscoveryError::Status {
            url: url.to_string(),
            status: resp.status,
        });
    }
    ProviderMetadata::from_json(&resp.body, settings, url.as_str())
}

/// The last good metadata document; `None` until the first successful load (not ready).
#[derive(Default)]
pub struct DiscoveryCache {
    current: ArcSwapOption<ProviderMetadata>,
}

impl DiscoveryCache {
    pub fn get(&self) -> Option<Arc<ProviderMetadata>> {
        self.current.load_full()
    }

    pub fn set(&self, m: ProviderMetadata) {
        self.current.store(Some(Arc::new(m)));
    }
}

/// Backoff for the next attempt: quick retries until the first load, the configured
/// period afterwards.
pub fn next_delay(loaded: bool, failures: u32, period: Duration) -> Duration {
    if loaded && failures == 0 {
        period
    } else {
        let secs = 1u64 << failures.min(5);
        Duration::from_secs(secs).min(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn as_settings() -> AsSettings {
        let yaml = r#"
listen: { public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }
upstream: "127.0.0.1:3000"
authorization_server: { issuer: "https://as.example" }
client:
  client_id: app
  auth_method: private_key_jwt
  signing_key: { path: k.pem, alg: PS256 }
  transport: { cert_path: t.crt, key_path: t.key }
"#;
        Settings::from_yaml(yaml, std::path::Path::new("c.yaml"))
            .unwrap()
            .authorization_servers
            .remove(0)
    }

    fn doc(extra: serde_json::Value) -> Vec<u8> {
        let mut d = serde_json::json!({
            "issuer": "https://as.example",
            "authorization_endpoint": "https://as.example/authorize",
            "pushed_authorization_request_endpoint": "https://as.example/par",
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["PS256"],
        });
        d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::to_vec(&d).unwrap()
    }

    #[test]
    fn an_as_without_s256_pkce_or_par_is_not_usable() {
        let s = as_settings();
        let md = ProviderMetadata::from_json(&doc(serde_json::json!({})), &s, "u").unwrap();
        assert_eq!(
            md.id_token_signing_alg_values_supported.as_deref(),
            Some(&["PS256".to_string()][..])
        );
        for bad in [
            serde_json::json!({"code_challenge_methods_supported": ["plain"]}),
            serde_json::json!({"code_challenge_methods_supported": null}),
            serde_json::json!({"pushed_authorization_request_endpoint": null}),
            serde_json::json!({"issuer": "https://as.example/"}),
        ] {
            let e = ProviderMetadata::from_json(&doc(bad.clone()), &s, "u").unwrap_err();
            assert!(matches!(e.label(), "bad_metadata" | "issuer_mismatch"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_dpop_client_needs_its_proof_alg_listed_when_the_as_lists_any() {
        let mut s = as_settings();
        s.client.dpop = Some(crate::config::DpopSettings {
            key_path: None,
            alg: crate::protocol::jose::Alg::ES256,
            token_type_to_app: crate::config::TokenTypeToApp::Bearer,
        });
        let listed = |s: &AsSettings, algs: serde_json::Value| {
            ProviderMetadata::from_json(
                &doc(serde_json::json!({ "dpop_signing_alg_values_supported": algs })),
                s,
                "u",
            )
        };
        assert!(listed(&s, serde_json::json!(["ES256", "PS256"])).is_ok());
        assert!(
            listed(&s, serde_json::Value::Null).is_ok(),
            "not listed: nothing to check"
        );
        let e = listed(&s, serde_json::json!(["PS256"])).unwrap_err().to_string();
        assert!(
            e.contains("dpop_signing_alg_values_supported") && e.contains("ES256"),
            "{e}"
        );
        // Without DPoP the field is not looked at.
        s.client.dpop = None;
        assert!(listed(&s, serde_json::json!(["PS256"])).is_ok());
    }
}
