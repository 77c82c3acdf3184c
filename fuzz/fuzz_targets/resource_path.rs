//! The resource path mapper on arbitrary paths: prefix matching stays on segment
//! boundaries, and whatever is mapped stays on the target's origin and under its base path
//! (no dot segment, backslash or encoded slash gets through `Url::set_path`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use par_sidecar::egress::resource_path::{map, strip_prefix};
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for (prefix, target) in [
        ("/rs/accounts", "https://rs.example.com/api/accounts/"),
        ("/rs/", "https://rs.example.com/"),
        ("/rs/pay/", "https://rs.example.com:8443/v1/pay"),
    ] {
        let target = Url::parse(target).unwrap();
        let base: Vec<&str> = target.path_segments().unwrap().filter(|s| !s.is_empty()).collect();
        // The input as it comes, and under the prefix so the mapper is reached.
        let under = format!("{prefix}{s}");
        for path in [s, under.as_str()] {
            let Some(rest) = strip_prefix(prefix, path) else {
                continue;
            };
            assert_eq!(format!("{prefix}{rest}"), path);
            if !prefix.ends_with('/') {
                assert!(rest.is_empty() || rest.starts_with('/'), "segment boundary");
            }
            let Ok(u) = map(&target, rest) else { continue };
            assert_eq!(u.origin(), target.origin());
            assert_eq!((u.query(), u.fragment()), (None, None));
            let segs: Vec<&str> = u.path_segments().unwrap().collect();
            assert!(segs.len() >= base.len(), "{path} -> {u}");
            assert_eq!(&segs[..base.len()], &base[..], "{path} -> {u} left the base path");
            for seg in &segs {
                let lower = seg.to_ascii_lowercase();
                assert!(!matches!(
                    lower.as_str(),
                    "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
                ));
            }
        }
    }
});
