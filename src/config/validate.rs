//! The file model ([`super::file`]) checked and turned into [`Settings`]: every error names
//! the key (and the AS) where it can be fixed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::*;

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
    u.host_str().map(crate::protocol::authorize::norm_host).ok_or_else(bad)
}

pub(super) fn validate(f: file::FileConfig, path: &Path, base: &Path) -> Result<Settings, ConfigError> {
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
    let mut profiles = Vec::with_capacity(entries.len());
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
        // The profile fills unset keys and refuses contradictions before they are read.
        let p = super::profile::for_as(
            f.profile.as_deref(),
            e.file,
            &e.client,
            f.par.request_object,
            e.name,
            &ck,
            &k,
        )
        .map_err(|r| invalid(&r.key, r.message))?;
        let (client_file, par_endpoint, request_object) = (p.client, p.par_endpoint, p.request_object);
        profiles.push(p.applied);
        let par_alias = match par_endpoint.as_deref().unwrap_or("auto") {
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
        let client = super::validate_client::validate_client(&client_file, &ck, &invalid, &resolve, &secs)?;
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
            request_object: request_object.unwrap_or(knobs.request_object),
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
    let mut allowed_grant_types = match &f.egress.allowed_grant_types {
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
    if f.egress.allowed_grant_types.is_none() {
        allowed_grant_types =
            super::profile::default_grant_types(&mut profiles, DEFAULT_GRANT_TYPES, app_secret.is_some());
    }
    // client_credentials mints TPP tokens without a user (UK, Brazil and KSA consent
    // creation): only for an app that proves itself to the egress, so that nothing else on
    // loopback (an SSRF in the app) can obtain them with the sidecar's client authentication.
    if app_secret.is_none() && allowed_grant_types.iter().any(|g| g == "client_credentials") {
        return Err(invalid(
            "egress.allowed_grant_types",
            "client_credentials needs the app to authenticate to the egress: set \
             egress.app_client_secret_sha256 or egress.app_client_secret_file"
                .into(),
        ));
    }
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
        profiles,
        multi_as,
        state_binding,
        par_required: f.par.required.unwrap_or(true),
        require_https_redirect_uri: f.par.require_https_redirect_uri.unwrap_or(true),
        login_paths: super::validate_login::login_paths(f.par.login_paths.unwrap_or_default())
            .map_err(|m| invalid("par.login_paths", m))?,
        redirect_uri_origins: f
            .par
            .redirect_uri_origins
            .unwrap_or_default()
            .iter()
            .map(|o| {
                crate::protocol::origin::ConfiguredOrigin::parse(o).map_err(|m| invalid("par.redirect_uri_origins", m))
            })
            .collect::<Result<_, _>>()?,
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
        check_all_paths: f.callback.check_all_paths.unwrap_or(false),
        code_ttl: secs("callback.code_ttl_seconds", f.callback.code_ttl_seconds, 30, 5, 600)?,
        app_redeems_before_answering: f.callback.app_redeems_before_answering.unwrap_or(true),
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
        max_connections_per_client: f.limits.max_connections_per_client.unwrap_or(0),
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
        connection_read_buffer: match f
            .limits
            .connection_read_buffer_bytes
            .unwrap_or(DEFAULT_CONNECTION_READ_BUFFER)
        {
            n @ (0 | 1024..=1_048_576) => n,
            n => {
                return Err(invalid(
                    "limits.connection_read_buffer_bytes",
                    format!("{n} is neither 0 nor within 1024..=1048576"),
                ))
            }
        },
        connection_bounds: super::validate_conn::connection_bounds(
            [
                f.limits.max_request_header_bytes,
                f.limits.admin_max_connections,
                f.limits.egress_max_connections,
            ],
            f.limits.connection_pressure_percent,
            &invalid,
        )?,
        memory_trim_interval: match f.limits.memory_trim_interval_ms.unwrap_or(1000) {
            n @ (0 | 100..=3_600_000) => Duration::from_millis(n),
            n => {
                return Err(invalid(
                    "limits.memory_trim_interval_ms",
                    format!("{n} is neither 0 nor within 100..=3600000"),
                ))
            }
        },
    })
}

/// Open public-listener connections by default, sized to the shipped manifest's 128Mi limit
/// from the worst case one connection can hold: 16 KiB of headers (the default
/// `limits.max_request_header_bytes`) in flight at a slow app measured ~68 KiB per connection.
/// 1,280 public + 128 egress + 32 admin connections x 68 KiB = 96 MiB, plus ~16 MiB idle,
/// leaves ~16 MiB for a login burst's heap (README "Connection floods").
pub const DEFAULT_MAX_CONNECTIONS: usize = 1280;

/// Idle upstream (app) connections kept. pingora's default of 128 closes and reopens
/// connections at 1,000 concurrent clients; see benches/results/latest.md.
pub const DEFAULT_UPSTREAM_KEEPALIVE_POOL: usize = 1024;

/// The public listener's per-connection read buffer (pingora's own default is 64 KiB). None:
/// pingora's HTTP/1 code reads into its own request header buffer anyway, so a read buffer in
/// front of it only copies; leaving it out saved 4 KiB per connection (~3.5 MiB peak RSS at
/// 1,000 connections) at no CPU cost (benches/results/separate-runs.md, footprint).
pub const DEFAULT_CONNECTION_READ_BUFFER: usize = 0;
