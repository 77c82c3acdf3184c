//! The callback pre-filter on arbitrary input (issue 18 H1): never a panic, and never a
//! miss where a well-kept parser (the `url` crate's form parser, serde_json) reads a response
//! parameter: in a query, in a body, or behind a path that normalises to the callback.
#![no_main]
use libfuzzer_sys::fuzz_target;
use par_sidecar::front::prefilter::{check_body, normalize_path, routes_to, scan_query, RESPONSE_NAMES};

/// How lenient parsers key a name: trimmed, lowercase, cut at `[`.
fn lenient(name: &str) -> String {
    let cut = name.split(['[', '\0']).next().unwrap_or("");
    cut.trim_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control()).to_ascii_lowercase()
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (path, rest) = s.split_once('?').unwrap_or((s, ""));
    let n = normalize_path(path);
    assert!(n.starts_with('/'), "{n}");
    assert!(!n.contains("//") && !n.contains('\\') && !n.contains(';'), "{n}");
    assert!(n == "/" || !n.ends_with('/'), "{n}");
    assert!(!n.split('/').any(|seg| seg == "." || seg == ".."), "{n}");
    assert!(!n.bytes().any(|b| b.is_ascii_uppercase()), "{n}");
    // Normalising the normal form keeps it on (or off) the callback when it has no escapes.
    if !n.contains('%') {
        assert_eq!(routes_to(&normalize_path(&n), "/callback"), routes_to(&n, "/callback"), "{n}");
    }
    let read_by_url = url::form_urlencoded::parse(rest.as_bytes()).any(|(k, _)| RESPONSE_NAMES.contains(&lenient(&k).as_str()));
    if read_by_url {
        assert!(scan_query(rest).any(), "a response parameter missed in {rest:?}");
        assert!(check_body(None, None, rest.as_bytes()).is_err(), "missed in a body: {rest:?}");
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(rest) {
        if let Some(obj) = v.as_object() {
            if obj.keys().any(|k| RESPONSE_NAMES.contains(&lenient(k).as_str())) {
                assert!(check_body(Some(b"application/json"), None, rest.as_bytes()).is_err());
            }
        }
    }
});
