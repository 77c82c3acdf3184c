//! The composition root: one `Sidecar` holds the settings, the AS registry (per-AS keys,
//! clients, metadata) what crosses planes (code map, refresh subjects) and the planes' own parts (`front::plane::Front`).
//! Named so it is not mistaken for OAuth `state` or the sealed transaction. Per-AS material is
//! held in `ArcSwap` snapshots so a reload swaps it whole while in-flight requests finish
//! with what they started with.

use std::sync::Arc;

use crate::as_client::keys::KeyLoadError;
use crate::as_client::registry::{load_client, AsClient, AsRegistry};
use crate::bounded::TtlMap;
use crate::config::Settings;
use crate::conn::client_connections::ClientConnections;
use crate::front::plane::Front;
use crate::front::sealed_state::StateSealer;
use crate::handoff::{refresh_subjects, Codes, RefreshSubjects};
use crate::metrics::Metrics;

pub struct Sidecar {
    pub settings: Arc<Settings>,
    pub registry: Arc<AsRegistry>,
    pub metrics: Arc<Metrics>,
    /// code -> what the token call needs (bounded, short TTL, taken once).
    pub codes: Arc<Codes>,
    /// The browser-facing plane: login start and callback.
    pub front: Arc<Front>,
    /// What each client address holds open on the public listener (`limits.max_connections_per_client`).
    pub client_connections: Arc<ClientConnections>,
    /// refresh token -> the `sub` it was issued for (hashes only; bounded, TTL): a refresh
    /// response's ID token must name the same user (OIDC Core §12.2).
    pub refresh_subjects: RefreshSubjects,
}

const MAX_CODES: usize = 10_000;

impl Sidecar {
    /// Loads every AS's keys and builds its mTLS client. Fails on any unusable file.
    pub fn load(settings: Settings) -> Result<Arc<Sidecar>, KeyLoadError> {
        let mut clients = Vec::with_capacity(settings.authorization_servers.len());
        for (i, a) in settings.authorization_servers.iter().enumerate() {
            clients.push(load_client(crate::protocol::AsIndex::new(i), a.clone())?);
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
        let registry = Arc::new(AsRegistry::new(clients));
        let settings = Arc::new(settings);
        let codes = Arc::new(TtlMap::new(MAX_CODES, settings.code_ttl));
        let front = Front::new(
            settings.clone(),
            registry.clone(),
            metrics.clone(),
            codes.clone(),
            sealer,
        );
        let state = Arc::new(Sidecar {
            codes,
            front: Arc::new(front),
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
