//! Shared, read-mostly state: settings, key material, the AS client and metadata. Key
//! material and the AS client are `ArcSwap` snapshots so a reload swaps them whole while
//! in-flight requests finish with what they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use std::time::Duration;

use crate::bounded::TtlMap;
use crate::config::Settings;
use crate::discovery::DiscoveryCache;
use crate::http_client::{AsHttp, ReqwestAs};
use crate::jarm::AsJwks;
use crate::keys::{KeyLoadError, KeySet};
use crate::metrics::Metrics;
use crate::sealed_state::StateSealer;

pub struct SidecarState {
    pub settings: Settings,
    pub keys: ArcSwap<KeySet>,
    pub http: ArcSwap<Box<dyn AsHttp>>,
    /// The client with the previous transport certificate, kept after a rotation: tokens
    /// bound to the old certificate stay usable until they expire (MTLS-8).
    pub previous_http: arc_swap::ArcSwapOption<PreviousClient>,
    pub discovery: DiscoveryCache,
    pub metrics: Arc<Metrics>,
    pub sealer: StateSealer,
    /// code -> what the token call needs (bounded, short TTL, taken once).
    pub codes: TtlMap<String, CodeRecord>,
    /// Nonces of sealed states already used at the callback.
    pub replay: TtlMap<String, ()>,
    pub jwks: AsJwks,
    /// Bounds concurrent calls to the AS (PAR and egress).
    pub as_permits: tokio::sync::Semaphore,
    /// redirect_uri paths seen in pushed requests (bounded), plus the configured ones.
    /// Read on every proxied request, so lock-free; written rarely (copy on write).
    pub callback_paths: ArcSwap<Vec<String>>,
}

pub struct PreviousClient {
    pub http: Arc<Box<dyn AsHttp>>,
    pub retired_at: std::time::Instant,
}

/// What the sidecar remembers between the callback and the app's token call.
#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub verifier: Option<String>,
    pub redirect_uri: Option<String>,
}

/// Authorization codes live 60 s at a FAPI 2.0 AS; keep a little more.
const CODE_TTL: Duration = Duration::from_secs(120);
const MAX_CODES: usize = 10_000;
const MAX_REPLAY: usize = 50_000;
const MAX_LEARNED_PATHS: usize = 16;
const MAX_CONCURRENT_AS_CALLS: usize = 256;

impl SidecarState {
    /// Loads keys and builds the mTLS client. Fails on any unusable file.
    pub fn load(settings: Settings) -> Result<Arc<SidecarState>, KeyLoadError> {
        let keys = KeySet::load(&settings)?;
        let http = build_http(&settings, &keys)?;
        let sealer = load_sealer(&settings)?;
        Ok(Self::with_parts(settings, keys, http, sealer))
    }

    /// Assembles state from parts (tests inject a fake AS client here).
    pub fn with_parts(
        settings: Settings,
        keys: KeySet,
        http: Box<dyn AsHttp>,
        sealer: StateSealer,
    ) -> Arc<SidecarState> {
        let metrics = Arc::new(Metrics::new());
        metrics.transport_not_after.set(keys.transport.not_after);
        let max_age = settings.state_max_age;
        Arc::new(SidecarState {
            callback_paths: ArcSwap::from_pointee(settings.callback_paths.clone()),
            sealer,
            codes: TtlMap::new(MAX_CODES, CODE_TTL),
            replay: TtlMap::new(MAX_REPLAY, max_age),
            jwks: AsJwks::default(),
            as_permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_AS_CALLS),
            settings,
            keys: ArcSwap::from_pointee(keys),
            http: ArcSwap::from_pointee(http),
            previous_http: arc_swap::ArcSwapOption::empty(),
            discovery: DiscoveryCache::default(),
            metrics,
        })
    }

    pub fn is_ready(&self) -> bool {
        self.discovery.get().is_some()
    }

    /// Remembers the path of a pushed redirect_uri so its callback is checked.
    pub fn learn_callback_path(&self, path: &str) {
        if self.is_callback_path(path) {
            return;
        }
        self.callback_paths.rcu(|paths| {
            let mut next = (**paths).clone();
            if !next.iter().any(|p| p == path) && next.len() < MAX_LEARNED_PATHS + self.settings.callback_paths.len() {
                next.push(path.to_string());
            }
            next
        });
    }

    pub fn is_callback_path(&self, path: &str) -> bool {
        self.callback_paths.load().iter().any(|p| p == path)
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
            StateSealer::from_material(&material, settings.client_id.as_str()).map_err(|m| KeyLoadError::File {
                path: p.display().to_string(),
                message: m,
            })
        }
        None => Ok(StateSealer::random(settings.client_id.as_str())),
    }
}

pub fn build_http(settings: &Settings, keys: &KeySet) -> Result<Box<dyn AsHttp>, KeyLoadError> {
    Ok(Box::new(ReqwestAs::new(
        &keys.transport,
        settings.as_ca_file.as_deref(),
        settings.connect_timeout,
        settings.max_as_response_bytes,
    )?))
}
