use super::*;
use proptest::prelude::*;

const CB: &str = "/oauth/callback";

#[test]
fn paths_route_as_frameworks_route_them() {
    let cb = normalize_path(CB);
    assert_eq!(cb, "/oauth/callback");
    for p in [
        "/oauth/callback",
        "/oauth/callback/",
        "/OAuth/Callback",
        "/oauth/%63allback",
        "/oauth%2Fcallback",
        "/oauth/%2563allback",
        "//oauth//callback",
        "/oauth/./callback",
        "/x/../oauth/callback",
        "/oauth/callback;jsessionid=1",
        "/oauth;a=b/callback",
        "/oauth\\callback",
        "/oauth/callback.json",
        "/oauth/callback.",
        "/oauth/callback%20",
        "/oauth/callback%00.png",
    ] {
        assert!(routes_to(&normalize_path(p), &cb), "{p} -> {}", normalize_path(p));
    }
    for p in [
        "/oauth/callbackx",
        "/oauth/callback/x",
        "/oauth",
        "/",
        "/other/callback",
        "/oauth/call",
    ] {
        assert!(!routes_to(&normalize_path(p), &cb), "{p}");
    }
    assert_eq!(normalize_path(""), "/");
    assert_eq!(normalize_path("/../../"), "/");
    assert!(routes_to("/", "/") && !routes_to("/.json", "/"));
}

#[test]
fn names_are_read_as_parsers_read_them() {
    for (raw, want) in [
        ("code", "code"),
        ("Code", "code"),
        ("%63ode", "code"),
        ("%2563ode", "code"),
        ("%20code", "code"),
        ("+code", "code"),
        ("code[]", "code"),
        ("code[0]", "code"),
        ("code%00x", "code"),
        ("STATE", "state"),
        ("iss", "iss"),
        ("Error", "error"),
        ("re%73ponse", "response"),
        // Rack 2 and Express qs: leading brackets dropped.
        ("[code]", "code"),
        ("%5Bcode%5D", "code"),
        ("]code", "code"),
        ("code]", "code"),
        ("[[code", "code"),
        // IIS / System.Web.
        ("%u0063ode", "code"),
        ("%U0063ODE", "code"),
        // Long padding still decodes (the heap path).
        (format!("{}code", "%20".repeat(40)).leak(), "code"),
    ] {
        assert_eq!(response_name(raw), Some(want), "{raw}");
    }
    for raw in [
        "codes",
        "xcode",
        "co_de",
        "co.de",
        "state_x",
        "error_description",
        "",
        "%",
        "%zz",
    ] {
        assert_eq!(response_name(raw), None, "{raw}");
    }
    assert!(is_exact_spelling("code") && !is_exact_spelling("Code") && !is_exact_spelling("code[]"));
}

#[test]
fn query_scan_finds_every_spelling() {
    let none = QueryScan::default();
    for q in ["", "login", "v=3", "codes=1", "q=code", "state_x=ps1.a"] {
        assert_eq!(scan_query(q), none, "{q}");
    }
    for q in ["code=1", "%20code=1", "a=1;error=x", "code[]=1", "ISS=x"] {
        assert!(scan_query(q).response_param, "{q}");
    }
    assert!(scan_query("%73tate=ps1%2Eabc").sealed_state);
    assert!(scan_query("Response=a.b.c").jarm_param);
}

#[test]
fn bodies_with_response_parameters_are_refused() {
    let form = Some(&b"application/x-www-form-urlencoded"[..]);
    assert!(check_body(form, None, b"a=1&b=2").is_ok());
    assert!(check_body(form, None, b"").is_ok());
    assert_eq!(
        check_body(form, None, b"a=1&code=x"),
        Err(BodyRefusal::ResponseParam("code"))
    );
    assert_eq!(
        check_body(form, None, b"%20State=x"),
        Err(BodyRefusal::ResponseParam("state"))
    );
    let mp = Some(&b"multipart/form-data; boundary=XX"[..]);
    for body in [
        "--XX\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\nabc\r\n--XX--\r\n",
        "--XX\r\ncontent-disposition: form-data; NAME=Code\r\n\r\nabc\r\n--XX--\r\n",
        "--XX\r\nContent-Disposition: form-data; name*=utf-8''code\r\n\r\nabc\r\n--XX--\r\n",
        "--XX\r\nContent-Disposition: form-data; name = \"code[]\"\r\n\r\nabc\r\n--XX--\r\n",
    ] {
        assert_eq!(
            check_body(mp, None, body.as_bytes()),
            Err(BodyRefusal::ResponseParam("code")),
            "{body}"
        );
    }
    let ok = "--XX\r\nContent-Disposition: form-data; name=\"avatar\"\r\n\r\nabc\r\n--XX--\r\n";
    assert!(check_body(mp, None, ok.as_bytes()).is_ok());
    let json = Some(&b"application/json"[..]);
    assert_eq!(
        check_body(json, None, br#"{"a":{"Iss":"x"}}"#),
        Err(BodyRefusal::ResponseParam("iss"))
    );
    assert_eq!(
        check_body(json, None, br#"[{"code":1}]"#),
        Err(BodyRefusal::ResponseParam("code"))
    );
    assert!(check_body(json, None, br#"{"a":"b"}"#).is_ok());
    // The declared type does not narrow the scan.
    assert!(check_body(Some(b"text/plain"), None, b"code=1").is_err());
    assert!(check_body(None, None, br#"{"state":"x"}"#).is_err());
    assert!(matches!(
        check_body(form, Some(b"gzip"), b"x"),
        Err(BodyRefusal::Unreadable(_))
    ));
    assert!(check_body(form, Some(b"identity"), b"x=1").is_ok());
    assert!(matches!(
        check_body(Some(b"application/x-www-form-urlencoded; charset=utf-16"), None, b"x"),
        Err(BodyRefusal::Unreadable(_))
    ));
    let big = vec![b'a'; MAX_CALLBACK_BODY + 1];
    assert!(matches!(check_body(form, None, &big), Err(BodyRefusal::TooLarge(_))));
    // What the scan cannot read with certainty is refused (issue 18 review).
    let utf16: Vec<u8> = "code=x".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    assert!(matches!(
        check_body(None, None, &utf16),
        Err(BodyRefusal::Unreadable(_))
    ));
    for ct in [
        &b"application/json; charset = utf-16le"[..],
        b"application/json; foo=\"a;charset=utf-8\"; charset=utf-16le",
    ] {
        assert!(
            matches!(check_body(Some(ct), None, b"{}"), Err(BodyRefusal::Unreadable(_))),
            "{ct:?}"
        );
    }
    for body in [
        &br#"{"code":"X","p":"\ud800"}"#[..],
        br#"{"code":"X","n":1e400}"#,
        b"\xEF\xBB\xBF{\"code\":\"X\"}",
    ] {
        assert!(
            check_body(json, None, body).is_err(),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let deep = format!("{{\"code\":\"X\",\"p\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert!(check_body(json, None, deep.as_bytes()).is_err());
    for body in [
        "--B\r\nContent-Disposition: form-data; name*0=\"co\"; name*1=\"de\"\r\n\r\nv\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name*=utf-8'en'%63ode\r\n\r\nv\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"c\\ode\"\r\n\r\nv\r\n--B--",
    ] {
        assert!(check_body(mp, None, body.as_bytes()).is_err(), "{body}");
    }
    // A body of `name=%` repeated is refused in linear time, not scanned quadratically.
    let slow = "name=%".repeat(2700);
    let t = std::time::Instant::now();
    assert!(check_body(None, None, slow.as_bytes()).is_err());
    assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
}

/// One character of a path or name, spelt in one of the ways a client may spell it.
fn spell(c: char, how: u8) -> String {
    match how % 5 {
        0 => format!("%{:02X}", c as u32),
        1 => format!("%25{:02X}", c as u32),
        2 => c.to_ascii_uppercase().to_string(),
        3 => format!("%{:02x}", c as u32),
        _ => c.to_string(),
    }
}

fn respell(s: &str, hows: &[u8]) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() {
                spell(c, hows[i % hows.len()])
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    /// Fail-closed property for paths: every spelling of the callback path that some
    /// framework routes to the handler is recognised as the callback.
    #[test]
    fn every_spelling_of_the_callback_path_is_the_callback(
        hows in proptest::collection::vec(any::<u8>(), 1..20),
        slashes in 1usize..4,
        dot in any::<bool>(),
        dotdot in any::<bool>(),
        matrix in any::<bool>(),
        trailing in 0u8..4,
        backslash in any::<bool>(),
    ) {
        let sep = if backslash { "\\" } else { "/" };
        let mut p = String::new();
        if dotdot { p.push_str("/junk/.."); }
        for seg in ["oauth", "callback"] {
            p.push_str(&sep.repeat(slashes));
            if dot { p.push_str("./"); }
            p.push_str(&respell(seg, &hows));
            if matrix { p.push_str(";jsessionid=abc"); }
        }
        match trailing { 1 => p.push('/'), 2 => p.push_str(".json"), 3 => p.push_str("%2F"), _ => {} }
        prop_assert!(routes_to(&normalize_path(&p), &normalize_path(CB)), "{} -> {}", p, normalize_path(&p));
    }

    /// Fail-closed property for names: every spelling of a response name that some parser
    /// reads as that name is recognised, in a query and in any body.
    #[test]
    fn every_spelling_of_a_response_name_is_recognised(
        which in 0usize..5,
        hows in proptest::collection::vec(any::<u8>(), 1..10),
        lead in 0usize..3,
        array in any::<bool>(),
    ) {
        let name = RESPONSE_NAMES[which];
        let raw = format!("{}{}{}", "%20".repeat(lead), respell(name, &hows), if array { "[]" } else { "" });
        prop_assert_eq!(response_name(&raw), Some(name));
        let q = format!("a=1&{raw}=x");
        prop_assert!(scan_query(&q).any());
        prop_assert!(check_body(None, None, q.as_bytes()).is_err());
        let mp = format!("--B\r\nContent-Disposition: form-data; name=\"{raw}\"\r\n\r\nv\r\n--B--\r\n");
        prop_assert!(check_body(Some(b"multipart/form-data; boundary=B"), None, mp.as_bytes()).is_err());
    }

    /// Other paths keep their traffic: a different last segment never routes to the callback.
    #[test]
    fn other_paths_are_not_the_callback(seg in "[a-z]{1,12}") {
        prop_assume!(seg != "callback");
        let p = format!("/oauth/{seg}");
        prop_assert!(!routes_to(&normalize_path(&p), &normalize_path(CB)));
    }

    /// Never a panic, whatever the bytes.
    /// A cookie an app could read as a response parameter (PHP `$_REQUEST`, ASP.NET).
    #[test]
    fn cookie_names(name in "[a-z]{1,8}") {
        let header = format!("a=1; {name}=x");
        let want = ["code", "error", "iss", "response"].contains(&name.as_str());
        prop_assert_eq!(cookie_response_name(header.as_bytes()).is_some(), want);
    }

    #[test]
    fn never_panics(path in ".*", query in ".*", body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = normalize_path(&path);
        let _ = scan_query(&query);
        let _ = check_body(Some(query.as_bytes()), None, &body);
    }
}
