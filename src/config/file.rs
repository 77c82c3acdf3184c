//! The YAML file model. It mirrors the file one to one and rejects unknown keys, so a typo
//! (`clent_id`) is an error at start-up, not a silently ignored setting. Validation and
//! defaults live in [`super::Settings`].

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: ListenFile,
    /// `host:port` of the unmodified app.
    pub upstream: String,
    pub authorization_server: AuthorizationServerFile,
    pub client: ClientFile,
    #[serde(default)]
    pub par: ParFile,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub logging: LoggingFile,
    #[serde(default)]
    pub shutdown: ShutdownFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    pub public: String,
    pub admin: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationServerFile {
    pub issuer: String,
    pub discovery_url: Option<String>,
    pub ca_file: Option<String>,
    pub discovery_refresh_seconds: Option<u64>,
    /// `auto` (alias only when mTLS is the client authentication), `always`, `never`.
    pub par_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    pub client_id: String,
    pub auth_method: String,
    /// One key, or use `signing_keys` for a rotation overlap.
    pub signing_key: Option<SigningKeyFile>,
    #[serde(default)]
    pub signing_keys: Vec<SigningKeyFile>,
    pub transport: TransportFile,
    pub request_object_lifetime_seconds: Option<u64>,
    pub assertion_lifetime_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyFile {
    pub path: String,
    pub alg: String,
    pub kid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportFile {
    pub cert_path: String,
    pub key_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParFile {
    /// Fail closed (default): never forward a non-PAR authorize redirect.
    pub required: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect_ms: Option<u64>,
    pub par_total_ms: Option<u64>,
    pub discovery_total_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_location_bytes: Option<usize>,
    pub max_as_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    /// `json` (default) or `text`.
    pub format: Option<String>,
    /// An `EnvFilter` directive, e.g. `info` or `par_sidecar=debug`.
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownFile {
    pub grace_period_seconds: Option<u64>,
}
