//! `limits.*`: what bounds logins, connections and memory ([`super::validate_conn`] has the
//! connection bounds beyond the public cap).

use std::time::Duration;

use super::validate_ctx::Ctx;
use super::*;

pub(super) struct Limits {
    pub max_location_bytes: usize,
    pub login_starts_per_second: u32,
    pub login_starts_per_client_per_minute: u32,
    pub client_address_header: Option<String>,
    pub max_connections: usize,
    pub max_connections_per_client: u32,
    pub upstream_keepalive_pool: usize,
    pub connection_read_buffer: usize,
    pub connection_bounds: ConnectionBounds,
    pub memory_trim_interval: Duration,
}

/// Open public-listener connections by default, sized to the shipped manifest's 128Mi limit
/// from the worst case one connection can hold: 16 KiB of headers (the default
/// `limits.max_request_header_bytes`) in flight at a slow app measured ~68 KiB per connection.
/// 1,280 public + 128 egress + 32 admin connections x 68 KiB = 96 MiB, plus ~16 MiB idle,
/// leaves ~16 MiB for a login burst's heap (README "Connection floods").
pub const DEFAULT_MAX_CONNECTIONS: usize = 1280;

/// Idle upstream (app) connections kept. pingora's default of 128 closes and reopens
/// connections at 1,000 concurrent clients; see benches/results/latest.md.
pub const DEFAULT_UPSTREAM_KEEPALIVE_POOL: usize = 1024;

/// The public listener's per-connection read buffer (pingora's own default is 64 KiB). None:
/// pingora's HTTP/1 code reads into its own request header buffer anyway, so a read buffer in
/// front of it only copies; leaving it out saved 4 KiB per connection (~3.5 MiB peak RSS at
/// 1,000 connections) at no CPU cost (benches/results/separate-runs.md, footprint).
pub const DEFAULT_CONNECTION_READ_BUFFER: usize = 0;

/// Default `limits.max_location_bytes`: the longest authorize redirect a legacy app builds
/// is well under it; a larger `Location` is refused rather than parsed.
pub const DEFAULT_MAX_LOCATION_BYTES: usize = 16 * 1024;
/// Default `limits.login_starts_per_second` (sidecar-wide; 0 disables).
pub const DEFAULT_LOGIN_STARTS_PER_SECOND: u32 = 100;
/// Default `limits.memory_trim_interval_ms` (0 disables).
pub const DEFAULT_MEMORY_TRIM_INTERVAL_MS: u64 = 1000;

pub(super) fn limits(l: file::LimitsFile, cx: &Ctx) -> Limits {
    let client_address_header = l.client_address_header.and_then(|h| {
        let name = http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("`{h}` is not a header name"));
        cx.check("limits.client_address_header", name)
            .map(|n| n.as_str().to_string())
    });
    let upstream_keepalive_pool = l.upstream_keepalive_pool.unwrap_or(DEFAULT_UPSTREAM_KEEPALIVE_POOL);
    if upstream_keepalive_pool == 0 {
        cx.add("limits.upstream_keepalive_pool", "must be at least 1");
    }
    let connection_read_buffer = l.connection_read_buffer_bytes.unwrap_or(DEFAULT_CONNECTION_READ_BUFFER);
    if !matches!(connection_read_buffer, 0 | 1024..=1_048_576) {
        cx.add(
            "limits.connection_read_buffer_bytes",
            format!("{connection_read_buffer} is neither 0 nor within 1024..=1048576"),
        );
    }
    let memory_trim_ms = l.memory_trim_interval_ms.unwrap_or(DEFAULT_MEMORY_TRIM_INTERVAL_MS);
    if !matches!(memory_trim_ms, 0 | 100..=3_600_000) {
        cx.add(
            "limits.memory_trim_interval_ms",
            format!("{memory_trim_ms} is neither 0 nor within 100..=3600000"),
        );
    }
    let connection_bounds = super::validate_conn::connection_bounds(
        [
            l.max_request_header_bytes,
            l.admin_max_connections,
            l.egress_max_connections,
        ],
        l.connection_pressure_percent,
        cx,
    );
    Limits {
        max_location_bytes: l.max_location_bytes.unwrap_or(DEFAULT_MAX_LOCATION_BYTES),
        login_starts_per_second: l.login_starts_per_second.unwrap_or(DEFAULT_LOGIN_STARTS_PER_SECOND),
        login_starts_per_client_per_minute: l.login_starts_per_client_per_minute.unwrap_or(0),
        client_address_header,
        max_connections: l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        max_connections_per_client: l.max_connections_per_client.unwrap_or(0),
        upstream_keepalive_pool,
        connection_read_buffer,
        connection_bounds,
        memory_trim_interval: Duration::from_millis(memory_trim_ms),
    }
}
