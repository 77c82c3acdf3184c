//! The authorize-redirect parser on arbitrary `Location` bytes: never panics, and whatever
//! it accepts is clean (no control characters, no forbidden parameters, our client).
#![no_main]
use libfuzzer_sys::fuzz_target;
use par_sidecar::front::location::{detect, Detection};
use par_sidecar::protocol::authorize::AuthorizeEndpoint;
use par_sidecar::protocol::ClientId;

fuzz_target!(|data: &[u8]| {
    let ep = AuthorizeEndpoint::new(url::Url::parse("https://as.example.com/authorize?tenant=t").unwrap());
    let cid = ClientId::new("legacy-app").unwrap();
    // Also try the input as a query string on our endpoint, so the fuzzer reaches the parser.
    let mut ours = b"https://as.example.com/authorize?client_id=legacy-app&".to_vec();
    ours.extend_from_slice(data);
    for loc in [data, &ours[..]] {
        if let Detection::Ours(r) = detect(loc, &ep, &cid, 8192) {
            assert_eq!(r.get_str("client_id"), Some("legacy-app"));
            for k in ["request", "request_uri", "aud", "iss", "sub"] {
                assert!(r.params.get(k).is_none());
            }
            for (_, v) in &r.params {
                if let Some(s) = v.as_str() {
                    assert!(!s.chars().any(|c| c.is_control()));
                }
            }
            let rewritten = ep.rewritten_location(&cid, "urn:x");
            assert!(url::Url::parse(&rewritten).is_ok());
        }
    }
});
