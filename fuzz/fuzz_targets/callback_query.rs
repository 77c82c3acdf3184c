//! The callback parsers on arbitrary input: the strict query parser and the sealed-state
//! opener never panic, and the opener never accepts what it did not seal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use par_sidecar::front::location::parse_query;
use par_sidecar::front::sealed_state::StateSealer;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(pairs) = parse_query(s) {
        let mut names: Vec<_> = pairs.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), pairs.len(), "duplicates are rejected");
    }
    let sealer = StateSealer::from_material(&[3u8; 32], "legacy-app").unwrap();
    assert!(sealer.open(s, 1_000, 600).is_err());
    let prefixed = format!("ps1.{s}");
    assert!(sealer.open(&prefixed, 1_000, 600).is_err());
});
