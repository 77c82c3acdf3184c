//! Configuration: the YAML file model ([`file`]) turned into validated runtime [`Settings`].
//!
//! Every error names the file and, where YAML can tell, the line, column and key, so
//! `check-config` output points straight at the problem.

pub mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::as_client::jose::Alg;
use crate::egress::app_auth::{AppSecret, DEFAULT_GRANT_TYPES};
use crate::protocol::{ClientId, IssuerUrl};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: line {line}: environment variable `{var}` is not set (use ${{{var}:-default}} for a default)")]
    MissingEnv { file: String, line: usize, var: String },
    #[error("{file}: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: `{key}`: {message}")]
    Invalid { file: String, key: String, message: String },
}

/// How the client authenticates to the AS. Exactly one mechanism per request (CA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Whether the PAR call goes to the `mtls_endpoint_aliases` entry (RFC 8705 §5, MTLS-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasPolicy {
    /// Alias when mTLS is the client authentication, top-level URL otherwise.
    Auto,
    Always,
    Never,
}

/// How access tokens are sender-constrained (FAPI 2.0 allows either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderConstraint {
    /// RFC 8705 certificate-bound tokens.
    Mtls,
    /// RFC 9449 DPoP proofs (the mTLS transport stays: tokens may be bound both ways).
    Dpop,
}

/// The `token_type` the app sees in token responses when DPoP is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Request JARM (`response_mode=jwt`) and verify it at the callback.
    pub jarm: bool,
    pub sender_constraint: SenderConstraint,
    /// Set exactly when `sender_constraint` is DPoP.
    pub dpop: Option<DpopSettings>,
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
    /// True for the `authorization_servers` form: unprefixed egress routes are then refused
    /// unless the code names the AS.
    pub multi_as: bool,
    /// Bound into the sealed state's AAD: the shared `client.client_id` (single-AS configs
    /// keep their states valid across the upgrade), else the first AS's client_id.
    pub state_binding: String,
    pub par_required: bool,
    pub require_https_redirect_uri: bool,
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
    /// Total deadline for a new connection's first request headers.
    pub first_request_headers_timeout: Duration,
    /// pingora's `upstream_keepalive_pool_size` (idle connections to the app).
    pub upstream_keepalive_pool: usize,
    /// Public listener's per-connection read buffer, bytes.
    pub connection_read_buffer: usize,
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
        validate(parsed, path, base)
    }

    /// The AS by configured name.
    pub fn as_index(&self, name: &str) -> Option<usize> {
        self.authorization_servers.iter().position(|a| a.name.as_str() == name)
    }
}

/// Sidecar-wide knobs copied into every [`AsSettings`].
struct CallKnobs {
    request_object: bool,
    connect_timeout: Duration,
    par_timeout: Duration,
    discovery_timeout: Duration,
    max_as_response_bytes: usize,
}

/// One AS in file form, whichever of the two forms it came from.
struct AsEntry<'a> {
    key: String,
    name: &'a str,
    file: &'a file::AuthorizationServerFile,
    /// The effective client: the shared block, with this AS's overrides merged over it.
    client: file::ClientFile,
}

/// One `authorize_hosts` entry: a bare host name or IP (no scheme, port or path), normalised
/// like the detection's host index.
fn authorize_host(h: &str) -> Result<String, String> {
    let bad = || format!("`{h}` is not a host name (no scheme, port or path)");
    if h.is_empty() || h.contains(['/', '\\', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    let u = Url::parse(&format!("https://{h}/")).map_err(|_| bad())?;
    if u.port().is_some() || u.path() != "/" {
        return Err(bad());
    }
    u.host_str().map(crate::front::authorize::norm_host).ok_or_else(bad)
}

fn validate(f: file::FileConfig, path: &Path, base: &Path) -> Result<Settings, ConfigError> {
    let file = path.display().to_string();
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        file: file.clone(),
        key: key.to_string(),
        message,
    };
    let addr = |key: &str, v: &str| -> Result<SocketAddr, ConfigError> {
        v.parse()
            .map_err(|_| invalid(key, format!("`{v}` is not an IP:port socket address")))
    };
    let resolve = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base.join(p)
        }
    };

    let public_addr = addr("listen.public", &f.listen.public)?;
    let admin_addr = addr("listen.admin", &f.listen.admin)?;
    if public_addr == admin_addr {
        return Err(invalid(
            "listen.admin",
            "must differ from listen.public: admin endpoints never share the browser listener".into(),
        ));
    }
    // The app is in the same pod: an IP:port (or localhost:port), resolved here once rather
    // than per request.
    let upstream: SocketAddr = match f.upstream.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse(),
        None => f.upstream.parse(),
    }
    .map_err(|_| {
        invalid(
            "upstream",
            format!("`{}` is not IP:port (or localhost:port) of the app", f.upstream),
        )
    })?;

    let secs = |key: &str, v: Option<u64>, default: u64, min: u64, max: u64| {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            Err(invalid(key, format!("{v} is outside {min}..={max}")))
        } else {
            Ok(Duration::from_secs(v))
        }
    };
    let ms = |key: &str, v: Option<u64>, default: u64| {
        let v = v.unwrap_or(default);
        if v == 0 || v > 120_000 {
            Err(invalid(key, format!("{v} ms is outside 1..=120000")))
        } else {
            Ok(Duration::from_millis(v))
        }
    };
    let knobs = CallKnobs {
        request_object: f.par.request_object.unwrap_or(true),
        connect_timeout: ms("timeouts.connect_ms", f.timeouts.connect_ms, 2_000)?,
        par_timeout: ms("timeouts.par_total_ms", f.timeouts.par_total_ms, 5_000)?,
        discovery_timeout: ms("timeouts.discovery_total_ms", f.timeouts.discovery_total_ms, 5_000)?,
        max_as_response_bytes: f.limits.max_as_response_bytes.unwrap_or(256 * 1024),
    };

    // Exactly one of the two forms; the single form is the list of one named `default`.
    let entries: Vec<AsEntry> = match (&f.authorization_server, &f.authorization_servers) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "authorization_servers",
                "use either authorization_server (one AS) or authorization_servers (several), not both".into(),
            ))
        }
        (None, None) => {
            return Err(invalid(
                "authorization_server",
                "required (or authorization_servers for several ASs)".into(),
            ))
        }
        (Some(a), None) => {
            if a.name.is_some() || a.client.is_some() {
                return Err(invalid(
                    "authorization_server",
                    "`name` and `client` belong to entries of authorization_servers; the single AS is `default` and uses the top-level client block".into(),
                ));
            }
            vec![AsEntry {
                key: "authorization_server".into(),
                name: AsName::DEFAULT,
                file: a,
                client: f.client.clone(),
            }]
        }
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(invalid("authorization_servers", "lists no AS".into()));
            }
            let mut entries = Vec::with_capacity(list.len());
            for (i, a) in list.iter().enumerate() {
                let key = format!("authorization_servers[{i}]");
                let name = a
                    .name
                    .as_deref()
                    .ok_or_else(|| invalid(&format!("{key}.name"), "required".into()))?;
                entries.push(AsEntry {
                    key,
                    name,
                    file: a,
                    client: a
                        .client
                        .as_ref()
                        .map_or_else(|| f.client.clone(), |c| f.client.merged_with(c)),
                });
            }
            entries
        }
    };
    let multi_as = f.authorization_servers.is_some();
    let mut authorization_servers: Vec<AsSettings> = Vec::with_capacity(entries.len());
    for e in &entries {
        let k = |sub: &str| format!("{}.{sub}", e.key);
        // Where a client key is reported: the per-AS block in the multi form.
        let ck = |sub: &str| {
            if multi_as {
                format!("{}.client.{sub}", e.key)
            } else {
                format!("client.{sub}")
            }
        };
        let name = AsName::new(e.name).map_err(|m| invalid(&k("name"), m))?;
        if authorization_servers.iter().any(|a| a.name == name) {
            return Err(invalid(&k("name"), format!("`{name}` is used by another AS")));
        }
        let issuer = IssuerUrl::new(&e.file.issuer).map_err(|m| invalid(&k("issuer"), m))?;
        if let Some(other) = authorization_servers.iter().find(|a| a.issuer == issuer) {
            return Err(invalid(
                &k("issuer"),
                format!("`{issuer}` is also the issuer of `{}`: issuers are unique", other.name),
            ));
        }
        let discovery_url = match e.file.discovery_url.as_deref() {
            Some(u) => Url::parse(u).map_err(|err| invalid(&k("discovery_url"), err.to_string()))?,
            None => issuer.default_discovery_url(),
        };
        if discovery_url.scheme() != "https" {
            return Err(invalid(&k("discovery_url"), "must be https (TLS-1)".into()));
        }
        let par_alias = match e.file.par_endpoint.as_deref().unwrap_or("auto") {
            "auto" => AliasPolicy::Auto,
            "mtls_alias" | "always" => AliasPolicy::Always,
            "top_level" | "never" => AliasPolicy::Never,
            other => {
                return Err(invalid(
                    &k("par_endpoint"),
                    format!("`{other}` is not one of auto, mtls_alias, top_level"),
                ))
            }
        };
        let authorize_hosts = e
            .file
            .authorize_hosts
            .iter()
            .flatten()
            .map(|h| authorize_host(h).map_err(|m| invalid(&k("authorize_hosts"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let client = validate_client(&e.client, &ck, &invalid, &resolve, &secs)?;
        authorization_servers.push(AsSettings {
            name,
            issuer,
            discovery_url,
            ca_file: e.file.ca_file.as_deref().map(resolve),
            discovery_refresh: secs(
                &k("discovery_refresh_seconds"),
                e.file.discovery_refresh_seconds,
                300,
                5,
                86_400,
            )?,
            par_alias,
            authorize_hosts,
            client,
            request_object: knobs.request_object,
            connect_timeout: knobs.connect_timeout,
            par_timeout: knobs.par_timeout,
            discovery_timeout: knobs.discovery_timeout,
            max_as_response_bytes: knobs.max_as_response_bytes,
        });
    }

    let egress_addr = f
        .listen
        .egress
        .as_deref()
        .map(|v| addr("listen.egress", v))
        .transpose()?;
    if let Some(e) = egress_addr {
        if !e.ip().is_loopback() && !f.egress.allow_non_loopback.unwrap_or(false) {
            return Err(invalid(
                "listen.egress",
                "must be a loopback address: anything that reaches it acts as the OAuth client \
                 (set egress.allow_non_loopback: true to override)"
                    .into(),
            ));
        }
        if e == public_addr || e == admin_addr {
            return Err(invalid(
                "listen.egress",
                "must differ from the public and admin listeners".into(),
            ));
        }
    }
    let mut resources = Vec::new();
    for (i, r) in f.egress.resources.iter().enumerate() {
        let key = format!("egress.resources[{i}]");
        let target = Url::parse(&r.target).map_err(|e| invalid(&key, format!("target: {e}")))?;
        if target.scheme() != "https" {
            return Err(invalid(&key, "target must be https".into()));
        }
        if !r.prefix.starts_with('/')
            || ["/token", "/userinfo", "/introspect", "/revoke", "/as/"]
                .iter()
                .any(|p| r.prefix.starts_with(p))
        {
            return Err(invalid(
                &key,
                "prefix must start with / and not shadow an AS route".into(),
            ));
        }
        let authorization_server = match &r.authorization_server {
            Some(name) => authorization_servers
                .iter()
                .position(|a| a.name.as_str() == name)
                .ok_or_else(|| {
                    invalid(
                        &format!("{key}.authorization_server"),
                        format!("`{name}` is not a configured AS name"),
                    )
                })?,
            None if authorization_servers.len() == 1 => 0,
            None => {
                return Err(invalid(
                    &format!("{key}.authorization_server"),
                    "required with several ASs: the AS whose client and certificate the tokens are bound to".into(),
                ))
            }
        };
        resources.push(ResourceRoute {
            prefix: r.prefix.clone(),
            target,
            authorization_server,
        });
    }
    let allowed_grant_types = match &f.egress.allowed_grant_types {
        None => DEFAULT_GRANT_TYPES.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            if list.is_empty() {
                return Err(invalid(
                    "egress.allowed_grant_types",
                    "must not be empty (leave it out for authorization_code, refresh_token)".into(),
                ));
            }
            for g in list {
                if g.is_empty() || g.len() > 200 || g.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
                    return Err(invalid(
                        "egress.allowed_grant_types",
                        format!("`{g}` is not a grant_type value"),
                    ));
                }
            }
            list.clone()
        }
    };
    let app_secret = match (&f.egress.app_client_secret_sha256, &f.egress.app_client_secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "egress.app_client_secret_sha256",
                "set app_client_secret_sha256 or app_client_secret_file, not both".into(),
            ))
        }
        (Some(hex), None) => {
            Some(AppSecret::from_sha256_hex(hex).map_err(|m| invalid("egress.app_client_secret_sha256", m))?)
        }
        (None, Some(p)) => {
            let path = resolve(p);
            // The message never carries the content.
            let content = std::fs::read(&path).map_err(|e| {
                invalid(
                    "egress.app_client_secret_file",
                    format!("cannot read {}: {}", path.display(), e.kind()),
                )
            })?;
            Some(
                AppSecret::from_file_content(&content)
                    .map_err(|m| invalid("egress.app_client_secret_file", format!("{}: {m}", path.display())))?,
            )
        }
        (None, None) => None,
    };
    for p in &f.callback.paths {
        if !p.starts_with('/') {
            return Err(invalid("callback.paths", format!("`{p}` must start with /")));
        }
    }

    let log_format = f.logging.format.as_deref().unwrap_or("json");
    if !matches!(log_format, "json" | "text") {
        return Err(invalid("logging.format", format!("`{log_format}` is not json or text")));
    }
    let state_binding = f
        .client
        .client_id
        .clone()
        .unwrap_or_else(|| authorization_servers[0].client.client_id.as_str().to_string());

    Ok(Settings {
        source: path.to_path_buf(),
        public_addr,
        admin_addr,
        upstream,
        authorization_servers,
        multi_as,
        state_binding,
        par_required: f.par.required.unwrap_or(true),
        require_https_redirect_uri: f.par.require_https_redirect_uri.unwrap_or(true),
        max_location_bytes: f.limits.max_location_bytes.unwrap_or(16 * 1024),
        login_starts_per_second: f.limits.login_starts_per_second.unwrap_or(100),
        login_starts_per_client_per_minute: f.limits.login_starts_per_client_per_minute.unwrap_or(0),
        client_address_header: match f.limits.client_address_header {
            Some(h) => Some(
                http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| invalid("limits.client_address_header", format!("`{h}` is not a header name")))?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        },
        log_json: log_format == "json",
        log_level: f.logging.level.unwrap_or_else(|| "info".into()),
        grace_period: secs(
            "shutdown.grace_period_seconds",
            f.shutdown.grace_period_seconds,
            20,
            0,
            3600,
        )?,
        egress_addr,
        egress_max_body: f.egress.max_body_bytes.unwrap_or(1024 * 1024),
        allowed_grant_types,
        app_secret,
        resources,
        callback_paths: f.callback.paths,
        require_iss: f.callback.require_iss.unwrap_or(true),
        state_key_path: f.callback.state_key_path.as_deref().map(resolve),
        state_max_age: secs(
            "callback.state_max_age_seconds",
            f.callback.state_max_age_seconds,
            600,
            30,
            3600,
        )?,
        browser_binding: f.callback.browser_binding.unwrap_or(true),
        cookie_secure: f.callback.cookie_secure.unwrap_or(true),
        reload_interval: secs(
            "reload.check_interval_seconds",
            f.reload.check_interval_seconds,
            5,
            1,
            3600,
        )?,
        par_timeout: knobs.par_timeout,
        discovery_timeout: knobs.discovery_timeout,
        clock_skew: secs("egress.clock_skew_seconds", f.egress.clock_skew_seconds, 60, 0, 300)?.as_secs(),
        max_connections: f.limits.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        first_request_headers_timeout: ms(
            "timeouts.first_request_headers_ms",
            f.timeouts.first_request_headers_ms,
            10_000,
        )?,
        upstream_keepalive_pool: match f
            .limits
            .upstream_keepalive_pool
            .unwrap_or(DEFAULT_UPSTREAM_KEEPALIVE_POOL)
        {
            0 => return Err(invalid("limits.upstream_keepalive_pool", "must be at least 1".into())),
            n => n,
        },
        connection_read_buffer: match f.limits.connection_read_buffer_bytes.unwrap_or(4096) {
            n @ 1024..=1_048_576 => n,
            n => {
                return Err(invalid(
                    "limits.connection_read_buffer_bytes",
                    format!("{n} is outside 1024..=1048576"),
                ))
            }
        },
    })
}

/// Open public-listener connections by default. Sized to the shipped manifest's 128Mi limit:
/// measured in benches/results/latest.md (connection flood), each open connection costs a
/// few KiB with the 4 KiB read buffer, so 2,048 of them stay far below the limit even with
/// the retained heap of a 1,000-connection burst on top.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;

/// Idle upstream (app) connections kept. pingora's default of 128 closes and reopens
/// connections at 1,000 concurrent clients; see benches/results/latest.md.
pub const DEFAULT_UPSTREAM_KEEPALIVE_POOL: usize = 1024;

type Secs<'a> = dyn Fn(&str, Option<u64>, u64, u64, u64) -> Result<Duration, ConfigError> + 'a;

/// Checks one effective (merged) client block; `ck` names a key where the user can fix it.
fn validate_client(
    c: &file::ClientFile,
    ck: &dyn Fn(&str) -> String,
    invalid: &dyn Fn(&str, String) -> ConfigError,
    resolve: &dyn Fn(&str) -> PathBuf,
    secs: &Secs,
) -> Result<ClientSettings, ConfigError> {
    let required = |sub: &str| invalid(&ck(sub), "required (here or in the shared client block)".into());
    let client_id = c.client_id.as_deref().ok_or_else(|| required("client_id"))?;
    let client_id = ClientId::new(client_id).map_err(|m| invalid(&ck("client_id"), m))?;
    let auth_method = match c.auth_method.as_deref().ok_or_else(|| required("auth_method"))? {
        "private_key_jwt" => AuthMethod::PrivateKeyJwt,
        "tls_client_auth" => AuthMethod::TlsClientAuth,
        other => {
            return Err(invalid(
                &ck("auth_method"),
                format!("`{other}` is not one of private_key_jwt, tls_client_auth"),
            ))
        }
    };
    let mut key_files = c.signing_keys.clone().unwrap_or_default();
    if let Some(k) = c.signing_key.clone() {
        key_files.insert(0, k);
    }
    if key_files.is_empty() {
        return Err(invalid(
            &ck("signing_key"),
            "a signing key is required: it signs the request object (and the client assertion for private_key_jwt)"
                .into(),
        ));
    }
    let mut signing_keys = Vec::new();
    for (i, k) in key_files.iter().enumerate() {
        let alg = Alg::parse(&k.alg).ok_or_else(|| {
            invalid(
                &ck(&format!("signing_keys[{i}].alg")),
                format!("`{}` is not one of PS256, ES256, EdDSA", k.alg),
            )
        })?;
        signing_keys.push(SigningKeyRef {
            path: resolve(&k.path),
            alg,
            kid: k.kid.clone(),
        });
    }
    let request_object_key = match &c.request_object_signing_key {
        Some(k) => Some(SigningKeyRef {
            path: resolve(&k.path),
            alg: Alg::parse(&k.alg).ok_or_else(|| {
                invalid(
                    &ck("request_object_signing_key.alg"),
                    format!("`{}` is not one of PS256, ES256, EdDSA", k.alg),
                )
            })?,
            kid: k.kid.clone(),
        }),
        None => None,
    };
    let transport = c.transport.as_ref().ok_or_else(|| required("transport"))?;
    let jarm = match c.response_mode.as_deref() {
        None => false,
        Some("jwt") | Some("query.jwt") => true,
        Some(other) => {
            return Err(invalid(
                &ck("response_mode"),
                format!("`{other}` is not supported: use jwt (query.jwt), or leave it out"),
            ))
        }
    };
    let sender_constraint = match c.sender_constraint.as_deref() {
        None | Some("mtls") => SenderConstraint::Mtls,
        Some("dpop") => SenderConstraint::Dpop,
        Some(other) => {
            return Err(invalid(
                &ck("sender_constraint"),
                format!("`{other}` is not one of mtls, dpop"),
            ))
        }
    };
    if c.sender_constraint.is_none() && c.dpop.is_some() {
        // A `dpop` block with nothing choosing DPoP is almost certainly a forgotten line.
        return Err(invalid(
            &ck("sender_constraint"),
            "a `dpop` block is set: choose `sender_constraint: dpop` (or `mtls` explicitly to ignore it)".into(),
        ));
    }
    let dpop = match sender_constraint {
        SenderConstraint::Mtls => None,
        SenderConstraint::Dpop => Some(validate_dpop(
            &c.dpop.clone().unwrap_or_default(),
            ck,
            invalid,
            resolve,
        )?),
    };
    Ok(ClientSettings {
        client_id,
        auth_method,
        signing_keys,
        request_object_key,
        transport_cert: resolve(&transport.cert_path),
        transport_key: resolve(&transport.key_path),
        // FAPI 1.0 Adv / Message Signing: exp - nbf <= 3600; 300 s is the usual recommendation.
        request_object_lifetime: secs(
            &ck("request_object_lifetime_seconds"),
            c.request_object_lifetime_seconds,
            300,
            10,
            3600,
        )?,
        // RFC 7523 / UAE: short-lived, at most 5 minutes.
        assertion_lifetime: secs(
            &ck("assertion_lifetime_seconds"),
            c.assertion_lifetime_seconds,
            60,
            10,
            300,
        )?,
        jarm,
        sender_constraint,
        dpop,
    })
}

fn validate_dpop(
    d: &file::DpopFile,
    ck: &dyn Fn(&str) -> String,
    invalid: &dyn Fn(&str, String) -> ConfigError,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<DpopSettings, ConfigError> {
    let key = d.key.clone().unwrap_or(file::DpopKeyFile { path: None, alg: None });
    let alg = match (&key.alg, &key.path) {
        (Some(a), _) => Alg::parse(a)
            .ok_or_else(|| invalid(&ck("dpop.key.alg"), format!("`{a}` is not one of PS256, ES256, EdDSA")))?,
        (None, Some(_)) => {
            return Err(invalid(
                &ck("dpop.key.alg"),
                "required with `path`: PS256, ES256 or EdDSA".into(),
            ))
        }
        (None, None) => Alg::ES256,
    };
    let token_type_to_app = match d.token_type_to_app.as_deref() {
        None | Some("bearer") => TokenTypeToApp::Bearer,
        Some("dpop") => TokenTypeToApp::Dpop,
        Some(other) => {
            return Err(invalid(
                &ck("dpop.token_type_to_app"),
                format!("`{other}` is not one of bearer, dpop"),
            ))
        }
    };
    Ok(DpopSettings {
        key_path: key.path.as_deref().map(resolve),
        alg,
        token_type_to_app,
    })
}

/// Expands `${VAR}` and `${VAR:-default}` outside YAML comments. An unset variable
/// without a default is an error carrying its line, so secrets never silently become "".
pub fn expand_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match lookup(name).or_else(|| default.map(str::to_string)) {
                Some(v) => out.push_str(&v),
                None => return Err((lineno + 1, name.to_string())),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte offset where a YAML comment starts (`#` at line start or after whitespace, outside
/// quotes), or the line length.
fn comment_start(line: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"') | (None, '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_ws => return i,
            _ => {}
        }
        prev_ws = c.is_whitespace();
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen: { public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }
upstream: "127.0.0.1:3000"
authorization_server: { issuer: "https://as.example.com" }
client:
  client_id: legacy-app
  auth_method: private_key_jwt
  signing_key: { path: keys/sign.pem, alg: ES256 }
  transport: { cert_path: /etc/tls.crt, key_path: /etc/tls.key }
"#;

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let s = Settings::from_yaml(MINIMAL, Path::new("/etc/ps/config.yaml")).unwrap();
        assert!(s.par_required, "PAR must fail closed by default");
        assert!(!s.multi_as);
        let a = &s.authorization_servers[0];
        assert_eq!(a.name.as_str(), "default");
        assert_eq!(
            a.discovery_url.as_str(),
            "https://as.example.com/.well-known/openid-configuration"
        );
        assert_eq!(a.client.signing_keys[0].path, PathBuf::from("/etc/ps/keys/sign.pem"));
        assert_eq!(a.par_alias, AliasPolicy::Auto);
        assert_eq!(a.client.assertion_lifetime, Duration::from_secs(60));
        assert_eq!(s.state_binding, "legacy-app");
    }

    #[test]
    fn authorize_hosts_are_bare_hosts_normalised() {
        let with = |v: &str| {
            let text = MINIMAL.replace(
                r#"{ issuer: "https://as.example.com" }"#,
                &format!(r#"{{ issuer: "https://as.example.com", authorize_hosts: {v} }}"#),
            );
            Settings::from_yaml(&text, Path::new("c.yaml"))
        };
        let s = with(r#"["Bank.Example.", "10.0.0.1"]"#).unwrap();
        assert_eq!(s.authorization_servers[0].authorize_hosts, ["bank.example", "10.0.0.1"]);
        assert!(
            MINIMAL.contains(r#"{ issuer: "https://as.example.com" }"#),
            "the test edits this line"
        );
        for bad in [
            r#"["https://bank.example"]"#,
            r#"["bank.example/authorize"]"#,
            r#"["bank.example:8443"]"#,
            r#"["u@bank.example"]"#,
            r#"[""]"#,
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("authorize_hosts"), "{bad}: {e}");
        }
    }

    const TWO_BANKS: &str = r#"
listen: { public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }
upstream: "127.0.0.1:3000"
client:
  client_id: tpp
  auth_method: private_key_jwt
  signing_key: { path: keys/sign.pem, alg: PS256 }
  transport: { cert_path: /etc/tls.crt, key_path: /etc/tls.key }
authorization_servers:
  - name: bank-a
    issuer: https://a.example.com
    client: { client_id: tpp-at-a }
  - name: bank-b
    issuer: https://b.example.com
    client:
      auth_method: tls_client_auth
      signing_key: { path: /k/b.pem, alg: ES256 }
egress:
  resources:
    - { prefix: /rs/b/, target: "https://rs.b.example.com/", authorization_server: bank-b }
"#;

    #[test]
    fn several_ass_merge_client_overrides_over_the_shared_block() {
        let s = Settings::from_yaml(TWO_BANKS, Path::new("/etc/ps/c.yaml")).unwrap();
        assert!(s.multi_as);
        let [a, b] = &s.authorization_servers[..] else {
            panic!("two ASs")
        };
        assert_eq!((a.name.as_str(), a.client.client_id.as_str()), ("bank-a", "tpp-at-a"));
        assert_eq!(a.client.auth_method, AuthMethod::PrivateKeyJwt);
        assert_eq!(a.client.signing_keys[0].path, PathBuf::from("/etc/ps/keys/sign.pem"));
        assert_eq!((b.name.as_str(), b.client.client_id.as_str()), ("bank-b", "tpp"));
        assert_eq!(b.client.auth_method, AuthMethod::TlsClientAuth);
        assert_eq!(b.client.signing_keys.len(), 1, "keys are replaced, not appended");
        assert_eq!(b.client.signing_keys[0].path, PathBuf::from("/k/b.pem"));
        assert_eq!(b.client.transport_cert, PathBuf::from("/etc/tls.crt"));
        assert_eq!(s.resources[0].authorization_server, 1);
        assert_eq!(s.as_index("bank-b"), Some(1));
        assert_eq!(s.state_binding, "tpp");
    }

    #[test]
    fn several_ass_config_errors_name_their_key() {
        let err = |text: &str| Settings::from_yaml(text, Path::new("c.yaml")).unwrap_err().to_string();
        let e = err(&TWO_BANKS.replace("name: bank-b", "name: bank-a"));
        assert!(
            e.contains("authorization_servers[1].name") && e.contains("another AS"),
            "{e}"
        );
        let e = err(&TWO_BANKS.replace("https://b.example.com", "https://a.example.com"));
        assert!(
            e.contains("authorization_servers[1].issuer") && e.contains("unique"),
            "{e}"
        );
        let e = err(&TWO_BANKS.replace("  - name: bank-a\n    issuer", "  - issuer"));
        assert!(
            e.contains("authorization_servers[0].name") && e.contains("required"),
            "{e}"
        );
        let e = err(&TWO_BANKS.replace("name: bank-a", "name: Bank_A"));
        assert!(e.contains("authorization_servers[0].name"), "{e}");
        let e = err(&TWO_BANKS.replace(
            "authorization_servers:",
            "authorization_server: { issuer: \"https://c.example.com\" }\nauthorization_servers:",
        ));
        assert!(e.contains("not both"), "{e}");
        let e = err(&TWO_BANKS.replace(", authorization_server: bank-b", ""));
        assert!(e.contains("egress.resources[0].authorization_server"), "{e}");
        let e = err(&TWO_BANKS.replace(", authorization_server: bank-b", ", authorization_server: bank-z"));
        assert!(e.contains("bank-z"), "{e}");
        // A client key missing in both blocks names the per-AS block.
        let e = err(&TWO_BANKS.replace("  client_id: tpp\n", ""));
        assert!(e.contains("authorization_servers[1].client.client_id"), "{e}");
        // Unknown keys in a per-AS client block keep their line.
        let e = err(&TWO_BANKS.replace("client: { client_id: tpp-at-a }", "client: { clent_id: tpp-at-a }"));
        assert!(e.contains("clent_id") && e.contains("line"), "{e}");
    }

    #[test]
    fn dpop_settings_default_merge_and_validation() {
        let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
        assert_eq!(
            s.authorization_servers[0].client.sender_constraint,
            SenderConstraint::Mtls
        );
        assert!(s.authorization_servers[0].client.dpop.is_none());
        let with = |extra: &str| {
            Settings::from_yaml(
                &MINIMAL.replace("  transport:", &format!("{extra}  transport:")),
                Path::new("/etc/ps/c.yaml"),
            )
        };
        // DPoP without a key block: an in-memory ES256 key, the app told Bearer.
        let d = with("  sender_constraint: dpop\n").unwrap().authorization_servers[0]
            .client
            .dpop
            .clone()
            .unwrap();
        assert_eq!(
            (d.key_path, d.alg, d.token_type_to_app),
            (None, Alg::ES256, TokenTypeToApp::Bearer)
        );
        let d = with(
            "  sender_constraint: dpop\n  dpop: { key: { path: k/dpop.pem, alg: EdDSA }, token_type_to_app: dpop }\n",
        )
        .unwrap()
        .authorization_servers[0]
            .client
            .dpop
            .clone()
            .unwrap();
        assert_eq!(d.key_path, Some(PathBuf::from("/etc/ps/k/dpop.pem")));
        assert_eq!((d.alg, d.token_type_to_app), (Alg::EdDSA, TokenTypeToApp::Dpop));
        for (bad, key) in [
            ("  sender_constraint: bearer\n", "client.sender_constraint"),
            (
                "  sender_constraint: dpop\n  dpop: { key: { alg: RS256 } }\n",
                "client.dpop.key.alg",
            ),
            (
                "  sender_constraint: dpop\n  dpop: { key: { path: k.pem } }\n",
                "client.dpop.key.alg",
            ),
            (
                "  sender_constraint: dpop\n  dpop: { token_type_to_app: mac }\n",
                "client.dpop.token_type_to_app",
            ),
            ("  dpop: { key: { alg: ES256 } }\n", "client.sender_constraint"),
            ("  sender_constraint: dpop\n  dpop: { kee: {} }\n", "kee"),
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
        // `mtls` chosen explicitly: a shared dpop block is ignored for this AS.
        let s = with("  sender_constraint: mtls\n  dpop: { key: { alg: ES256 } }\n").unwrap();
        assert!(s.authorization_servers[0].client.dpop.is_none());
        // Per AS: the shared block's dpop settings merge under an AS's own overrides.
        let multi = TWO_BANKS
            .replace(
                "  transport: { cert_path: /etc/tls.crt",
                "  sender_constraint: mtls\n  dpop: { key: { path: /k/dpop.pem, alg: PS256 }, token_type_to_app: dpop }\n  transport: { cert_path: /etc/tls.crt",
            )
            .replace(
                "client: { client_id: tpp-at-a }",
                "client: { client_id: tpp-at-a, sender_constraint: dpop, dpop: { token_type_to_app: bearer } }",
            );
        let s = Settings::from_yaml(&multi, Path::new("/etc/ps/c.yaml")).unwrap();
        let a = s.authorization_servers[0].client.dpop.clone().unwrap();
        assert_eq!(
            a.key_path,
            Some(PathBuf::from("/k/dpop.pem")),
            "key from the shared block"
        );
        assert_eq!((a.alg, a.token_type_to_app), (Alg::PS256, TokenTypeToApp::Bearer));
        assert!(s.authorization_servers[1].client.dpop.is_none(), "bank-b stays on mTLS");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_position() {
        let bad = MINIMAL.replace("client_id: legacy-app", "client_id: legacy-app\n  clent_secret: x");
        let err = Settings::from_yaml(&bad, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(err.contains("clent_secret"), "{err}");
        assert!(err.contains("line"), "{err}");
        assert!(err.starts_with("c.yaml"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = MINIMAL.replace("alg: ES256", "alg: RS256");
        let err = Settings::from_yaml(&bad, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(err.contains("signing_keys[0].alg"), "{err}");
        let bad = MINIMAL.replace("admin: \"127.0.0.1:9090\"", "admin: \"127.0.0.1:8080\"");
        assert!(Settings::from_yaml(&bad, Path::new("c.yaml")).is_err());
        let bad = MINIMAL.replace("https://as.example.com", "http://as.example.com");
        assert!(Settings::from_yaml(&bad, Path::new("c.yaml")).is_err());
        // The single form has no name and no per-AS client: both belong to the list form.
        let bad = MINIMAL.replace(
            r#"{ issuer: "https://as.example.com" }"#,
            r#"{ issuer: "https://as.example.com", name: bank }"#,
        );
        let err = Settings::from_yaml(&bad, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(err.contains("authorization_server") && err.contains("`name`"), "{err}");
    }

    #[test]
    fn egress_grant_allowlist_and_app_secret() {
        let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
        assert_eq!(s.allowed_grant_types, ["authorization_code", "refresh_token"]);
        assert!(s.app_secret.is_none(), "no app secret unless configured");
        let with =
            |extra: &str| Settings::from_yaml(&format!("{MINIMAL}egress:\n{extra}"), Path::new("/nonexistent/c.yaml"));
        let s = with("  allowed_grant_types: [authorization_code, refresh_token, client_credentials]\n").unwrap();
        assert_eq!(s.allowed_grant_types.len(), 3);
        let e = with("  allowed_grant_types: []\n").unwrap_err().to_string();
        assert!(e.contains("egress.allowed_grant_types"), "{e}");
        let e = with("  allowed_grant_types: [\"a b\"]\n").unwrap_err().to_string();
        assert!(e.contains("egress.allowed_grant_types"), "{e}");

        let digest = "3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a";
        let s = with(&format!("  app_client_secret_sha256: \"{digest}\"\n")).unwrap();
        assert!(s.app_secret.as_ref().unwrap().verify(b"the-apps-old-secret"));
        assert!(!format!("{s:?}").contains(digest), "the digest is never printed");
        let e = with("  app_client_secret_sha256: nothex\n").unwrap_err().to_string();
        assert!(e.contains("egress.app_client_secret_sha256"), "{e}");

        let dir = std::env::temp_dir().join(format!("ps-app-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.secret"), "the-apps-old-secret\n").unwrap();
        let yaml = format!("{MINIMAL}egress:\n  app_client_secret_file: app.secret\n");
        let s = Settings::from_yaml(&yaml, &dir.join("c.yaml")).unwrap();
        assert_eq!(
            s.app_secret,
            with(&format!("  app_client_secret_sha256: \"{digest}\"\n"))
                .unwrap()
                .app_secret
        );
        std::fs::write(dir.join("empty.secret"), "").unwrap();
        let e = Settings::from_yaml(&yaml.replace("app.secret", "empty.secret"), &dir.join("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("app_client_secret_file") && e.contains("empty"), "{e}");
        let e = Settings::from_yaml(&yaml.replace("app.secret", "missing.secret"), &dir.join("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("app_client_secret_file"), "{e}");
        let e = with(&format!(
            "  app_client_secret_sha256: \"{digest}\"\n  app_client_secret_file: /x\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_expansion_with_defaults_and_missing() {
        let env = |k: &str| (k == "HOST").then(|| "as.example.com".to_string());
        assert_eq!(
            expand_env("a: https://${HOST}/x\nb: ${PORT:-443}\n", &env).unwrap(),
            "a: https://as.example.com/x\nb: 443\n"
        );
        assert_eq!(expand_env("a: 1\nb: ${NOPE}\n", &env), Err((2, "NOPE".into())));
        // Comments are left alone, quoted # is not a comment.
        assert_eq!(
            expand_env("# ${NOPE}\na: x # ${NOPE}\n", &env).unwrap(),
            "# ${NOPE}\na: x # ${NOPE}\n"
        );
        assert_eq!(
            expand_env("a: \"#${HOST}\"\n", &env).unwrap(),
            "a: \"#as.example.com\"\n"
        );
    }
}
