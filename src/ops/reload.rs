//! Hot rotation of signing keys and the transport certificate.
//!
//! Files are re-read when their *content* changes (polled, so Kubernetes' atomic `..data`
//! symlink swap of Secret volumes is seen like any other write) and on SIGHUP. New material
//! is swapped in whole; requests in flight finish with what they started with. A broken new
//! file keeps the old material, bumps `par_sidecar_reloads_total{outcome="failure"}` and says
//! why in the log; it is retried when the files change again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{error, info};

use crate::as_client::keys::KeySet;
use crate::as_client::registry::{build_http, AsClient, PreviousClient};
use crate::sidecar::Sidecar;

/// SHA-256 over the contents of every key and certificate file of every AS (missing files
/// hash empty).
pub fn material_fingerprint(state: &Sidecar) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for c in &state.registry.clients {
        let s = &c.settings;
        let paths = s
            .client
            .signing_keys
            .iter()
            .chain(s.client.request_object_key.iter())
            .map(|k| k.path.as_path())
            .chain(s.client.encryption_keys.iter().map(|k| k.path.as_path()))
            .chain(s.client.dpop.as_ref().and_then(|d| d.key_path.as_deref()))
            .chain([s.client.transport_cert.as_path(), s.client.transport_key.as_path()])
            .chain(s.ca_file.as_deref());
        for p in paths {
            let bytes = std::fs::read(p).unwrap_or_default();
            ctx.update(&(bytes.len() as u64).to_le_bytes());
            ctx.update(&bytes);
        }
    }
    ctx.finish().as_ref().to_vec()
}

/// Reloads every AS's material. Returns whether all of it is in use (a broken file for one
/// AS keeps that AS's current material and does not stop the others from reloading).
pub fn reload(state: &Sidecar, trigger: &str) -> bool {
    let mut all = true;
    for c in &state.registry.clients {
        all &= reload_client(state, c, trigger);
    }
    state.update_transport_expiry();
    all
}

fn reload_client(state: &Sidecar, client: &AsClient, trigger: &str) -> bool {
    let name = client.name();
    let old = client.keys.load_full();
    let keys = match KeySet::load_keeping(&client.settings.client, Some(&old)) {
        Ok(k) => k,
        Err(e) => {
            state.metrics.reloads.with_label_values(&["keys", "failure"]).inc();
            error!(trigger, r#as = name, error = %e, "reload failed; keeping the current keys and certificate");
            return false;
        }
    };
    let transport_changed = old.transport.chain != keys.transport.chain;
    if transport_changed {
        match build_http(&client.settings, &keys) {
            // A new client means a new connection pool: new handshakes with the new certificate.
            Ok(http) => {
                let retired = client.http.swap(Arc::new(http));
                client.previous_http.store(Some(Arc::new(PreviousClient {
                    http: retired,
                    retired_at: std::time::Instant::now(),
                })));
            }
            Err(e) => {
                state.metrics.reloads.with_label_values(&["transport", "failure"]).inc();
                error!(trigger, r#as = name, error = %e, "reload failed; keeping the current certificate");
                return false;
            }
        }
        state.metrics.reloads.with_label_values(&["transport", "success"]).inc();
    }
    let kids: Vec<&str> = keys.published().map(|k| k.kid()).collect();
    let signing_changed = old.published().map(|k| k.kid()).collect::<Vec<_>>() != kids;
    if signing_changed {
        state
            .metrics
            .reloads
            .with_label_values(&["signing_keys", "success"])
            .inc();
    }
    let enc_of = |k: &KeySet| k.encryption.iter().map(|e| e.public_jwk().clone()).collect::<Vec<_>>();
    if enc_of(&keys) != enc_of(&old) {
        state
            .metrics
            .reloads
            .with_label_values(&["encryption_keys", "success"])
            .inc();
    }
    let dpop_jkt = keys.dpop.as_ref().map(|k| k.thumbprint());
    let dpop_changed = old.dpop.as_ref().map(|k| k.thumbprint()) != dpop_jkt;
    if dpop_changed {
        // Tokens already issued stay bound to the old key: new logins use the new one.
        state.metrics.reloads.with_label_values(&["dpop_key", "success"]).inc();
    }
    for w in &keys.warnings {
        tracing::warn!(warning = %w, "key file permissions");
    }
    info!(
        trigger,
        r#as = name,
        signing_kid = keys.active().kid(),
        published_kids = ?kids,
        transport_subject = %keys.transport.subject,
        transport_not_after = keys.transport.not_after,
        transport_changed,
        signing_changed,
        dpop_jkt = dpop_jkt.as_deref().unwrap_or(""),
        dpop_changed,
        "key material reloaded"
    );
    client.keys.store(Arc::new(keys));
    true
}

pub struct KeyWatcher {
    pub state: Arc<Sidecar>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for KeyWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                error!(error = %e, "cannot install the SIGHUP handler");
                None
            }
        };
        let mut last = material_fingerprint(&self.state);
        loop {
            let trigger = tokio::select! {
                _ = tokio::time::sleep(self.interval) => "file_change",
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "sighup",
                _ = shutdown.changed() => return,
            };
            let now = material_fingerprint(&self.state);
            if trigger == "sighup" || now != last {
                reload(&self.state, trigger);
                // Remember what we tried, successful or not: a broken file is retried only
                // when it changes again (or on SIGHUP), not logged every interval.
                last = now;
            }
        }
    }
}
