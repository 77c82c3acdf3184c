//! Background work: keeping AS metadata fresh. A failed refresh keeps the last good
//! document and shows up in `par_sidecar_discovery_failures_total`.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{info, warn};

use crate::discovery::{fetch, next_delay};
use crate::request_object::now_secs;
use crate::state::SidecarState;

pub struct DiscoveryRefresher {
    pub state: Arc<SidecarState>,
}

impl DiscoveryRefresher {
    /// One load attempt; returns whether it succeeded.
    pub async fn refresh_once(&self) -> bool {
        let s = &self.state;
        let http = s.http.load();
        match fetch(http.as_ref().as_ref(), &s.settings).await {
            Ok(m) => {
                let first = s.discovery.get().is_none();
                if first {
                    info!(
                        issuer = %m.issuer,
                        authorization_endpoint = %m.authorization_endpoint.url(),
                        par_endpoint = %m.par_endpoint,
                        "AS metadata loaded; ready"
                    );
                }
                s.discovery.set(m);
                s.metrics.discovery_loaded.set(1);
                s.metrics.discovery_last_success.set(now_secs() as i64);
                true
            }
            Err(e) => {
                s.metrics.discovery_failures.with_label_values(&[e.label()]).inc();
                warn!(error = %e, reason = e.label(), kept_previous = s.discovery.get().is_some(), "AS metadata load failed");
                false
            }
        }
    }
}

#[async_trait]
impl BackgroundService for DiscoveryRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut failures = 0u32;
        loop {
            if self.refresh_once().await {
                failures = 0;
            } else {
                failures = failures.saturating_add(1);
            }
            let delay = next_delay(self.state.is_ready(), failures, self.state.settings.discovery_refresh);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
