//! Background work: keeping every AS's metadata fresh. Each AS refreshes on its own loop, so
//! a slow or failing bank delays nobody else; first loads run concurrently under a small
//! bound so 50 ASs start in bounded time without a thundering herd. A failed refresh keeps
//! the last good document and shows up in `par_sidecar_discovery_failures_total{as}`.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::as_client::discovery::{fetch, next_delay};
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::now_secs;
use crate::sidecar::Sidecar;

/// Discovery fetches in flight at once across all ASs.
const MAX_CONCURRENT_FETCHES: usize = 8;

pub struct DiscoveryRefresher {
    pub state: Arc<Sidecar>,
}

/// One load attempt for one AS; returns whether it succeeded.
pub async fn refresh_once(state: &Sidecar, client: &AsClient) -> bool {
    let name = client.name();
    let http = client.http.load();
    match fetch(http.as_ref().as_ref(), &client.settings).await {
        Ok(m) => {
            let first = client.discovery.get().is_none();
            let (issuer, authorize, par) = (
                m.issuer.clone(),
                m.authorization_endpoint.url().clone(),
                m.par_endpoint.clone(),
            );
            state.registry.set_metadata(client, m);
            // Another AS's readiness can change with this one's endpoint (a conflict won or
            // lost): every gauge is brought up to date, not just this AS's.
            for c in &state.registry.clients {
                state
                    .metrics
                    .as_metadata_loaded
                    .with_label_values(&[c.name()])
                    .set(c.is_ready() as i64);
            }
            state.metrics.discovery_loaded.set(state.is_ready() as i64);
            if let Some(reason) = client.endpoint_conflict() {
                // Fetched, but refused: counted like a failed load so the per-bank alerts see it.
                state
                    .metrics
                    .discovery_failures
                    .with_label_values(&[name, "endpoint_conflict"])
                    .inc();
                warn!(r#as = name, authorization_endpoint = %authorize, reason = %reason, "AS metadata refused: authorization endpoint conflict");
                return false;
            }
            if first {
                info!(
                    r#as = name,
                    issuer = %issuer,
                    authorization_endpoint = %authorize,
                    par_endpoint = %par,
                    "AS metadata loaded; ready"
                );
            }
            state
                .metrics
                .discovery_last_success
                .with_label_values(&[name])
                .set(now_secs() as i64);
            true
        }
        Err(e) => {
            state
                .metrics
                .discovery_failures
                .with_label_values(&[name, e.label()])
                .inc();
            let kept = client.discovery.get().is_some();
            if !kept {
                client.set_problem(Some(format!("metadata load failed ({}): {e}", e.label())));
            }
            warn!(r#as = name, error = %e, reason = e.label(), kept_previous = kept, "AS metadata load failed");
            false
        }
    }
}

async fn refresh_loop(state: Arc<Sidecar>, client: Arc<AsClient>, first_loads: Arc<Semaphore>) {
    {
        let _permit = first_loads.acquire().await;
        refresh_once(&state, &client).await;
    }
    let mut failures = if client.discovery.get().is_some() { 0 } else { 1 };
    loop {
        let delay = next_delay(
            client.discovery.get().is_some(),
            failures,
            client.settings.discovery_refresh,
        );
        tokio::time::sleep(delay).await;
        if refresh_once(&state, &client).await {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
        }
    }
}

#[async_trait]
impl BackgroundService for DiscoveryRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let first_loads = Arc::new(Semaphore::new(MAX_CONCURRENT_FETCHES));
        let mut tasks = tokio::task::JoinSet::new();
        for c in &self.state.registry.clients {
            tasks.spawn(refresh_loop(self.state.clone(), c.clone(), first_loads.clone()));
        }
        let _ = shutdown.changed().await;
        tasks.abort_all();
    }
}
