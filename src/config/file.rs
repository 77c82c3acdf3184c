//! The YAML file model. It mirrors the file one to one and rejects unknown keys, so a typo
//! (`clent_id`) is an error at start-up, not a silently ignored setting. Validation and
//! defaults live in `validate*.rs` (numeric ones as `DEFAULT_*` consts, named below rather
//! than repeated, so a comment cannot drift from the code); README's configuration table
//! lists them and a test compares it with the code.

use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer};
use serde::Deserialize;

use super::{AliasPolicy, AuthMethod, SenderConstraint, TokenTypeToApp};

/// A string-valued choice: one of `T`'s serde names (or aliases), kept with its spelling.
/// An unknown value is not a parse error (which would hide every other problem of the
/// file): validation reports it, naming the allowed values, as one more problem in the list.
/// The spelling is what profiles compare and messages quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice<T> {
    spelled: String,
    value: Option<T>,
}

impl<T: DeserializeOwned + Copy> Choice<T> {
    pub fn new(spelled: &str) -> Self {
        let de = IntoDeserializer::<serde::de::value::Error>::into_deserializer(spelled);
        Choice {
            spelled: spelled.to_string(),
            value: T::deserialize(de).ok(),
        }
    }

    /// As written in the file.
    pub fn as_str(&self) -> &str {
        &self.spelled
    }

    /// The value, or the unknown spelling.
    pub fn value(&self) -> Result<T, &str> {
        self.value.ok_or(self.spelled.as_str())
    }
}

impl<'de, T: DeserializeOwned + Copy> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Choice::new(&String::deserialize(d)?))
    }
}

/// `client.response_mode`: JARM is the only mode to choose (query is what an unset key means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ResponseMode {
    #[serde(rename = "jwt", alias = "query.jwt")]
    Jwt,
}

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: ListenFile,
    /// `host:port` of the unmodified app.
    pub upstream: String,
    /// The single-AS form (its name is `default`). Exclusive with `authorization_servers`.
    pub authorization_server: Option<AuthorizationServerFile>,
    /// Several ASs (banks) behind one sidecar, each with optional `client` overrides.
    pub authorization_servers: Option<Vec<AuthorizationServerFile>>,
    /// Shared client settings; every AS's `client` block is merged over them key by key.
    #[serde(default)]
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
    #[serde(default)]
    pub callback: CallbackFile,
    #[serde(default)]
    pub egress: EgressFile,
    #[serde(default)]
    pub reload: ReloadFile,
    /// Ecosystem profile of every AS (README "Profiles"); `authorization_servers[].profile`
    /// overrides it. Unset: `fapi2-message-signing`.
    pub profile: Option<String>,
    /// Serve the client JWKS (public keys) on the public listener at this path, for ASs that
    /// fetch a hosted client JWKS. Off when absent.
    pub public_jwks_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    pub public: String,
    pub admin: String,
    /// Loopback listener for the app's back-channel calls (token, userinfo, APIs).
    pub egress: Option<String>,
}

/// One AS: `authorization_server` (no `name`, no `client`: the top-level `client` block is
/// its client) or an entry of `authorization_servers` (named, with optional per-AS client
/// overrides). One shape for both, so the keys cannot drift apart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationServerFile {
    pub name: Option<String>,
    pub issuer: String,
    pub discovery_url: Option<String>,
    pub ca_file: Option<String>,
    pub discovery_refresh_seconds: Option<u64>,
    /// `auto` (alias only when mTLS is the client authentication), `always`, `never`.
    pub par_endpoint: Option<Choice<AliasPolicy>>,
    /// Hosts of the authorize endpoint when it is not on the issuer's host: redirects there
    /// are held back until the metadata is loaded (it is otherwise unknown after a restart).
    pub authorize_hosts: Option<Vec<String>>,
    /// Per-AS overrides of any `client` key.
    pub client: Option<ClientFile>,
    /// This AS's ecosystem profile, over the top-level `profile`.
    pub profile: Option<String>,
}

/// Every key optional: the shared block and the per-AS overrides share this shape; the
/// merged result is checked for required keys in validation.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    pub client_id: Option<String>,
    pub auth_method: Option<Choice<AuthMethod>>,
    /// One key, or use `signing_keys` for a rotation overlap.
    pub signing_key: Option<SigningKeyFile>,
    pub signing_keys: Option<Vec<SigningKeyFile>>,
    /// Optional: a separate key for request objects (the signing keys then sign only client
    /// assertions). Published in the JWKS with the others.
    pub request_object_signing_key: Option<SigningKeyFile>,
    pub transport: Option<TransportFile>,
    pub request_object_lifetime_seconds: Option<u64>,
    pub assertion_lifetime_seconds: Option<u64>,
    /// Pre-signed `private_key_jwt` assertions kept ready per AS (0 = off): a login start
    /// then signs only the request object. Refilled in the background after each use.
    pub assertion_pool: Option<usize>,
    /// A pooled assertion older than this (its `iat`) is discarded, not sent.
    pub assertion_pool_max_age_seconds: Option<u64>,
    /// `jwt` to request JARM responses (verified at the callback).
    pub response_mode: Option<Choice<ResponseMode>>,
    /// How access tokens are bound to the sidecar: `mtls` (default, RFC 8705) or `dpop`
    /// (RFC 9449; the connection still presents the client certificate).
    pub sender_constraint: Option<Choice<SenderConstraint>>,
    /// DPoP settings, used when `sender_constraint` is `dpop`.
    pub dpop: Option<DpopFile>,
    /// Authorize parameters the app may send besides the core set (response_type,
    /// client_id, redirect_uri, scope, state, nonce, PKCE, response_mode). Unset: any.
    pub allowed_authorize_parameters: Option<Vec<String>>,
    /// The key the AS encrypts ID tokens to (Singpass, Corppass): one, or use
    /// `encryption_keys` for a rotation overlap. Replaced as a whole per AS, like signing keys.
    pub encryption_key: Option<EncryptionKeyFile>,
    pub encryption_keys: Option<Vec<EncryptionKeyFile>>,
    /// `verified_jws` (default: the app gets the decrypted, verified inner JWS) or
    /// `original` (the JWE as the AS sent it, after the same checks).
    pub id_token_handover: Option<String>,
}

/// A private key for JWE decryption: `alg` is the JWE key management algorithm.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKeyFile {
    pub path: String,
    /// ECDH-ES, ECDH-ES+A128KW, ECDH-ES+A192KW, ECDH-ES+A256KW (EC) or RSA-OAEP-256 (RSA).
    pub alg: String,
    pub kid: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DpopFile {
    /// The proof key; without `path`, a key generated in memory per process.
    pub key: Option<DpopKeyFile>,
    /// `bearer` (default) or `dpop`: the `token_type` the app sees in token responses.
    pub token_type_to_app: Option<Choice<TokenTypeToApp>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DpopKeyFile {
    pub path: Option<String>,
    /// PS256, ES256, ES384, ES512 or EdDSA; required with `path`, ES256 when generated.
    pub alg: Option<String>,
}

impl DpopFile {
    /// Key by key: `over`'s `key` (as a whole) and `token_type_to_app` win.
    fn merged_with(&self, over: &DpopFile) -> DpopFile {
        DpopFile {
            key: over.key.clone().or_else(|| self.key.clone()),
            token_type_to_app: over
                .token_type_to_app
                .clone()
                .or_else(|| self.token_type_to_app.clone()),
        }
    }
}

impl ClientFile {
    /// `over`'s keys win; signing keys are replaced as a whole (`signing_key` and
    /// `signing_keys` together), never mixed across the two blocks.
    pub fn merged_with(&self, over: &ClientFile) -> ClientFile {
        let keys_overridden = over.signing_key.is_some() || over.signing_keys.is_some();
        let enc_overridden = over.encryption_key.is_some() || over.encryption_keys.is_some();
        ClientFile {
            client_id: over.client_id.clone().or_else(|| self.client_id.clone()),
            auth_method: over.auth_method.clone().or_else(|| self.auth_method.clone()),
            signing_key: if keys_overridden {
                over.signing_key.clone()
            } else {
                self.signing_key.clone()
            },
            signing_keys: if keys_overridden {
                over.signing_keys.clone()
            } else {
                self.signing_keys.clone()
            },
            request_object_signing_key: over
                .request_object_signing_key
                .clone()
                .or_else(|| self.request_object_signing_key.clone()),
            transport: over.transport.clone().or_else(|| self.transport.clone()),
            request_object_lifetime_seconds: over
                .request_object_lifetime_seconds
                .or(self.request_object_lifetime_seconds),
            assertion_lifetime_seconds: over.assertion_lifetime_seconds.or(self.assertion_lifetime_seconds),
            assertion_pool: over.assertion_pool.or(self.assertion_pool),
            assertion_pool_max_age_seconds: over
                .assertion_pool_max_age_seconds
                .or(self.assertion_pool_max_age_seconds),
            response_mode: over.response_mode.clone().or_else(|| self.response_mode.clone()),
            sender_constraint: over
                .sender_constraint
                .clone()
                .or_else(|| self.sender_constraint.clone()),
            dpop: match (&self.dpop, &over.dpop) {
                (Some(a), Some(b)) => Some(a.merged_with(b)),
                (a, b) => b.clone().or_else(|| a.clone()),
            },
            allowed_authorize_parameters: over
                .allowed_authorize_parameters
                .clone()
                .or_else(|| self.allowed_authorize_parameters.clone()),
            encryption_key: if enc_overridden {
                over.encryption_key.clone()
            } else {
                self.encryption_key.clone()
            },
            encryption_keys: if enc_overridden {
                over.encryption_keys.clone()
            } else {
                self.encryption_keys.clone()
            },
            id_token_handover: over
                .id_token_handover
                .clone()
                .or_else(|| self.id_token_handover.clone()),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyFile {
    pub path: String,
    pub alg: String,
    pub kid: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
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
    /// Push a signed request object (JAR, default) or plain form parameters (for FAPI 2.0
    /// ASs that accept only form parameters at PAR).
    pub request_object: Option<bool>,
    /// Refuse a redirect_uri that is not https (loopback http allowed). Default true; false
    /// only for test setups whose app is reached over plain http by name.
    pub require_https_redirect_uri: Option<bool>,
    /// The app's login routes: only redirects answering a request on one of these paths may
    /// start a login (the stricter defence against open redirects). Empty: any path.
    pub login_paths: Option<Vec<String>>,
    /// Public origins (`https://app.example.com[:port]`) a pushed `redirect_uri` may be on,
    /// when the request's own Host is not the public one (an ingress rewriting it without
    /// `X-Forwarded-Host`). Empty: the request's own origin.
    pub redirect_uri_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect_ms: Option<u64>,
    pub par_total_ms: Option<u64>,
    pub discovery_total_ms: Option<u64>,
    /// Every request's headers must arrive within this time (one total deadline, not per
    /// read: slowloris), counted from accept for a connection's first request and from the
    /// first byte of each later one, else the connection is closed. Public, admin and egress
    /// listeners. The name is kept from when only the first request was bounded.
    /// Default `DEFAULT_FIRST_REQUEST_HEADERS_MS`.
    pub first_request_headers_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_location_bytes: Option<usize>,
    pub max_as_response_bytes: Option<usize>,
    /// Login starts (PARs) per second for the whole sidecar; 0 disables (default `DEFAULT_LOGIN_STARTS_PER_SECOND`).
    pub login_starts_per_second: Option<u32>,
    /// Login starts per minute from one client address; 0 disables (default).
    pub login_starts_per_client_per_minute: Option<u32>,
    /// A header set by the trusted ingress with the client address (e.g. `x-forwarded-for`;
    /// its rightmost entry is used). Without it the peer address is the client.
    pub client_address_header: Option<String>,
    /// Open public-listener connections; beyond it a new connection is closed at accept.
    /// 0 disables. Default `DEFAULT_MAX_CONNECTIONS`, sized to the shipped 128Mi memory limit.
    pub max_connections: Option<usize>,
    /// Connections (or, behind `client_address_header`, requests in flight) one client address
    /// may hold on the public listener; 0 disables (default).
    pub max_connections_per_client: Option<u32>,
    /// Idle connections to the app kept for reuse (pingora's `upstream_keepalive_pool_size`).
    /// Default `DEFAULT_UPSTREAM_KEEPALIVE_POOL`.
    pub upstream_keepalive_pool: Option<usize>,
    /// Per-connection read buffer of the public listener, bytes (pingora's default 65536).
    /// Default `DEFAULT_CONNECTION_READ_BUFFER` (0): no buffer, pingora reads straight into
    /// its request header buffer. A size (1024..=1048576) puts a buffer of that size in front
    /// of it. A footprint experiment's knob, kept as a key: README "Configuration" says why.
    pub connection_read_buffer_bytes: Option<usize>,
    /// Bytes a request's headers may take on any listener before the connection is answered
    /// `431` and closed (pingora's own limit is 1 MiB). Default `DEFAULT_MAX_REQUEST_HEADER_BYTES`.
    pub max_request_header_bytes: Option<usize>,
    /// Share of `max_connections` (percent) above which one client address may hold no more
    /// than its fair share of the slots. 100 disables. Default `DEFAULT_PRESSURE_PERCENT`.
    pub connection_pressure_percent: Option<u8>,
    /// Open connections on the admin listener (probes, Prometheus). Default `DEFAULT_ADMIN_MAX_CONNECTIONS`.
    pub admin_max_connections: Option<usize>,
    /// Open connections on the egress listener (the app's back-channel client).
    /// Default `DEFAULT_EGRESS_MAX_CONNECTIONS`.
    pub egress_max_connections: Option<usize>,
    /// How often glibc's free heap is checked and, after a burst, handed back to the kernel
    /// (`malloc_trim`), milliseconds. 0 disables. Default `DEFAULT_MEMORY_TRIM_INTERVAL_MS`.
    pub memory_trim_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    /// `json` (default) or `text`.
    pub format: Option<Choice<LogFormat>>,
    /// An `EnvFilter` directive, e.g. `info` or `par_sidecar=debug`.
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownFile {
    pub grace_period_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadFile {
    /// How often key and certificate files are checked for new content.
    pub check_interval_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackFile {
    /// The app's redirect_uri paths; learned from pushed requests when empty.
    #[serde(default)]
    pub paths: Vec<String>,
    /// RFC 9207: reject a response without `iss` (default true; FAPI 2.0 requires it).
    pub require_iss: Option<bool>,
    /// 32-byte AEAD key (raw, base64 or hex) shared by all replicas.
    pub state_key_path: Option<String>,
    pub state_max_age_seconds: Option<u64>,
    /// Bind each login to the browser that started it with a cookie (default true).
    pub browser_binding: Option<bool>,
    /// Mark that cookie `Secure` (default true: browsers reach the app over HTTPS).
    pub cookie_secure: Option<bool>,
    /// Check response parameters on every path, not only the callback paths (default false).
    pub check_all_paths: Option<bool>,
    /// Seconds a checked code waits for the app's token call (default `DEFAULT_CODE_TTL_SECONDS`).
    pub code_ttl_seconds: Option<u64>,
    /// The app redeems the code before answering its callback (default true).
    pub app_redeems_before_answering: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressFile {
    /// Refuse a non-loopback egress listener unless this is true (see README).
    pub allow_non_loopback: Option<bool>,
    pub max_body_bytes: Option<usize>,
    /// Clock skew allowed when checking ID token `exp`/`iat`/`auth_time` (default
    /// `DEFAULT_CLOCK_SKEW_SECONDS`, at most `MAX_CLOCK_SKEW_SECONDS`).
    pub clock_skew_seconds: Option<u64>,
    /// grant_type values the token route forwards (default: authorization_code, refresh_token).
    pub allowed_grant_types: Option<Vec<String>>,
    /// Hex SHA-256 of the app's client secret: the token, introspection and revocation
    /// routes then require it. Exclusive with `app_client_secret_file`.
    pub app_client_secret_sha256: Option<String>,
    /// A file holding the app's client secret (read at start). Exclusive with the above.
    pub app_client_secret_file: Option<String>,
    #[serde(default)]
    pub resources: Vec<ResourceFile>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ResourceFile {
    /// Path prefix on the egress listener, e.g. `/rs/accounts/`.
    pub prefix: String,
    /// https URL the prefix maps to, e.g. `https://rs.example.com/accounts/`.
    pub target: String,
    /// The AS whose client and certificate the tokens are bound to (default: the only AS).
    pub authorization_server: Option<String>,
}
