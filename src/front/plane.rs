//! What the browser-facing plane reads and keeps across requests: built once by the
//! composition root (`sidecar::Sidecar`), which lends it the settings, AS registry, metrics
//! and code map it shares with the other planes. Front code takes `&Front`, never the root.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::as_client::registry::AsRegistry;
use crate::bounded::TtlMap;
use crate::config::Settings;
use crate::front::login_limit::LoginLimiter;
use crate::front::prefilter::{normalize_path, path_routes_to_any};
use crate::front::sealed_state::StateSealer;
use crate::handoff::Codes;
use crate::metrics::Metrics;

pub struct Front {
    pub settings: Arc<Settings>,
    pub registry: Arc<AsRegistry>,
    pub metrics: Arc<Metrics>,
    pub sealer: StateSealer,
    /// code -> what the token call needs (bounded, short TTL, taken once); shared with egress.
    pub codes: Arc<Codes>,
    /// Nonces of sealed states already used at the callback.
    pub replay: TtlMap<String, ()>,
    /// Login starts per second, globally and per client.
    pub login_limiter: LoginLimiter,
    /// redirect_uri paths seen in pushed requests (bounded), plus the configured ones, each
    /// normalised (`front::prefilter::normalize_path`).
    /// Read on every proxied request, so lock-free; written rarely (copy on write).
    pub callback_paths: ArcSwap<Vec<String>>,
}

const MAX_REPLAY: usize = 50_000;
const MAX_LEARNED_PATHS: usize = 16;

impl Front {
    pub fn new(
        settings: Arc<Settings>,
        registry: Arc<AsRegistry>,
        metrics: Arc<Metrics>,
        codes: Arc<Codes>,
        sealer: StateSealer,
    ) -> Front {
        Front {
            callback_paths: ArcSwap::from_pointee(settings.callback_paths.iter().map(|p| normalize_path(p)).collect()),
            sealer,
            codes,
            replay: TtlMap::new(MAX_REPLAY, settings.state_max_age),
            login_limiter: LoginLimiter::new(
                settings.login_starts_per_second,
                settings.login_starts_per_client_per_minute,
            ),
            settings,
            registry,
            metrics,
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
}
