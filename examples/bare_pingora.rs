//! A bare pingora `ProxyHttp`: the baseline that `benches/load.py` measures the sidecar
//! against. It forwards every request to one upstream and does nothing else, so the gap
//! between it and `par-sidecar run` is what the sidecar's own per-request work costs.
//!
//! Usage: `bare_pingora LISTEN UPSTREAM [THREADS]`, e.g.
//! `bare_pingora 127.0.0.1:8080 127.0.0.1:9000 1`.
//!
//! The server knobs are the ones `src/server.rs` gives the sidecar (keep them in step):
//! `threads`, `work_stealing: false`, `upstream_keepalive_pool_size` (the sidecar's default
//! 1024), the grace periods of the benchmark's sidecar config (`grace_period_seconds: 0`,
//! shutdown timeout 5 s), the public listener's read buffer (the default 0: none) and the
//! upstream `HttpPeer` resolved once. Same allocator (glibc: no global allocator unless the
//! sidecar is built with `--features jemalloc`) and the same TLS provider pinned at start.
//! Not in the release binary: an example, built with
//! `cargo build --release --example bare_pingora` (load.py does so after the AS double's
//! bench build, whose artifacts it reuses). Cargo builds examples with the dev-dependencies,
//! so a few crates under pingora (hyper, tokio-rustls) carry more feature flags than in the
//! sidecar binary; the plain-HTTP proxy path is the same source.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

// The sidecar's own defaults, so the baseline cannot drift from them.
use par_sidecar::config::{
    DEFAULT_CONNECTION_READ_BUFFER as CONNECTION_READ_BUFFER,
    DEFAULT_UPSTREAM_KEEPALIVE_POOL as UPSTREAM_KEEPALIVE_POOL,
};

struct Bare {
    /// Resolved once, as the sidecar does: `HttpPeer::new` per request would resolve again.
    upstream: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.upstream.clone()))
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    match args.get(i).map(|a| a.parse()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("usage: bare_pingora LISTEN UPSTREAM [THREADS]  ({what} missing or invalid)");
            std::process::exit(2);
        }
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = arg(&args, 1, "LISTEN");
    let upstream: SocketAddr = arg(&args, 2, "UPSTREAM");
    let threads: usize = if args.len() > 3 { arg(&args, 3, "THREADS") } else { 1 };
    let conf = ServerConf {
        threads: threads.max(1),
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: UPSTREAM_KEEPALIVE_POOL,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Bare {
            upstream: HttpPeer::new(upstream, false, String::new()),
        },
    );
    // Named like the sidecar's listener: per-thread CPU then reads the same in both.
    let mut public = Service::new("public".to_string(), proxy);
    public.add_listener(
        ListenerConfig::tcp(listen.to_string()).l4_buffer(L4BufferSettings::default().read(CONNECTION_READ_BUFFER)),
    );
    server.add_service(public);
    server.run_forever()
}
