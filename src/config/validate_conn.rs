//! `limits.*` keys that bound every connection (issue 18 item 2), apart from `validate.rs`
//! to keep that module in size.

use super::validate_ctx::Ctx;
use super::ConnectionBounds;

/// Default `limits.max_request_header_bytes`: 16 KiB is what nginx's default
/// (`large_client_header_buffers 4 8k`) lets one header line take and more than any
/// browser sends with a normal cookie jar; the memory arithmetic in README assumes it.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_PRESSURE_PERCENT: u8 = 80;
/// Probes and one or two Prometheus scrapers need a handful; the rest is headroom.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 32;
/// The app's back-channel client pool (tens of connections in practice); each costs memory
/// counted in the manifest's limit like a public one.
pub const DEFAULT_EGRESS_MAX_CONNECTIONS: usize = 128;

/// From `limits.{max_request_header_bytes, admin_max_connections, egress_max_connections}`
/// and `limits.connection_pressure_percent`; each problem is recorded, with the default as a
/// stand-in.
pub(super) fn connection_bounds(
    [header, admin, egress]: [Option<usize>; 3],
    pressure: Option<u8>,
    cx: &Ctx,
) -> ConnectionBounds {
    let header = header.unwrap_or(DEFAULT_MAX_REQUEST_HEADER_BYTES);
    if !(1024..=1_048_576).contains(&header) {
        cx.add(
            "limits.max_request_header_bytes",
            format!("{header} is outside 1024..=1048576"),
        );
    }
    let pressure = pressure.unwrap_or(DEFAULT_PRESSURE_PERCENT);
    if !(1..=100).contains(&pressure) {
        cx.add(
            "limits.connection_pressure_percent",
            format!("{pressure} is outside 1..=100"),
        );
    }
    let cap = |key: &str, v: Option<usize>, default: usize| match v.unwrap_or(default) {
        0 => {
            cx.add(key, "must be at least 1 (an unbounded listener is a memory leak)");
            default
        }
        n => n,
    };
    ConnectionBounds {
        max_request_header_bytes: header,
        pressure_percent: pressure,
        admin_max_connections: cap("limits.admin_max_connections", admin, DEFAULT_ADMIN_MAX_CONNECTIONS),
        egress_max_connections: cap("limits.egress_max_connections", egress, DEFAULT_EGRESS_MAX_CONNECTIONS),
    }
}
