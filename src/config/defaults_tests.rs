//! README's configuration table against the code: the defaults it lists are the ones a
//! config that leaves the key out gets, so neither can drift from the other.

use std::path::Path;

use super::tests::MINIMAL;
use super::Settings;

/// The Default column of the row for `key` in README "Configuration".
fn readme_default(key: &str) -> String {
    let readme = include_str!("../../README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| `{key}` |")))
        .unwrap_or_else(|| panic!("README configuration table has no row for `{key}`"));
    row.split('|').nth(2).unwrap_or_default().trim().to_string()
}

#[test]
fn readme_defaults_are_the_code_defaults() {
    let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    let a = &s.authorization_servers[0];
    let b = &s.connection_bounds;
    let secs = |d: std::time::Duration| d.as_secs().to_string();
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    for (key, code) in [
        (
            "authorization_server.discovery_refresh_seconds",
            secs(a.discovery_refresh),
        ),
        (
            "client.request_object_lifetime_seconds",
            secs(a.client.request_object_lifetime),
        ),
        ("client.assertion_lifetime_seconds", secs(a.client.assertion_lifetime)),
        ("callback.code_ttl_seconds", secs(s.code_ttl)),
        ("callback.state_max_age_seconds", secs(s.state_max_age)),
        ("egress.clock_skew_seconds", s.clock_skew.to_string()),
        ("timeouts.first_request_headers_ms", ms(s.first_request_headers_timeout)),
        ("limits.max_location_bytes", s.max_location_bytes.to_string()),
        ("limits.max_as_response_bytes", a.max_as_response_bytes.to_string()),
        ("limits.max_connections", s.max_connections.to_string()),
        (
            "limits.max_request_header_bytes",
            b.max_request_header_bytes.to_string(),
        ),
        ("limits.connection_pressure_percent", b.pressure_percent.to_string()),
        ("limits.admin_max_connections", b.admin_max_connections.to_string()),
        ("limits.egress_max_connections", b.egress_max_connections.to_string()),
        ("limits.upstream_keepalive_pool", s.upstream_keepalive_pool.to_string()),
        ("limits.memory_trim_interval_ms", ms(s.memory_trim_interval)),
        ("limits.login_starts_per_second", s.login_starts_per_second.to_string()),
        ("shutdown.grace_period_seconds", secs(s.grace_period)),
        ("reload.check_interval_seconds", secs(s.reload_interval)),
    ] {
        assert_eq!(readme_default(key), code, "README default of `{key}`");
    }
    // Rows whose Default column says more than the number.
    for (key, prefix) in [
        (
            "limits.connection_read_buffer_bytes",
            s.connection_read_buffer.to_string(),
        ),
        (
            "limits.max_connections_per_client",
            s.max_connections_per_client.to_string(),
        ),
        (
            "limits.login_starts_per_client_per_minute",
            s.login_starts_per_client_per_minute.to_string(),
        ),
    ] {
        let readme = readme_default(key);
        assert!(
            readme.starts_with(&format!("{prefix} ")),
            "README default of `{key}`: {readme}"
        );
    }
    let timeouts = readme_default("timeouts.connect_ms` / `par_total_ms` / `discovery_total_ms");
    let code = format!(
        "{} / {} / {}",
        ms(a.connect_timeout),
        ms(a.par_timeout),
        ms(a.discovery_timeout)
    );
    assert_eq!(timeouts, code);
    let egress_body = readme_default("egress.max_body_bytes");
    assert_eq!((egress_body.as_str(), s.egress_max_body), ("1 MiB", 1024 * 1024));
}
