//! Wiring: builds the pingora server with the public proxy, the admin listener and the
//! background refresher, from validated settings.

use std::sync::Arc;

use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::conn::connections::{ConnectionGuard, GuardLimits};
use crate::conn::guard_core::GuardMetrics;
use crate::egress::listener::EgressApp;
use crate::ops::admin::AdminApp;
use crate::ops::background::DiscoveryRefresher;
use crate::ops::memory::AllocatorTrimmer;
use crate::ops::reload::KeyWatcher;
use crate::proxy::PublicProxy;
use crate::sidecar::Sidecar;

/// Runs until SIGTERM/SIGINT; pingora drains in-flight requests for the grace period.
pub fn run(state: Arc<Sidecar>, threads: usize) -> ! {
    let s = &state.settings;
    crate::as_client::as_runtime::configure(threads);
    let conf = ServerConf {
        threads,
        // One worker per runtime without stealing measured ~4% faster (platform notes).
        work_stealing: false,
        grace_period_seconds: Some(s.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let proxy = pingora::proxy::http_proxy(&server.configuration, PublicProxy::new(state.clone()));
    let m = &state.metrics;
    let guarded = ConnectionGuard::new(
        proxy,
        limits(s, "public", s.max_connections),
        GuardMetrics {
            refused: m.connections_refused.clone(),
            open: m.connections_open.clone(),
            header_timeouts: m.header_timeouts.clone(),
            evicted: m.connections_evicted.with_label_values(&["public"]),
            headers_too_large: m.request_headers_too_large.with_label_values(&["public"]),
        },
    );
    // Behind an ingress (a client address header) the peer is the ingress: the proxy counts
    // the forwarded client's requests instead.
    let guarded = match s.client_address_header {
        None => guarded.per_client(
            state.client_connections.clone(),
            m.client_connections_refused.with_label_values(&["accept"]),
        ),
        Some(_) => guarded,
    };
    let mut public = Service::new("public".to_string(), guarded);
    // pingora's default read buffer is 64 KiB per connection, zero-filled at accept; 0
    // leaves it out (reads go straight to pingora's request header buffer).
    public.add_listener(
        ListenerConfig::tcp(s.public_addr.to_string())
            .l4_buffer(L4BufferSettings::default().read(s.connection_read_buffer)),
    );

    let bounds = &s.connection_bounds;
    let admin_app = ConnectionGuard::new(
        AdminApp { state: state.clone() },
        limits(s, "admin", bounds.admin_max_connections),
        side_metrics(&state, "admin"),
    );
    let mut admin = Service::new("admin".to_string(), admin_app);
    admin.add_tcp(&s.admin_addr.to_string());

    if let Some(egress_addr) = s.egress_addr {
        let egress_app = ConnectionGuard::new(
            EgressApp { state: state.clone() },
            limits(s, "egress", bounds.egress_max_connections),
            side_metrics(&state, "egress"),
        );
        let mut egress = Service::new("egress".to_string(), egress_app);
        egress.add_tcp(&egress_addr.to_string());
        server.add_service(egress);
    }

    let refresher = background_service("discovery", DiscoveryRefresher { state: state.clone() });

    server.add_service(public);
    server.add_service(admin);
    server.add_service(refresher);
    server.add_service(background_service(
        "key-watcher",
        KeyWatcher {
            state: state.clone(),
            interval: s.reload_interval,
        },
    ));
    server.add_service(background_service(
        "allocator-trim",
        AllocatorTrimmer {
            interval: s.memory_trim_interval,
        },
    ));
    server.run_forever()
}

/// One listener's bounds: its cap, and the header deadline and size every listener shares.
fn limits(s: &crate::config::Settings, listener: &'static str, max_connections: usize) -> GuardLimits {
    GuardLimits {
        listener,
        max_connections,
        pressure_percent: s.connection_bounds.pressure_percent,
        header_timeout: s.first_request_headers_timeout,
        max_header_bytes: s.connection_bounds.max_request_header_bytes,
    }
}

/// The admin and egress listeners' counters (labelled; the public ones keep their names).
fn side_metrics(state: &Sidecar, listener: &str) -> GuardMetrics {
    let m = &state.metrics;
    GuardMetrics {
        refused: m.listener_connections_refused.with_label_values(&[listener]),
        open: m.listener_connections_open.with_label_values(&[listener]),
        header_timeouts: m.listener_header_timeouts.with_label_values(&[listener]),
        evicted: m.connections_evicted.with_label_values(&[listener]),
        headers_too_large: m.request_headers_too_large.with_label_values(&[listener]),
    }
}
