//! Shared, read-mostly state: settings, key material, the AS client and metadata. Key
//! material and the AS client are `ArcSwap` snapshots so a reload swaps them whole while
//! in-flight requests finish with what they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::discovery::DiscoveryCache;
use crate::http_client::{AsHttp, ReqwestAs};
use crate::keys::{KeyLoadError, KeySet};
use crate::metrics::Metrics;

pub struct SidecarState {
    pub settings: Settings,
    pub keys: ArcSwap<KeySet>,
    pub http: ArcSwap<Box<dyn AsHttp>>,
    pub discovery: DiscoveryCache,
    pub metrics: Arc<Metrics>,
}

impl SidecarState {
    /// Loads keys and builds the mTLS client. Fails on any unusable file.
    pub fn load(settings: Settings) -> Result<Arc<SidecarState>, KeyLoadError> {
        let keys = KeySet::load(&settings)?;
        let http = build_http(&settings, &keys)?;
        Ok(Self::with_parts(settings, keys, http))
    }

    /// Assembles state from parts (tests inject a fake AS client here).
    pub fn with_parts(
        settings: Settings,
        keys: KeySet,
        http: Box<dyn AsHttp>,
    ) -> Arc<SidecarState> {
        let metrics = Arc::new(Metrics::new());
        metrics.transport_not_after.set(keys.transport.not_after);
        Arc::new(SidecarState {
            settings,
            keys: ArcSwap::from_pointee(keys),
            http: ArcSwap::from_pointee(http),
            discovery: DiscoveryCache::default(),
            metrics,
        })
    }

    pub fn is_ready(&self) -> bool {
        self.discovery.get().is_some()
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
