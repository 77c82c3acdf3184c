//! Every metric family, its name and labels, in one place. Hot-path counters are resolved
//! to children once at start-up so a proxied request updates an atomic, with no label
//! lookup, lock or allocation.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

mod labels;
pub use labels::{label, CallbackLabels, EgressLabels, TokenCheckLabels};

/// `reason` values of `par_sidecar_dpop_errors_total`.
pub const DPOP_ERROR_REASONS: [&str; 4] = [
    // A proof (or the retry's client assertion) could not be signed.
    "signing_failed",
    // `use_dpop_nonce` without a usable `DPoP-Nonce` header: nothing to retry with.
    "nonce_missing",
    // `use_dpop_nonce` again after the retry with the server's nonce.
    "nonce_rejected",
    // The server answered `invalid_dpop_proof`.
    "invalid_dpop_proof",
];

pub struct Metrics {
    pub registry: Registry,
    pub par_requests: IntCounterVec,
    pub par_duration: HistogramVec,
    pub par_expires_in: Histogram,
    pub redirects: IntCounterVec,
    pub redirect_rewritten: IntCounter,
    pub redirect_passed: IntCounter,
    pub browser_errors: IntCounterVec,
    pub signing_duration: HistogramVec,
    /// Client assertions sent, by AS and `source`: `pooled` (pre-signed) or `inline`.
    pub client_assertions: IntCounterVec,
    /// Pooled client assertions dropped unused, by AS and `reason`: `stale` or `rotated`.
    pub assertion_pool_discarded: IntCounterVec,
    pub discovery_last_success: IntGaugeVec,
    pub as_metadata_loaded: IntGaugeVec,
    pub discovery_failures: IntCounterVec,
    pub discovery_loaded: IntGauge,
    pub transport_not_after: IntGauge,
    pub build_info: IntGaugeVec,
    pub pkce: IntCounterVec,
    pub callback_checks: IntCounterVec,
    pub egress_requests: IntCounterVec,
    pub egress_duration: HistogramVec,
    pub jwks_refreshes: IntCounterVec,
    pub par_retries: IntCounterVec,
    pub reloads: IntCounterVec,
    pub token_checks: IntCounterVec,
    pub login_rate_limited: IntCounterVec,
    pub token_revocations: IntCounterVec,
    pub dpop_proofs: IntCounterVec,
    pub dpop_nonce_retries: IntCounterVec,
    pub dpop_errors: IntCounterVec,
    pub dpop_previous_key_retries: IntCounterVec,
    /// Public-listener connections closed at accept: `limits.max_connections` open with a
    /// request in flight on each, or the address over its share with nothing idle.
    pub connections_refused: IntCounter,
    /// Public-listener connections open now (counted from accept to close).
    pub connections_open: IntGauge,
    /// Public-listener connections closed because a request's headers (the first or a later
    /// one) did not arrive within `timeouts.first_request_headers_ms`.
    pub header_timeouts: IntCounter,
    /// Refused by `limits.max_connections_per_client`, by `stage`: `accept` (a connection
    /// closed at once) or `request` (behind the ingress: a request answered 429).
    pub client_connections_refused: IntCounterVec,
    /// Per listener (`public`, `admin`, `egress`): idle connections closed to make room at
    /// the cap, and connections answered 431 for headers over `limits.max_request_header_bytes`.
    pub connections_evicted: IntCounterVec,
    pub request_headers_too_large: IntCounterVec,
    /// The admin and egress listeners' counterparts of `connections_refused`,
    /// `connections_open` and `header_timeouts` (the public ones keep their names).
    pub listener_connections_refused: IntCounterVec,
    pub listener_connections_open: IntGaugeVec,
    pub listener_header_timeouts: IntCounterVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

impl Metrics {
    /// Registers every family. Long on purpose (~400 lines, one short block per family, in
    /// README "Metrics" order): the names, help texts and label sets of the whole surface
    /// read in one place, which is what an operator writing alerts needs; splitting it by
    /// plane would scatter them and gain no logic.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let par_requests = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_par_requests_total",
                    "PAR calls by outcome and AS error code",
                ),
                &["as", "outcome", "as_error"],
            )
            .unwrap(),
        );
        let par_duration = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new("par_sidecar_par_duration_seconds", "PAR round trip including signing")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["as", "outcome"],
            )
            .unwrap(),
        );
        let par_expires_in = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "par_sidecar_par_expires_in_seconds",
                    "expires_in of request_uri values the AS issued",
                )
                .buckets(vec![5.0, 10.0, 30.0, 60.0, 90.0, 300.0, 600.0]),
            )
            .unwrap(),
        );
        let redirects = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_redirects_total",
                    "Upstream 3xx responses: rewritten to PAR, passed through, or failed closed",
                ),
                &["action"],
            )
            .unwrap(),
        );
        let browser_errors = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_errors_total",
                    "Error pages served to the browser, by error code",
                ),
                &labels::BROWSER_ERRORS,
            )
            .unwrap(),
        );
        let signing_duration = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new("par_sidecar_signing_duration_seconds", "Time to sign one JWT").buckets(vec![
                    0.000_02, 0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                ]),
                &["alg", "purpose"],
            )
            .unwrap(),
        );
        let client_assertions = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_client_assertions_total",
                    "private_key_jwt client assertions sent, by AS and source (pooled: pre-signed, inline: signed on the call)",
                ),
                &["as", "source"],
            )
            .unwrap(),
        );
        let assertion_pool_discarded = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_assertion_pool_discarded_total",
                    "Pre-signed client assertions dropped unused, by AS and reason (stale, rotated)",
                ),
                &["as", "reason"],
            )
            .unwrap(),
        );
        let discovery_last_success = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "par_sidecar_discovery_last_success_timestamp_seconds",
                    "Unix time of the last successful AS metadata load, per AS",
                ),
                &["as"],
            )
            .unwrap(),
        );
        let as_metadata_loaded = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "par_sidecar_as_metadata_loaded",
                    "1 while this AS has usable metadata (logins at it can start), per AS",
                ),
                &["as"],
            )
            .unwrap(),
        );
        let discovery_failures = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_discovery_failures_total",
                    "Failed AS metadata loads by AS and reason",
                ),
                &["as", "reason"],
            )
            .unwrap(),
        );
        let discovery_loaded = reg(
            &r,
            IntGauge::new(
                "par_sidecar_discovery_loaded",
                "1 once at least one AS has metadata loaded (readiness)",
            )
            .unwrap(),
        );
        let transport_not_after = reg(
            &r,
            IntGauge::new(
                "par_sidecar_transport_certificate_not_after_timestamp_seconds",
                "notAfter of the mTLS transport certificate in use",
            )
            .unwrap(),
        );
        let build_info = reg(
            &r,
            IntGaugeVec::new(Opts::new("par_sidecar_build_info", "Build information"), &["version"]).unwrap(),
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let pkce = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_pkce_total",
                    "PKCE handling per pushed request: injected, upgraded (plain->S256), passed",
                ),
                &["action"],
            )
            .unwrap(),
        );
        let callback_checks = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_callback_checks_total",
                    "Authorization responses checked at the app's redirect_uri, by AS and outcome",
                ),
                &labels::CALLBACK_CHECKS,
            )
            .unwrap(),
        );
        let egress_requests = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_egress_requests_total",
                    "Back-channel calls from the app through the egress listener, by route, outcome and AS error",
                ),
                &labels::EGRESS_REQUESTS,
            )
            .unwrap(),
        );
        let egress_duration = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "par_sidecar_egress_duration_seconds",
                    "Egress call round trip to the AS or resource server",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["as", "route"],
            )
            .unwrap(),
        );
        let par_retries = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_par_retries_total",
                    "PAR attempts retried, by AS and reason",
                ),
                &["as", "reason"],
            )
            .unwrap(),
        );
        let reloads = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_reloads_total",
                    "Key and certificate reloads by material and outcome",
                ),
                &["material", "outcome"],
            )
            .unwrap(),
        );
        let jwks_refreshes = reg(
            &r,
            IntCounterVec::new(
                Opts::new("par_sidecar_jwks_refreshes_total", "AS JWKS fetches by AS and outcome"),
                &["as", "outcome"],
            )
            .unwrap(),
        );
        let token_checks = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_token_response_checks_total",
                    "Token responses checked before the app sees them (ID token and shape), by AS, grant and outcome (`valid` or the failed check)",
                ),
                &labels::TOKEN_CHECKS,
            )
            .unwrap(),
        );
        let token_revocations = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_token_revocations_total",
                    "Best-effort revocations of tokens from refused token responses, by AS and outcome",
                ),
                &["as", "outcome"],
            )
            .unwrap(),
        );
        let login_rate_limited = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_login_rate_limited_total",
                    "Login starts refused by a rate limit, by AS and scope (global, fair_share or client)",
                ),
                &["as", "scope"],
            )
            .unwrap(),
        );
        let dpop_proofs = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_dpop_proofs_total",
                    "DPoP proofs signed for egress calls, by AS and route",
                ),
                &["as", "route"],
            )
            .unwrap(),
        );
        let dpop_nonce_retries = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_dpop_nonce_retries_total",
                    "Egress calls retried once with the server's DPoP nonce (use_dpop_nonce), by AS and route",
                ),
                &["as", "route"],
            )
            .unwrap(),
        );
        let dpop_errors = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_dpop_errors_total",
                    "DPoP failures on egress calls, by AS, route and reason",
                ),
                &["as", "route", "reason"],
            )
            .unwrap(),
        );
        let connections_refused = reg(
            &r,
            IntCounter::new(
                "par_sidecar_connections_refused_total",
                "Public-listener connections closed at accept because limits.max_connections were open and none was idle (or the address held its share)",
            )
            .unwrap(),
        );
        let connections_open = reg(
            &r,
            IntGauge::new("par_sidecar_connections_open", "Public-listener connections open now").unwrap(),
        );
        let header_timeouts = reg(
            &r,
            IntCounter::new(
                "par_sidecar_first_request_header_timeouts_total",
                "Public-listener connections closed because a request's headers (the first or a later one) did not arrive in time",
            )
            .unwrap(),
        );
        let client_connections_refused = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_client_connections_refused_total",
                    "Connections (stage=accept) or requests (stage=request, behind the ingress) refused because one client address held limits.max_connections_per_client",
                ),
                &["stage"],
            )
            .unwrap(),
        );
        for stage in ["accept", "request"] {
            client_connections_refused.with_label_values(&[stage]);
        }
        let per_listener = |name: &str, help: &str, listeners: &[&str]| {
            let c = reg(&r, IntCounterVec::new(Opts::new(name, help), &["listener"]).unwrap());
            for l in listeners {
                c.with_label_values(&[l]);
            }
            c
        };
        let connections_evicted = per_listener(
            "par_sidecar_connections_evicted_total",
            "Idle connections (no request in flight) closed to make room for a new one at the listener's cap, by listener",
            &["public", "admin", "egress"],
        );
        let request_headers_too_large = per_listener(
            "par_sidecar_request_headers_too_large_total",
            "Connections answered 431 because a request's headers grew past limits.max_request_header_bytes, by listener",
            &["public", "admin", "egress"],
        );
        let listener_connections_refused = per_listener(
            "par_sidecar_listener_connections_refused_total",
            "Admin or egress connections closed at accept: the listener's cap full of requests in flight",
            &["admin", "egress"],
        );
        let listener_header_timeouts = per_listener(
            "par_sidecar_listener_header_timeouts_total",
            "Admin or egress connections closed because a request's headers did not arrive in time",
            &["admin", "egress"],
        );
        let listener_connections_open = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "par_sidecar_listener_connections_open",
                    "Admin or egress connections open now",
                ),
                &["listener"],
            )
            .unwrap(),
        );
        let dpop_previous_key_retries = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "par_sidecar_dpop_previous_key_retries_total",
                    "Userinfo/resource calls retried with the DPoP key before the last rotation (a token bound to it), by AS and route",
                ),
                &["as", "route"],
            )
            .unwrap(),
        );
        // Families that alerts use but that only move on rare events exist from the start.
        for material in ["keys", "signing_keys", "transport", "dpop_key"] {
            for outcome in ["success", "failure"] {
                reloads.with_label_values(&[material, outcome]);
            }
        }
        redirects.with_label_values(&["failed"]);
        Metrics {
            redirect_rewritten: redirects.with_label_values(&["rewritten"]),
            redirect_passed: redirects.with_label_values(&["passed_through"]),
            registry: r,
            par_requests,
            par_duration,
            par_expires_in,
            redirects,
            browser_errors,
            signing_duration,
            client_assertions,
            assertion_pool_discarded,
            discovery_last_success,
            as_metadata_loaded,
            discovery_failures,
            discovery_loaded,
            transport_not_after,
            build_info,
            pkce,
            callback_checks,
            egress_requests,
            egress_duration,
            jwks_refreshes,
            par_retries,
            reloads,
            token_checks,
            login_rate_limited,
            token_revocations,
            dpop_proofs,
            dpop_nonce_retries,
            dpop_errors,
            dpop_previous_key_retries,
            connections_refused,
            connections_open,
            header_timeouts,
            client_connections_refused,
            connections_evicted,
            request_headers_too_large,
            listener_connections_refused,
            listener_connections_open,
            listener_header_timeouts,
        }
    }

    /// Families that alerts use but that only move on rare events exist from the start,
    /// for every configured AS.
    pub fn register_as(&self, name: &str) {
        self.as_metadata_loaded.with_label_values(&[name]).set(0);
        for reason in [
            "connect",
            "timeout",
            "tls",
            "http_status",
            "bad_json",
            "issuer_mismatch",
            "bad_metadata",
            "endpoint_conflict",
        ] {
            self.discovery_failures.with_label_values(&[name, reason]);
        }
    }

    /// The DPoP failure series of a DPoP AS exist from the start (alerts see a 0, not a gap).
    pub fn register_dpop(&self, name: &str) {
        for route in ["token", "userinfo", "resource"] {
            for reason in DPOP_ERROR_REASONS {
                self.dpop_errors.with_label_values(&[name, route, reason]);
            }
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8192);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
