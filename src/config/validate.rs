//! The file model ([`super::file`]) checked and turned into [`Settings`], one function per
//! section. Problems are collected, not returned at the first one: a newcomer sees every
//! error of a file in one run, each naming the key (and the AS) where it can be fixed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::validate_as::CallKnobs;
use super::validate_ctx::{Ctx, UNSET_ADDR};
use super::*;

/// The whole file; every problem found, in file order of the sections, when anything is wrong.
pub(super) fn validate(f: file::FileConfig, path: &Path, base: &Path) -> Result<Settings, Vec<ConfigError>> {
    let cx = Ctx::new(path.display().to_string(), base);
    let listen = listeners(&f, &cx);
    let timeouts = timeouts(&f.timeouts, &cx);
    let knobs = CallKnobs {
        request_object: f.par.request_object,
        connect_timeout: timeouts.connect,
        par_timeout: timeouts.par,
        discovery_timeout: timeouts.discovery,
        max_as_response_bytes: f.limits.max_as_response_bytes.unwrap_or(DEFAULT_MAX_AS_RESPONSE_BYTES),
    };
    let multi_as = f.authorization_servers.is_some();
    let entries = super::validate_as::entries(&f, &cx);
    let (authorization_servers, mut profiles) =
        super::validate_as::authorization_servers(&entries, f.profile.as_deref(), multi_as, &knobs, &cx);
    let as_names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    let egress = super::validate_egress::egress(&f.egress, &as_names, &mut profiles, &cx);
    let state_binding = f.client.client_id.clone().unwrap_or_else(|| {
        authorization_servers
            .first()
            .map_or_else(String::new, |a| a.client.client_id.as_str().to_string())
    });
    let par = par(f.par, &cx);
    let callback = callback(f.callback, &cx);
    let limits = super::validate_limits::limits(f.limits, &cx);
    let ops = ops(f.logging, &f.shutdown, &f.reload, &cx);
    let public_jwks_path = cx.take(super::validate_enc::public_jwks_path(
        f.public_jwks_path.as_deref(),
        &callback.paths,
        &|k, m| cx.invalid(k, m),
    ));
    let problems = cx.into_problems();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        source: path.to_path_buf(),
        public_addr: listen.public,
        admin_addr: listen.admin,
        upstream: listen.upstream,
        authorization_servers,
        profiles,
        multi_as,
        state_binding,
        par_required: par.required,
        require_https_redirect_uri: par.require_https_redirect_uri,
        login_paths: par.login_paths,
        redirect_uri_origins: par.redirect_uri_origins,
        max_location_bytes: limits.max_location_bytes,
        login_starts_per_second: limits.login_starts_per_second,
        login_starts_per_client_per_minute: limits.login_starts_per_client_per_minute,
        client_address_header: limits.client_address_header,
        log_json: ops.log_json,
        log_level: ops.log_level,
        grace_period: ops.grace_period,
        egress_addr: listen.egress,
        egress_max_body: egress.max_body,
        allowed_grant_types: egress.allowed_grant_types,
        app_secret: egress.app_secret,
        resources: egress.resources,
        callback_paths: callback.paths,
        check_all_paths: callback.check_all_paths,
        code_ttl: callback.code_ttl,
        app_redeems_before_answering: callback.app_redeems_before_answering,
        require_iss: callback.require_iss,
        state_key_path: callback.state_key_path,
        state_max_age: callback.state_max_age,
        browser_binding: callback.browser_binding,
        cookie_secure: callback.cookie_secure,
        reload_interval: ops.reload_interval,
        par_timeout: knobs.par_timeout,
        discovery_timeout: knobs.discovery_timeout,
        clock_skew: egress.clock_skew,
        max_connections: limits.max_connections,
        max_connections_per_client: limits.max_connections_per_client,
        first_request_headers_timeout: timeouts.first_request_headers,
        upstream_keepalive_pool: limits.upstream_keepalive_pool,
        connection_read_buffer: limits.connection_read_buffer,
        connection_bounds: limits.connection_bounds,
        memory_trim_interval: limits.memory_trim_interval,
        public_jwks_path: public_jwks_path.flatten(),
    })
}

/// Default `limits.max_as_response_bytes`: discovery documents and token responses of the
/// largest ASs seen are a few KiB; 256 KiB leaves room without letting an AS fill memory.
pub const DEFAULT_MAX_AS_RESPONSE_BYTES: usize = 256 * 1024;

struct Listeners {
    public: SocketAddr,
    admin: SocketAddr,
    egress: Option<SocketAddr>,
    upstream: SocketAddr,
}

/// `listen.*`, `upstream` and `egress.allow_non_loopback`.
fn listeners(f: &file::FileConfig, cx: &Ctx) -> Listeners {
    let public = cx.addr("listen.public", &f.listen.public);
    let admin = cx.addr("listen.admin", &f.listen.admin);
    if public.is_some() && public == admin {
        cx.add(
            "listen.admin",
            "must differ from listen.public: admin endpoints never share the browser listener",
        );
    }
    // The app is in the same pod: an IP:port (or localhost:port), resolved here once rather
    // than per request.
    let upstream = match f.upstream.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse(),
        None => f.upstream.parse(),
    }
    .map_err(|_| format!("`{}` is not IP:port (or localhost:port) of the app", f.upstream));
    let upstream = cx.check("upstream", upstream);
    let egress = f.listen.egress.as_deref().and_then(|v| cx.addr("listen.egress", v));
    if let Some(e) = egress {
        if !e.ip().is_loopback() && !f.egress.allow_non_loopback.unwrap_or(false) {
            cx.add(
                "listen.egress",
                "must be a loopback address: anything that reaches it acts as the OAuth client \
                 (set egress.allow_non_loopback: true to override)",
            );
        }
        if Some(e) == public || Some(e) == admin {
            cx.add("listen.egress", "must differ from the public and admin listeners");
        }
    }
    Listeners {
        public: public.unwrap_or(UNSET_ADDR),
        admin: admin.unwrap_or(UNSET_ADDR),
        egress,
        upstream: upstream.unwrap_or(UNSET_ADDR),
    }
}

/// Default `timeouts.first_request_headers_ms`: a browser sends its headers at once; ten
/// seconds covers a slow mobile link and still frees a slowloris connection's slot.
pub const DEFAULT_FIRST_REQUEST_HEADERS_MS: u64 = 10_000;

struct Timeouts {
    connect: Duration,
    par: Duration,
    discovery: Duration,
    first_request_headers: Duration,
}

/// `timeouts.*`, milliseconds.
fn timeouts(t: &file::TimeoutsFile, cx: &Ctx) -> Timeouts {
    let ms = |key: &str, v: Option<u64>, default: u64| cx.ms(key, v, default).unwrap_or(Duration::from_millis(default));
    Timeouts {
        connect: ms("timeouts.connect_ms", t.connect_ms, 2_000),
        par: ms("timeouts.par_total_ms", t.par_total_ms, 5_000),
        discovery: ms("timeouts.discovery_total_ms", t.discovery_total_ms, 5_000),
        first_request_headers: ms(
            "timeouts.first_request_headers_ms",
            t.first_request_headers_ms,
            DEFAULT_FIRST_REQUEST_HEADERS_MS,
        ),
    }
}

struct Par {
    required: bool,
    require_https_redirect_uri: bool,
    login_paths: Vec<String>,
    redirect_uri_origins: Vec<crate::protocol::origin::ConfiguredOrigin>,
}

/// `par.*` but `request_object`, which travels with each AS ([`CallKnobs`]).
fn par(p: file::ParFile, cx: &Ctx) -> Par {
    let login_paths = super::validate_login::login_paths(p.login_paths.unwrap_or_default());
    let redirect_uri_origins = p
        .redirect_uri_origins
        .unwrap_or_default()
        .iter()
        .filter_map(|o| {
            cx.check(
                "par.redirect_uri_origins",
                crate::protocol::origin::ConfiguredOrigin::parse(o),
            )
        })
        .collect();
    Par {
        required: p.required.unwrap_or(true),
        require_https_redirect_uri: p.require_https_redirect_uri.unwrap_or(true),
        login_paths: cx.check("par.login_paths", login_paths).unwrap_or_default(),
        redirect_uri_origins,
    }
}

/// Default `callback.code_ttl_seconds`: a redirect and one token call.
pub const DEFAULT_CODE_TTL_SECONDS: u64 = 30;

struct Callback {
    paths: Vec<String>,
    check_all_paths: bool,
    code_ttl: Duration,
    app_redeems_before_answering: bool,
    require_iss: bool,
    state_key_path: Option<PathBuf>,
    state_max_age: Duration,
    browser_binding: bool,
    cookie_secure: bool,
}

/// `callback.*`.
fn callback(c: file::CallbackFile, cx: &Ctx) -> Callback {
    for p in &c.paths {
        if !p.starts_with('/') {
            cx.add("callback.paths", format!("`{p}` must start with /"));
        }
    }
    Callback {
        check_all_paths: c.check_all_paths.unwrap_or(false),
        code_ttl: cx
            .secs(
                "callback.code_ttl_seconds",
                c.code_ttl_seconds,
                DEFAULT_CODE_TTL_SECONDS,
                5,
                600,
            )
            .unwrap_or_default(),
        app_redeems_before_answering: c.app_redeems_before_answering.unwrap_or(true),
        require_iss: c.require_iss.unwrap_or(true),
        state_key_path: c.state_key_path.as_deref().map(|p| cx.resolve(p)),
        state_max_age: cx
            .secs("callback.state_max_age_seconds", c.state_max_age_seconds, 600, 30, 3600)
            .unwrap_or_default(),
        browser_binding: c.browser_binding.unwrap_or(true),
        cookie_secure: c.cookie_secure.unwrap_or(true),
        paths: c.paths,
    }
}

struct Ops {
    log_json: bool,
    log_level: String,
    grace_period: Duration,
    reload_interval: Duration,
}

/// `logging.*`, `shutdown.*` and `reload.*`: how the process runs, not what it serves.
fn ops(l: file::LoggingFile, s: &file::ShutdownFile, r: &file::ReloadFile, cx: &Ctx) -> Ops {
    let log_format = match l.format.as_ref().map(file::Choice::value) {
        None => file::LogFormat::Json,
        Some(Ok(f)) => f,
        Some(Err(other)) => {
            cx.add("logging.format", format!("`{other}` is not json or text"));
            file::LogFormat::Json
        }
    };
    Ops {
        log_json: log_format == file::LogFormat::Json,
        log_level: l.level.unwrap_or_else(|| "info".into()),
        grace_period: cx
            .secs("shutdown.grace_period_seconds", s.grace_period_seconds, 20, 0, 3600)
            .unwrap_or_default(),
        reload_interval: cx
            .secs("reload.check_interval_seconds", r.check_interval_seconds, 5, 1, 3600)
            .unwrap_or_default(),
    }
}
