use super::*;

fn ep() -> AuthorizeEndpoint {
    AuthorizeEndpoint::new(Url::parse("https://as.example.com/authorize").unwrap())
}

fn cid() -> ClientId {
    ClientId::new("legacy-app").unwrap()
}

fn detect_str(loc: &str) -> Detection {
    detect(loc.as_bytes(), &ep(), &cid(), 4096)
}

const GOOD: &str = "https://as.example.com/authorize?response_type=code&client_id=legacy-app\
&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&scope=openid+profile&state=s%20t&nonce=n1";

#[test]
fn recognises_and_decodes_the_apps_redirect() {
    let Detection::Ours(r) = detect_str(GOOD) else {
        panic!("not detected")
    };
    assert_eq!(r.get_str("redirect_uri"), Some("https://app.example.com/cb"));
    assert_eq!(r.get_str("scope"), Some("openid profile"));
    assert_eq!(r.get_str("state"), Some("s t"));
    assert_eq!(r.get_str("client_id"), Some("legacy-app"));
}

#[test]
fn json_parameters_become_json_values() {
    let loc = format!(
        "{GOOD}&claims=%7B%22userinfo%22%3A%7B%22email%22%3Anull%7D%7D&authorization_details=%5B%7B%22type%22%3A%22x%22%7D%5D&max_age=300"
    );
    let Detection::Ours(r) = detect_str(&loc) else { panic!() };
    assert_eq!(r.params["claims"]["userinfo"]["email"], Value::Null);
    assert_eq!(r.params["authorization_details"][0]["type"], "x");
    assert_eq!(r.params["max_age"], 300);
}

#[test]
fn other_destinations_pass_through() {
    for loc in [
        "/login",
        "relative/path",
        "as.example.com/authorize?client_id=legacy-app",
        "https://as.example.com.evil/authorize?client_id=legacy-app",
        "https://as.example.com@evil.com/authorize?client_id=legacy-app",
        "https://evil.com/authorize?x=https://as.example.com/authorize",
        "https://as.example.com/authorize?client_id=another-app&response_type=code",
        "https://as.example.com/authorize?response_type=code",
        // The AS's host without our client: another app's client, the AS's own pages.
        "https://as.example.com/authorize/?client_id=another-app",
        "https://as.example.com/Authorize?response_type=code",
        "https://as.example.com/logout?post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2F",
        "http://as.example.com/authorize?response_type=code",
        "//evil.com/authorize?client_id=legacy-app",
        "\\\\evil.com/authorize?client_id=legacy-app",
        "/as.example.com/authorize?client_id=legacy-app",
        "",
    ] {
        assert_eq!(detect_str(loc), Detection::NotOurs, "{loc}");
    }
}

#[test]
fn case_default_port_and_trailing_dot_are_the_same_endpoint() {
    for loc in [
        "HTTPS://AS.EXAMPLE.COM/authorize?client_id=legacy-app",
        "https://as.example.com:443/authorize?client_id=legacy-app",
        "https://as.example.com./authorize?client_id=legacy-app",
    ] {
        assert!(matches!(detect_str(loc), Detection::Ours(_)), "{loc}");
    }
}

/// On the AS's host with our client_id: the endpoint as a browser reads it is pushed...
#[test]
fn browser_equivalent_forms_of_the_endpoint_are_pushed() {
    for loc in [
        "https://as.example.com/%61uthorize?client_id=legacy-app",
        "https://as.example.com/auth%6Frize?client_id=legacy-app",
        "https://as.example.com/x/../authorize?client_id=legacy-app",
        "https://as.example.com/x/%2e%2E/authorize?client_id=legacy-app",
        "https:\\\\as.example.com\\authorize?client_id=legacy-app",
        "https:/\\as.example.com/authorize?client_id=legacy-app",
        "https:///as.example.com/authorize?client_id=legacy-app",
        "https://as.example.com/authorize?client%5Fid=legacy%2Dapp",
    ] {
        let Detection::Ours(r) = detect_str(loc) else {
            panic!("{loc}: {:?}", detect_str(loc))
        };
        assert_eq!(r.get_str("client_id"), Some("legacy-app"), "{loc}");
    }
}

/// ...and everything else there is refused: never forwarded with its plain query.
#[test]
fn near_misses_with_our_client_id_fail_closed() {
    for loc in [
        "https://as.example.com/authorize/?client_id=legacy-app",
        "https://as.example.com/Authorize?client_id=legacy-app",
        "https://as.example.com/AUTHORIZE?client_id=legacy-app",
        "https://as.example.com/authorize%2F?client_id=legacy-app",
        "https://as.example.com/authorize;x?client_id=legacy-app",
        "https://as.example.com/authorize/.?client_id=legacy-app",
        "https://as.example.com/other?client_id=legacy-app",
        "https://as.example.com/?client_id=legacy-app",
        "HTTPS://AS.EXAMPLE.COM./other?client_id=legacy-app",
        "https://as.example.com/authorize/%2e%2e/other?client_id=legacy-app",
        "https://as.example.com/other?client%5Fid=legacy-app",
        "https://as.example.com/other?client_id=legacy%2dapp",
        "https://as.example.com/other?a=1;client_id=legacy-app",
        "https://as.example.com/authorize?a=1;client_id=legacy-app",
        "https://as.example.com/other?client_id=another-app&client_id=legacy-app",
        // Depends on the app's own scheme: a path on an https app, the AS for an http one.
        "https:as.example.com/authorize?client_id=legacy-app",
        "https:/as.example.com/authorize?client_id=legacy-app",
        "http:as.example.com/authorize?client_id=legacy-app",
    ] {
        assert_eq!(detect_str(loc), Detection::Rejected(AuthorizeError::NearMiss), "{loc}");
    }
    // Scheme-relative, in every spelling a browser accepts.
    for loc in [
        "//as.example.com/other?client_id=legacy-app",
        "\\\\as.example.com/authorize?client_id=legacy-app",
        "/\\as.example.com/authorize?client_id=legacy-app",
        "\\/as.example.com/authorize?client_id=legacy-app",
        "\t//as.example.com/authorize?client_id=legacy-app",
        "\u{1}//as.example.com/authorize?client_id=legacy-app",
        "/\t/as.example.com/authorize?client_id=legacy-app",
        "//AS.example.com./authorize?client_id=legacy-app",
    ] {
        assert_eq!(
            detect_str(loc),
            Detection::Rejected(AuthorizeError::Relative),
            "{loc:?}"
        );
    }
    // Control characters the browser would drop: refused, not guessed at.
    for loc in [
        "https://as.example.com/auth\torize?client_id=legacy-app",
        "https://as.example.com/authorize?client_\nid=legacy-app",
        "\u{1}https://as.example.com/authorize?client_id=legacy-app",
        "https://as.example.com/authorize?client_id=legacy-app\r",
    ] {
        match detect_str(loc) {
            Detection::Rejected(e) => assert_eq!(e.code(), "malformed_authorize_redirect", "{loc:?}"),
            other => panic!("{loc:?}: {other:?}"),
        }
    }
}

#[test]
fn paths_compare_after_decoding_unreserved_characters_only() {
    assert_eq!(norm_path("/%61uth%2forize%7E"), "/auth%2Forize~");
    assert_eq!(norm_path("/a%2"), "/a%2");
    assert_eq!(norm_path("/%C3%A9/Ä"), "/%C3%A9/Ä");
}

#[test]
fn hostile_redirects_to_our_endpoint_fail_closed() {
    let cases: &[(&str, &str)] = &[
        (
            "http://as.example.com/authorize?client_id=legacy-app",
            "authorize_redirect_rejected",
        ),
        (
            "https://as.example.com:8443/authorize?client_id=legacy-app",
            "authorize_redirect_rejected",
        ),
        (
            "https://user:pw@as.example.com/authorize?client_id=legacy-app",
            "authorize_redirect_rejected",
        ),
        (
            "//as.example.com/authorize?client_id=legacy-app",
            "authorize_redirect_rejected",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app#frag",
            "authorize_redirect_rejected",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&state=%zz",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&state=%4",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&state=%ff%fe",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&state=a%0d%0aSet-Cookie:x",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&state=a&state=b",
            "duplicate_parameter",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&client_id=legacy-app",
            "duplicate_parameter",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&request=eyJ",
            "forbidden_parameter",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&request_uri=urn:x",
            "forbidden_parameter",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&aud=https://evil",
            "forbidden_parameter",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&claims=not-json",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&claims=%5B%5D",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&authorization_details=%7B%7D",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&max_age=-1",
            "malformed_authorize_redirect",
        ),
        (
            "https://as.example.com/authorize?client_id=legacy-app&=x",
            "malformed_authorize_redirect",
        ),
    ];
    for (loc, code) in cases {
        match detect_str(loc) {
            Detection::Rejected(e) => assert_eq!(e.code(), *code, "{loc}: {e}"),
            other => panic!("{loc}: expected rejection, got {other:?}"),
        }
    }
}

#[test]
fn size_limits_apply_only_to_our_redirects() {
    let long = format!("{GOOD}&state={}", "a".repeat(5000));
    assert_eq!(detect_str(&long), Detection::Rejected(AuthorizeError::TooLong(4096)));
    let many: String = (0..100).map(|i| format!("&p{i}=1")).collect();
    let loc = format!("https://as.example.com/authorize?client_id=legacy-app{many}");
    assert_eq!(
        detect(loc.as_bytes(), &ep(), &cid(), 1 << 20),
        Detection::Rejected(AuthorizeError::TooManyParams(MAX_PARAMS))
    );
    let elsewhere = format!("https://cdn.example.com/{}", "a".repeat(5000));
    assert_eq!(detect_str(&elsewhere), Detection::NotOurs);
}

#[test]
fn non_utf8_location_naming_our_host_is_rejected() {
    let mut b = b"https://as.example.com/authorize?client_id=legacy-app&x=".to_vec();
    b.push(0xff);
    assert_eq!(
        detect(&b, &ep(), &cid(), 4096),
        Detection::Rejected(AuthorizeError::BadHeader)
    );
    assert_eq!(detect(&[0xff, 0xfe], &ep(), &cid(), 4096), Detection::NotOurs);
}

#[test]
fn rewritten_location_is_encoded_and_keeps_endpoint_query() {
    let e = AuthorizeEndpoint::new(Url::parse("https://as.example.com/authorize?tenant=a%20b").unwrap());
    let loc = e.rewritten_location(&cid(), "urn:ietf:params:oauth:request_uri:abc&x=y");
    assert_eq!(
        loc,
        "https://as.example.com/authorize?tenant=a%20b&client_id=legacy-app&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Aabc%26x%3Dy"
    );
    // The endpoint's own parameter is not pushed again.
    let app = "https://as.example.com/authorize?tenant=a+b&client_id=legacy-app&scope=openid";
    let Detection::Ours(r) = detect(app.as_bytes(), &e, &cid(), 4096) else {
        panic!()
    };
    assert!(r.params.get("tenant").is_none());
    assert_eq!(r.get_str("scope"), Some("openid"));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z_]{1,12}".prop_filter("not forbidden or reserved", |n| {
            !FORBIDDEN.contains(&n.as_str())
                && !JSON_OBJECT_PARAMS.contains(&n.as_str())
                && !JSON_ARRAY_PARAMS.contains(&n.as_str())
                && !NUMBER_PARAMS.contains(&n.as_str())
                && n != "client_id"
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever an app encodes with a standard form serializer comes back exactly.
        #[test]
        fn any_encoded_parameters_round_trip(params in proptest::collection::btree_map(name(), "[^\\p{Cc}]{0,40}", 0..8)) {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            ser.append_pair("client_id", "legacy-app");
            for (k, v) in &params {
                ser.append_pair(k, v);
            }
            let loc = format!("https://as.example.com/authorize?{}", ser.finish());
            let Detection::Ours(r) = detect(loc.as_bytes(), &ep(), &cid(), 1 << 20) else {
                return Err(TestCaseError::fail(format!("not detected: {loc}")));
            };
            for (k, v) in &params {
                prop_assert_eq!(r.get_str(k), Some(v.as_str()));
            }
            prop_assert_eq!(r.params.len(), params.len() + 1);
        }

        /// Whatever spelling reaches the AS's host with our client_id, it is pushed or
        /// refused: never passed through with its plain query.
        #[test]
        fn our_client_on_the_as_host_never_passes(
            prefix in proptest::sample::select(vec!["https://", "HTTPS://", "//", "\\\\", "/\\", "https:", "https:\\\\", "http://", " https://", "\u{1}https://"]),
            host in proptest::sample::select(vec!["as.example.com", "AS.Example.COM.", "as.example.com:443", "as.example.com:8443", "user@as.example.com"]),
            path in "[/a-zA-Z0-9%.\\\\;]{0,16}",
            tail in "[a-z=&;%0-9]{0,12}",
        ) {
            let loc = format!("{prefix}{host}{path}?{tail}&client_id=legacy-app");
            if let Some(BrowserTarget::Absolute { .. } | BrowserTarget::SchemeRelative(_)) = browser_target(&loc) {
                let on_host = browser_target(&loc).and_then(|t| t.url().host_str().map(norm_host)).as_deref() == Some("as.example.com");
                prop_assume!(on_host);
                prop_assert_ne!(detect(loc.as_bytes(), &ep(), &cid(), 4096), Detection::NotOurs, "{}", loc);
            }
        }

        /// Arbitrary bytes never panic, and a rejection always carries a code.
        #[test]
        fn arbitrary_locations_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), tail in "\\PC{0,80}") {
            let _ = detect(&bytes, &ep(), &cid(), 4096);
            let loc = format!("https://as.example.com/authorize?client_id=legacy-app&{tail}");
            if let Detection::Rejected(e) = detect(loc.as_bytes(), &ep(), &cid(), 4096) {
                prop_assert!(!e.code().is_empty());
            }
        }
    }
}

/// Several ASs: bank A and B on one host (ports differ), C and D behind one hub endpoint
/// told apart by client_id.
fn banks() -> Vec<Candidate> {
    let c = |i, url: &str, id: &str| Candidate {
        as_index: AsIndex::new(i),
        endpoint: AuthorizeEndpoint::new(Url::parse(url).unwrap()),
        client_id: ClientId::new(id).unwrap(),
        end_session: (i == 0).then(|| AuthorizeEndpoint::new(Url::parse("https://banks.example:8443/logout").unwrap())),
    };
    vec![
        c(0, "https://banks.example:8443/authorize", "tpp-a"),
        c(1, "https://banks.example:9443/authorize", "tpp-b"),
        c(2, "https://hub.example/auth", "tpp-c"),
        c(3, "https://hub.example/auth", "tpp-d"),
    ]
}

fn detect_banks(loc: &str) -> (Option<usize>, Detection) {
    let all = banks();
    let by_host = |h: &str| -> Option<&[Candidate]> {
        match h {
            "banks.example" => Some(&all[0..2]),
            "hub.example" => Some(&all[2..4]),
            _ => None,
        }
    };
    let is_client = |c: &str| all.iter().any(|x| x.client_id.as_str() == c);
    let (i, d) = detect_among(loc.as_bytes(), &by_host, &is_client, 4096);
    (i.map(AsIndex::get), d)
}

#[test]
fn several_ass_are_told_apart_by_port_and_client_id() {
    let q = "response_type=code&redirect_uri=https%3A%2F%2Fapp%2Fcb&state=s";
    let (i, d) = detect_banks(&format!("https://banks.example:9443/authorize?client_id=tpp-b&{q}"));
    assert!(matches!(d, Detection::Ours(_)) && i == Some(1), "{d:?}");
    let (i, d) = detect_banks(&format!("https://banks.example:8443/authorize?client_id=tpp-a&{q}"));
    assert!(matches!(d, Detection::Ours(_)) && i == Some(0), "{d:?}");
    // Same hub endpoint: the client_id decides.
    let (i, d) = detect_banks(&format!("https://hub.example/auth?client_id=tpp-d&{q}"));
    assert!(matches!(d, Detection::Ours(_)) && i == Some(3), "{d:?}");
    let (i, d) = detect_banks(&format!("https://HUB.example./auth?client_id=tpp-c&{q}"));
    assert!(matches!(d, Detection::Ours(_)) && i == Some(2), "{d:?}");
    // Bank A's client_id at bank B's endpoint: an app mixing up banks, never forwarded.
    let (i, d) = detect_banks(&format!("https://banks.example:9443/authorize?client_id=tpp-a&{q}"));
    assert_eq!((i, d), (Some(1), Detection::Rejected(AuthorizeError::ClientMismatch)));
    // Someone else's client at a bank's endpoint is not ours at all.
    let (_, d) = detect_banks(&format!("https://banks.example:9443/authorize?client_id=other-app&{q}"));
    assert_eq!(d, Detection::NotOurs);
    // A port no bank uses on a bank host: a near miss, refused.
    let (_, d) = detect_banks(&format!("https://banks.example:7443/authorize?client_id=tpp-a&{q}"));
    assert_eq!(d, Detection::Rejected(AuthorizeError::NearMiss));
    let (_, d) = detect_banks(&format!("//hub.example/auth?client_id=tpp-c&{q}"));
    assert_eq!(d, Detection::Rejected(AuthorizeError::Relative));
    let (_, d) = detect_banks("https://elsewhere.example/authorize?client_id=tpp-a");
    assert_eq!(d, Detection::NotOurs);
}

#[test]
fn near_misses_with_any_banks_client_id_fail_closed() {
    // Bank B's client_id near bank A's endpoint on the shared host: refused, attributed to B.
    let (i, d) = detect_banks("https://banks.example:8443/authorize/?client_id=tpp-b");
    assert_eq!((i, d), (Some(1), Detection::Rejected(AuthorizeError::NearMiss)));
    // Bank A's client_id on the hub host, which only C and D use: still refused.
    let (_, d) = detect_banks("https://hub.example/Auth?client_id=tpp-a");
    assert_eq!(d, Detection::Rejected(AuthorizeError::NearMiss));
    // ... and at the hub's exact endpoint, a mix-up.
    let (_, d) = detect_banks("https://hub.example/auth?client_id=tpp-a");
    assert_eq!(d, Detection::Rejected(AuthorizeError::ClientMismatch));
    let (_, d) = detect_banks("/\\hub.example/auth?client_id=tpp-c");
    assert_eq!(d, Detection::Rejected(AuthorizeError::Relative));
    // Another app's client on a bank host passes.
    let (_, d) = detect_banks("https://hub.example/auth/?client_id=other-app");
    assert_eq!(d, Detection::NotOurs);
}

#[test]
fn logout_at_the_discovered_end_session_endpoint_passes_with_our_client_id() {
    let logout = "https://banks.example:8443/logout?client_id=tpp-a&post_logout_redirect_uri=https%3A%2F%2Fapp%2F";
    assert_eq!(detect_banks(logout).1, Detection::NotOurs);
    // Only the exact endpoint: a look-alike path with our client_id still fails closed.
    let (_, d) = detect_banks("https://banks.example:8443/logout/?client_id=tpp-a");
    assert_eq!(d, Detection::Rejected(AuthorizeError::NearMiss));
    let (_, d) = detect_banks("https://banks.example:9443/logout?client_id=tpp-a");
    assert!(matches!(d, Detection::Rejected(_)), "{d:?}");
}
