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

use crate::jose::Alg;
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

#[derive(Debug, Clone)]
pub struct SigningKeyRef {
    pub path: PathBuf,
    pub alg: Alg,
    pub kid: Option<String>,
}

/// A resource-server route on the egress listener.
#[derive(Debug, Clone)]
pub struct ResourceRoute {
    pub prefix: String,
    pub target: Url,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub source: PathBuf,
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub upstream: SocketAddr,
    pub issuer: IssuerUrl,
    pub discovery_url: Url,
    pub as_ca_file: Option<PathBuf>,
    pub discovery_refresh: Duration,
    pub par_alias: AliasPolicy,
    pub client_id: ClientId,
    pub auth_method: AuthMethod,
    /// The first key signs; the others are published in the JWKS (rotation overlap).
    pub signing_keys: Vec<SigningKeyRef>,
    pub transport_cert: PathBuf,
    pub transport_key: PathBuf,
    pub request_object_lifetime: Duration,
    pub assertion_lifetime: Duration,
    pub par_required: bool,
    pub request_object: bool,
    pub connect_timeout: Duration,
    pub par_timeout: Duration,
    pub discovery_timeout: Duration,
    pub max_location_bytes: usize,
    pub max_as_response_bytes: usize,
    pub log_json: bool,
    pub log_level: String,
    pub grace_period: Duration,
    pub egress_addr: Option<SocketAddr>,
    pub egress_max_body: usize,
    pub resources: Vec<ResourceRoute>,
    pub callback_paths: Vec<String>,
    pub require_iss: bool,
    pub state_key_path: Option<PathBuf>,
    pub state_max_age: Duration,
    /// Request JARM (`response_mode=jwt`) and verify it at the callback.
    pub jarm: bool,
    pub reload_interval: Duration,
    pub browser_binding: bool,
    pub cookie_secure: bool,
}

impl Settings {
    /// Reads, expands `${ENV}`, parses and validates. Does not touch keys or the network.
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

    let issuer =
        IssuerUrl::new(&f.authorization_server.issuer).map_err(|m| invalid("authorization_server.issuer", m))?;
    let discovery_url = match &f.authorization_server.discovery_url {
        Some(u) => Url::parse(u).map_err(|e| invalid("authorization_server.discovery_url", e.to_string()))?,
        None => issuer.default_discovery_url(),
    };
    if discovery_url.scheme() != "https" {
        return Err(invalid(
            "authorization_server.discovery_url",
            "must be https (TLS-1)".into(),
        ));
    }
    let auth_method = match f.client.auth_method.as_str() {
        "private_key_jwt" => AuthMethod::PrivateKeyJwt,
        "tls_client_auth" => AuthMethod::TlsClientAuth,
        other => {
            return Err(invalid(
                "client.auth_method",
                format!("`{other}` is not one of private_key_jwt, tls_client_auth"),
            ))
        }
    };
    let par_alias = match f.authorization_server.par_endpoint.as_deref().unwrap_or("auto") {
        "auto" => AliasPolicy::Auto,
        "mtls_alias" | "always" => AliasPolicy::Always,
        "top_level" | "never" => AliasPolicy::Never,
        other => {
            return Err(invalid(
                "authorization_server.par_endpoint",
                format!("`{other}` is not one of auto, mtls_alias, top_level"),
            ))
        }
    };

    let mut key_files = f.client.signing_keys.clone();
    if let Some(k) = f.client.signing_key.clone() {
        key_files.insert(0, k);
    }
    if key_files.is_empty() {
        return Err(invalid(
            "client.signing_key",
            "a signing key is required: it signs the request object (and the client assertion for private_key_jwt)"
                .into(),
        ));
    }
    let mut signing_keys = Vec::new();
    for (i, k) in key_files.iter().enumerate() {
        let alg = Alg::parse(&k.alg).ok_or_else(|| {
            invalid(
                &format!("client.signing_keys[{i}].alg"),
                format!("`{}` is not one of PS256, ES256, EdDSA", k.alg),
            )
        })?;
        signing_keys.push(SigningKeyRef {
            path: resolve(&k.path),
            alg,
            kid: k.kid.clone(),
        });
    }

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
            || ["/token", "/userinfo", "/introspect", "/revoke"]
                .iter()
                .any(|p| r.prefix.starts_with(p))
        {
            return Err(invalid(
                &key,
                "prefix must start with / and not shadow an AS route".into(),
            ));
        }
        resources.push(ResourceRoute {
            prefix: r.prefix.clone(),
            target,
        });
    }
    for p in &f.callback.paths {
        if !p.starts_with('/') {
            return Err(invalid("callback.paths", format!("`{p}` must start with /")));
        }
    }
    let jarm = match f.client.response_mode.as_deref() {
        None => false,
        Some("jwt") | Some("query.jwt") => true,
        Some(other) => {
            return Err(invalid(
                "client.response_mode",
                format!("`{other}` is not supported: use jwt (query.jwt), or leave it out"),
            ))
        }
    };

    let log_format = f.logging.format.as_deref().unwrap_or("json");
    if !matches!(log_format, "json" | "text") {
        return Err(invalid("logging.format", format!("`{log_format}` is not json or text")));
    }

    Ok(Settings {
        source: path.to_path_buf(),
        public_addr,
        admin_addr,
        upstream,
        issuer,
        discovery_url,
        as_ca_file: f.authorization_server.ca_file.as_deref().map(resolve),
        discovery_refresh: secs(
            "authorization_server.discovery_refresh_seconds",
            f.authorization_server.discovery_refresh_seconds,
            300,
            5,
            86_400,
        )?,
        par_alias,
        client_id: ClientId::new(&f.client.client_id).map_err(|m| invalid("client.client_id", m))?,
        auth_method,
        signing_keys,
        transport_cert: resolve(&f.client.transport.cert_path),
        transport_key: resolve(&f.client.transport.key_path),
        // FAPI 1.0 Adv / Message Signing: exp - nbf <= 3600; 300 s is the usual recommendation.
        request_object_lifetime: secs(
            "client.request_object_lifetime_seconds",
            f.client.request_object_lifetime_seconds,
            300,
            10,
            3600,
        )?,
        // RFC 7523 / UAE: short-lived, at most 5 minutes.
        assertion_lifetime: secs(
            "client.assertion_lifetime_seconds",
            f.client.assertion_lifetime_seconds,
            60,
            10,
            300,
        )?,
        par_required: f.par.required.unwrap_or(true),
        request_object: f.par.request_object.unwrap_or(true),
        connect_timeout: ms("timeouts.connect_ms", f.timeouts.connect_ms, 2_000)?,
        par_timeout: ms("timeouts.par_total_ms", f.timeouts.par_total_ms, 5_000)?,
        discovery_timeout: ms("timeouts.discovery_total_ms", f.timeouts.discovery_total_ms, 5_000)?,
        max_location_bytes: f.limits.max_location_bytes.unwrap_or(16 * 1024),
        max_as_response_bytes: f.limits.max_as_response_bytes.unwrap_or(256 * 1024),
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
        jarm,
        browser_binding: f.callback.browser_binding.unwrap_or(true),
        cookie_secure: f.callback.cookie_secure.unwrap_or(true),
        reload_interval: secs(
            "reload.check_interval_seconds",
            f.reload.check_interval_seconds,
            5,
            1,
            3600,
        )?,
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
        assert_eq!(
            s.discovery_url.as_str(),
            "https://as.example.com/.well-known/openid-configuration"
        );
        assert_eq!(s.signing_keys[0].path, PathBuf::from("/etc/ps/keys/sign.pem"));
        assert_eq!(s.par_alias, AliasPolicy::Auto);
        assert_eq!(s.assertion_lifetime, Duration::from_secs(60));
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
