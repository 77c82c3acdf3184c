//! Configuration: the YAML file model ([`file`]) turned into validated runtime [`Settings`].
//!
//! Every error names the file and, where YAML can tell, the line, column and key, so
//! `check-config` output points straight at the problem.

pub mod app_secret;
#[cfg(test)]
mod defaults_tests;
mod env;
pub mod file;
mod locate;
pub mod profile;
#[cfg(test)]
pub(crate) mod tests;
mod validate;
mod validate_as;
mod validate_client;
mod validate_conn;
mod validate_ctx;
mod validate_egress;
mod validate_enc;
mod validate_limits;
mod validate_login;

pub use env::expand_env;
/// Defaults the benchmark baseline (`examples/bare_pingora.rs`) shares with the sidecar.
pub use validate_limits::{DEFAULT_CONNECTION_READ_BUFFER, DEFAULT_UPSTREAM_KEEPALIVE_POOL};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::config::app_secret::{AppSecret, DEFAULT_GRANT_TYPES};
use crate::protocol::jose::Alg;
use crate::protocol::{ClientId, IssuerUrl};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: line {line}: environment variable `{var}` is not set (use ${{{var}:-default}} for a default)")]
    MissingEnv { file: String, line: usize, var: String },
    #[error("{file}: {message}")]
    Yaml { file: String, message: String },
    /// `line`: where the key (or the nearest enclosing key present) is in the file.
    #[error("{}", invalid_text(file, *line, key, message))]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
    /// Every problem of a file, in file order of the sections, one per line.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

/// `file:line: key: message`, the form compilers use, so editors and terminals link it.
fn invalid_text(file: &str, line: Option<usize>, key: &str, message: &str) -> String {
    match line {
        Some(line) => format!("{file}:{line}: `{key}`: {message}"),
        None => format!("{file}: `{key}`: {message}"),
    }
}

/// How the client authenticates to the AS. Exactly one mechanism per request (CA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    PrivateKeyJwt,
    TlsClientAuth,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
        }
    }
}

/// Whether back-channel calls go to the `mtls_endpoint_aliases` entries (RFC 8705 §5,
/// MTLS-7): `par_endpoint` in the file, applied by `as_client::mtls_alias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum AliasPolicy {
    /// Every listed alias, PAR included: the sidecar presents its certificate on every call.
    #[serde(rename = "auto")]
    Auto,
    /// The same as `Auto` (kept as a spelling: `mtls_alias`, `always`).
    #[serde(rename = "mtls_alias", alias = "always")]
    Always,
    /// PAR to the top-level URL (the pre-issue-20 private_key_jwt default, openid-client#486);
    /// the other calls keep their aliases.
    #[serde(rename = "top_level", alias = "never")]
    Never,
}

/// How access tokens are sender-constrained (FAPI 2.0 allows either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderConstraint {
    /// RFC 8705 certificate-bound tokens.
    Mtls,
    /// RFC 9449 DPoP proofs (the mTLS transport stays: tokens may be bound both ways).
    Dpop,
}

/// The `token_type` the app sees in token responses when DPoP is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenTypeToApp {
    /// Rewritten to `Bearer`: the app keeps speaking Bearer to the egress listener.
    Bearer,
    /// Passed as the AS sent it (`DPoP`).
    Dpop,
}

/// The DPoP proof key and what the app is told.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// `None`: generated in memory per process (replicas then hold different keys).
    pub key_path: Option<PathBuf>,
    pub alg: Alg,
    pub token_type_to_app: TokenTypeToApp,
}

#[derive(Debug, Clone)]
pub struct SigningKeyRef {
    pub path: PathBuf,
    pub alg: Alg,
    pub kid: Option<String>,
}

/// The configured name of an AS: metric label `as`, egress path segment `/as/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsName(String);

impl AsName {
    /// The name of the AS in the single-AS form.
    pub const DEFAULT: &'static str = "default";

    /// `^[a-z0-9][a-z0-9-]{0,31}$`: safe in a URL path, a metric label and a log field.
    pub fn new(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 32
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(AsName(s.to_string()))
        } else {
            Err(format!("`{s}` must match ^[a-z0-9][a-z0-9-]{{0,31}}$"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The effective client at one AS: the shared `client` block with that AS's overrides.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub client_id: ClientId,
    pub auth_method: AuthMethod,
    /// The first key signs; the others are published in the JWKS (rotation overlap).
    pub signing_keys: Vec<SigningKeyRef>,
    /// Signs request objects instead of the first signing key, when set (key per purpose).
    pub request_object_key: Option<SigningKeyRef>,
    pub transport_cert: PathBuf,
    pub transport_key: PathBuf,
    pub request_object_lifetime: Duration,
    pub assertion_lifetime: Duration,
    /// Pre-signed client assertions kept ready (0 = off; `client.assertion_pool`).
    pub assertion_pool: usize,
    /// Oldest `iat` a pooled assertion may have when it is used.
    pub assertion_pool_max_age: Duration,
    /// Request JARM (`response_mode=jwt`) and verify it at the callback.
    pub jarm: bool,
    pub sender_constraint: SenderConstraint,
    /// Set exactly when `sender_constraint` is DPoP.
    pub dpop: Option<DpopSettings>,
    /// `allowed_authorize_parameters`: beyond the core set, only these may be pushed.
    pub allowed_authorize_parameters: Option<Vec<String>>,
    /// JWE decryption keys (`encryption_key(s)`): empty unless the AS encrypts ID tokens.
    /// All decrypt (the `kid` picks one), so a rotated-out key keeps working while listed.
    pub encryption_keys: Vec<EncryptionKeyRef>,
    /// What the app receives as `id_token` when the AS encrypted it (`id_token_handover`).
    pub id_token_handover: IdTokenHandover,
}

/// `client.id_token_handover`: the ID token the app gets from an encrypted one. Either way
/// the sidecar decrypts and verifies it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdTokenHandover {
    /// The verified inner JWS (a legacy app knows no JWE).
    #[default]
    VerifiedJws,
    /// The JWE as the AS sent it, for an app that decrypts it itself.
    Original,
}

#[derive(Debug, Clone)]
pub struct EncryptionKeyRef {
    pub path: PathBuf,
    pub alg: crate::protocol::jose::KeyAlg,
    pub kid: Option<String>,
}

/// Everything one AS's client code needs, self-contained: the AS, the effective client and
/// copies of the sidecar-wide knobs that govern calls to it.
#[derive(Debug, Clone)]
pub struct AsSettings {
    pub name: AsName,
    pub issuer: IssuerUrl,
    pub discovery_url: Url,
    pub ca_file: Option<PathBuf>,
    pub discovery_refresh: Duration,
    pub par_alias: AliasPolicy,
    /// Normalised hosts the authorize endpoint may be on besides the issuer's
    /// (`authorize_hosts`): held back while the metadata is not loaded.
    pub authorize_hosts: Vec<String>,
    pub client: ClientSettings,
    pub request_object: bool,
    /// The AS's profile says it encrypts ID tokens (Singpass, Corppass): a plain one is
    /// refused (`jwe_required`).
    pub id_token_encrypted: bool,
    pub connect_timeout: Duration,
    pub par_timeout: Duration,
    pub discovery_timeout: Duration,
    pub max_as_response_bytes: usize,
}

/// A resource-server route on the egress listener.
#[derive(Debug, Clone)]
pub struct ResourceRoute {
    pub prefix: String,
    pub target: Url,
    /// Index into `Settings::authorization_servers`: whose certificate the call presents.
    pub authorization_server: usize,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub source: PathBuf,
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub upstream: SocketAddr,
    /// At least one; a single-AS config is one entry named `default`.
    pub authorization_servers: Vec<AsSettings>,
    /// Per AS, same order: its ecosystem profile and the defaults it filled (check-config).
    pub profiles: Vec<profile::Applied>,
    /// True for the `authorization_servers` form: unprefixed egress routes are then refused
    /// unless the code names the AS.
    pub multi_as: bool,
    /// Bound into the sealed state's AAD: the shared `client.client_id` (single-AS configs
    /// keep their states valid across the upgrade), else the first AS's client_id.
    pub state_binding: String,
    pub par_required: bool,
    pub require_https_redirect_uri: bool,
    /// `par.login_paths`: only redirects answering these request paths start a login.
    pub login_paths: Vec<String>,
    /// `par.redirect_uri_origins`: where a pushed redirect_uri may be (else the request's origin).
    pub redirect_uri_origins: Vec<crate::protocol::origin::ConfiguredOrigin>,
    pub max_location_bytes: usize,
    pub login_starts_per_second: u32,
    pub login_starts_per_client_per_minute: u32,
    /// Lower-case header name, validated as an HTTP header name.
    pub client_address_header: Option<String>,
    pub log_json: bool,
    pub log_level: String,
    pub grace_period: Duration,
    pub egress_addr: Option<SocketAddr>,
    pub egress_max_body: usize,
    /// grant_type values the egress token route forwards; anything else is refused.
    pub allowed_grant_types: Vec<String>,
    /// When set, the app must present this client secret on the egress token,
    /// introspection and revocation routes.
    pub app_secret: Option<AppSecret>,
    pub resources: Vec<ResourceRoute>,
    pub callback_paths: Vec<String>,
    /// Treat every path as a possible callback (`callback.check_all_paths`): for apps whose
    /// router sends unexpected paths to the redirect_uri handler.
    pub check_all_paths: bool,
    /// How long a checked code waits in the code map for the app's token call.
    pub code_ttl: Duration,
    /// The app redeems a code before it answers its callback: an unredeemed one is
    /// withdrawn when the app answers, whatever the status.
    pub app_redeems_before_answering: bool,
    pub require_iss: bool,
    pub state_key_path: Option<PathBuf>,
    pub state_max_age: Duration,
    pub reload_interval: Duration,
    pub browser_binding: bool,
    pub cookie_secure: bool,
    pub par_timeout: Duration,
    pub discovery_timeout: Duration,
    /// Seconds of clock skew tolerated on ID token times.
    pub clock_skew: u64,
    /// Open public-listener connections allowed; 0 means no limit.
    pub max_connections: usize,
    /// 0: no per-client cap (see `conn::client_connections`).
    pub max_connections_per_client: u32,
    /// Total deadline for a new connection's first request headers.
    pub first_request_headers_timeout: Duration,
    /// pingora's `upstream_keepalive_pool_size` (idle connections to the app).
    pub upstream_keepalive_pool: usize,
    /// Public listener's per-connection read buffer, bytes; 0: unbuffered.
    pub connection_read_buffer: usize,
    /// Period of the free-heap check that returns memory after a burst; zero: never.
    pub memory_trim_interval: Duration,
    /// Header size cap, fair sharing and the admin/egress caps (`conn::connections`).
    pub connection_bounds: ConnectionBounds,
    /// `public_jwks_path`: GET/HEAD there on the public listener answers the client JWKS.
    pub public_jwks_path: Option<String>,
}

/// What bounds every connection beyond the public cap (issue 18 item 2): validated from
/// `limits.*` by `validate_conn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionBounds {
    /// A request's header bytes at most (every listener).
    pub max_request_header_bytes: usize,
    /// Fair sharing between client addresses above this percentage of the cap; 100: never.
    pub pressure_percent: u8,
    pub admin_max_connections: usize,
    pub egress_max_connections: usize,
}

impl Settings {
    /// Reads, expands `${ENV}`, parses and validates. Does not touch keys or the network;
    /// the one other file it reads is `egress.app_client_secret_file`.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let file = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let expanded = expand_env(&raw, &|k| std::env::var(k).ok()).map_err(|(line, var)| ConfigError::MissingEnv {
            file: file.clone(),
            line,
            var,
        })?;
        Self::from_yaml(&expanded, path)
    }

    pub fn from_yaml(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let file = path.display().to_string();
        let parsed: file::FileConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate::validate(parsed, path, base).map_err(|mut errors| {
            let lines = locate::KeyLines::index(text);
            for e in &mut errors {
                if let ConfigError::Invalid { key, line, .. } = e {
                    *line = lines.line(key);
                }
            }
            match errors.len() {
                1 => errors.remove(0),
                _ => ConfigError::Several(errors),
            }
        })
    }

    /// The AS by configured name.
    pub fn as_index(&self, name: &str) -> Option<usize> {
        self.authorization_servers.iter().position(|a| a.name.as_str() == name)
    }
}
