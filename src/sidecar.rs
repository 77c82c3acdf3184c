//! The composition root: one `Sidecar` holds the settings, the AS registry (per-AS keys,
//! clients, metadata) and what crosses requests (sealed-state key, code map, replay cache).
//! Named so it is not mistaken for OAuth `state` or the sealed transaction. Per-AS material is
//! held in `ArcSwap` snapshots so a reload swaps it whole while in-flight requests finish
//! with what they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::as_client::keys::KeyLoadError;
use crate::as_client::registry::{load_client, AsClient, AsRegistry};
use crate::bounded::TtlMap;
use crate::config::Settings;
use crate::conn::client_connections::ClientConnections;
use crate::front::login_limit::LoginLimiter;
use crate::front::prefilter::{normalize_path, path_routes_to_any};
use crate::front::sealed_state::StateSealer;
use crate::handoff::{refresh_subjects, CodeRecord, RefreshSubjects};
use crate::metrics::Metrics;

pub struct Sidecar {
    pub settings: Settings,
    pub registry: AsRegistry,
    pub metrics: Arc<Metrics>,
    pub sealer: StateSealer,
    /// code -> what the token call needs (bounded, short TTL, taken once).
    pub codes: TtlMap<String, CodeRecord>,
    /// Nonces of sealed states already used at the callback.
    pub replay: TtlMap<String, ()>,
    /// Login starts per second, globally and per client.
    pub login_limiter: LoginLimiter,
    /// redirect_uri paths seen in pushed requests (bounded), plus the configured ones, each
    /// normalised (`front::prefilter::normalize_path`).
    /// Read on every proxied request, so lock-free; written rarely (copy on write).
    pub callback_paths: ArcSwap<Vec<String>>,
    /// What each client address holds open on the public listener (`limits.max_connections_per_client`).
    pub client_connections: Arc<ClientConnections>,
    /// refresh token -> the `sub` it was issued for (hashes only; bounded, TTL): a refresh
    /// response's ID token must name the same user (OIDC Core §12.2).
    pub refresh_subjects: RefreshSubjects,
}

const MAX_CODES: usize = 10_000;
const MAX_REPLAY: usize = 50_000;
const MAX_LEARNED_PATHS: usize = 16;

impl Sidecar {
    /// Loads every AS's keys and builds its mTLS client. Fails on any unusable file.
    pub fn load(settings: Settings) -> Result<Arc<Sidecar>, KeyLoadError> {
        let mut clients = Vec::with_capacity(settings.authorization_servers.len());
        for (i, a) in settings.authorization_servers.iter().enumerate() {
            clients.push(load_client(i, a.clone())?);
        }
        let sealer = load_sealer(&settings)?;
        Ok(Self::with_clients(settings, clients, sealer))
    }

    /// Assembles state from per-AS clients (tests inject fake AS clients here).
    pub fn with_clients(settings: Settings, clients: Vec<AsClient>, sealer: StateSealer) -> Arc<Sidecar> {
        let metrics = Arc::new(Metrics::new());
        for c in &clients {
            metrics.register_as(c.name());
            if c.settings.client.dpop.is_some() {
                metrics.register_dpop(c.name());
            }
        }
        let registry = AsRegistry::new(clients);
        let state = Arc::new(Sidecar {
            callback_paths: ArcSwap::from_pointee(settings.callback_paths.iter().map(|p| normalize_path(p)).collect()),
            sealer,
            codes: TtlMap::new(MAX_CODES, settings.code_ttl),
            replay: TtlMap::new(MAX_REPLAY, settings.state_max_age),
            login_limiter: LoginLimiter::new(
                settings.login_starts_per_second,
                settings.login_starts_per_client_per_minute,
            ),
            client_connections: ClientConnections::new(settings.max_connections_per_client),
            refresh_subjects: refresh_subjects(),
            settings,
            registry,
            metrics,
        });
        state.update_transport_expiry();
        state
    }

    /// What the AS client's token-response checks read from here.
    pub fn check_env(&self) -> crate::as_client::token_check::CheckEnv<'_> {
        crate::as_client::token_check::CheckEnv {
            metrics: &self.metrics,
            fetch_timeout: self.settings.discovery_timeout,
            clock_skew: self.settings.clock_skew,
            refresh_subjects: &self.refresh_subjects,
        }
    }

    /// The first (in a single-AS config: the only) AS.
    pub fn first_as(&self) -> &Arc<AsClient> {
        &self.registry.clients[0]
    }

    /// Ready while at least one AS has usable metadata.
    pub fn is_ready(&self) -> bool {
        self.registry.any_ready()
    }

    /// The earliest transport certificate expiry across ASs: the one to alert on.
    pub fn update_transport_expiry(&self) {
        if let Some(min) = self
            .registry
            .clients
            .iter()
            .map(|c| c.keys.load().transport.not_after)
            .min()
        {
            self.metrics.transport_not_after.set(min);
        }
    }

    /// Remembers the path of a pushed redirect_uri so its callback is checked.
    pub fn learn_callback_path(&self, path: &str) {
        if self.is_callback_path(path) {
            return;
        }
        let path = normalize_path(path);
        let path = path.as_str();
        self.callback_paths.rcu(|paths| {
            let mut next = (**paths).clone();
            if !next.iter().any(|p| p == path) && next.len() < MAX_LEARNED_PATHS + self.settings.callback_paths.len() {
                next.push(path.to_string());
            }
            next
        });
    }

    /// Whether some AS is configured for JARM: only then is a `response` parameter a JARM
    /// response. A few ASs at most; no allocation (read on every proxied request with a
    /// `response` parameter).
    pub fn jarm_configured(&self) -> bool {
        self.registry.clients.iter().any(|c| c.settings.client.jarm)
    }

    /// Whether the app's framework could route `path` to a redirect_uri handler: both sides
    /// normalised as routers do (`front::prefilter`: `/%63allback`, `//callback`,
    /// `/Callback/`, `/callback;jsessionid=x`, `/callback.json`). Runs only for requests with
    /// a response-shaped parameter or a body.
    pub fn is_callback_path(&self, path: &str) -> bool {
        let paths = self.callback_paths.load();
        // A plain spelling (the common case) is compared without normalising it.
        let plain = !path.bytes().any(|b| matches!(b, b'%' | b'\\' | b';' | b'.' | b'\0')) && !path.contains("//");
        if plain {
            let p = path.trim_end_matches('/');
            let p = if p.is_empty() { "/" } else { p };
            return paths.iter().any(|c| c.eq_ignore_ascii_case(p));
        }
        path_routes_to_any(path, paths.iter())
    }

    /// The union of every AS's published signing keys (deduplicated by kid): what
    /// `/jwks.json` and `par-sidecar jwks` print.
    pub fn public_jwks(&self) -> serde_json::Value {
        let sets: Vec<_> = self.registry.clients.iter().map(|c| c.keys.load_full()).collect();
        crate::as_client::keys::union_jwks(sets.iter().map(|k| k.as_ref()))
    }
}

/// The state sealing key from its file, or a random one (single replica only).
pub fn load_sealer(settings: &Settings) -> Result<StateSealer, KeyLoadError> {
    match &settings.state_key_path {
        Some(p) => {
            let material = std::fs::read(p).map_err(|e| KeyLoadError::File {
                path: p.display().to_string(),
                message: format!("cannot read: {e}"),
            })?;
            StateSealer::from_material(&material, &settings.state_binding).map_err(|m| KeyLoadError::File {
                path: p.display().to_string(),
                message: m,
            })
        }
        None => Ok(StateSealer::random(&settings.state_binding)),
    }
}
