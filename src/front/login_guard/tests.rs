use super::*;

fn cx<'a>(authority: &'a str, path: &'a str, query: Option<&'a str>) -> RedirectContext<'a> {
    RedirectContext {
        scheme: None,
        authority: Some(authority),
        path,
        query,
    }
}

const POLICY: Policy<'static> = Policy {
    login_paths: &[],
    allowed_parameters: None,
    redirect_uri_origins: &[],
    is_callback_path: None,
};

fn pairs(q: &str) -> Vec<(String, String)> {
    crate::front::location::parse_query(q).unwrap()
}

const LOGIN: &str = "response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb\
&scope=openid+accounts&state=st&nonce=n0nce-abcdef&code_challenge=abcdefghijabcdefghijabcdefghijabcdefghij123\
&code_challenge_method=S256";

fn location(q: &str) -> String {
    format!("https://as.example.com/authorize?{q}")
}

#[test]
fn the_apps_own_login_with_authorization_details_passes() {
    let q = format!(
        "{LOGIN}&authorization_details=%5B%7B%22type%22%3A%22payment%22%2C%22amount%22%3A%2210.00%22%7D%5D&prompt=consent"
    );
    let r = screen(
        &cx("app.example.com", "/login", Some("payment=42")),
        &location(&q),
        &pairs(&q),
        &POLICY,
    );
    assert_eq!(r, Ok(()));
    let uri = "https://app.example.com/cb";
    assert_eq!(
        check_redirect_uri(&cx("app.example.com", "/login", None), uri, &POLICY),
        Ok(())
    );
}

#[test]
fn a_reflected_next_redirect_is_refused_at_every_encoding() {
    let attack = format!("{LOGIN}&authorization_details=%5B%7B%22creditor%22%3A%22attacker%22%7D%5D&login_hint=victim");
    let loc = location(&attack);
    let once: String = url::form_urlencoded::byte_serialize(loc.as_bytes()).collect();
    let twice: String = url::form_urlencoded::byte_serialize(once.as_bytes()).collect();
    for query in [
        format!("next={loc}"),
        format!("next={once}"),
        format!("returnUrl={twice}"),
    ] {
        let r = screen(
            &cx("app.example.com", "/redirect", Some(&query)),
            &loc,
            &pairs(&attack),
            &POLICY,
        );
        assert!(matches!(r, Err(Refusal::Reflected(_))), "{query}: {r:?}");
        assert_eq!(r.unwrap_err().failure(), FailureCode::OpenRedirect);
    }
    // One reflected parameter is enough, short values as `name=value`.
    let q = format!("{LOGIN}&prompt=login");
    let r = screen(
        &cx("app.example.com", "/login", Some("prompt=login")),
        &location(&q),
        &pairs(&q),
        &POLICY,
    );
    assert_eq!(r, Err(Refusal::Reflected("prompt".into())));
    let r = screen(
        &cx("app.example.com", "/login", Some("scope=openid%20accounts")),
        &location(LOGIN),
        &pairs(LOGIN),
        &POLICY,
    );
    assert_eq!(r, Err(Refusal::Reflected("scope".into())));
    // In the path too (`/go/<url>` style redirects).
    let path = format!("/go/{once}");
    let r = screen(&cx("app.example.com", &path, None), &loc, &pairs(&attack), &POLICY);
    assert!(matches!(r, Err(Refusal::Reflected(_))), "{r:?}");
}

#[test]
fn an_oversized_request_url_is_not_scanned_but_refused() {
    let padding = format!("pad={}", "x".repeat(70 * 1024));
    let r = screen(
        &cx("app.example.com", "/login", Some(&padding)),
        &location(LOGIN),
        &pairs(LOGIN),
        &POLICY,
    );
    assert!(matches!(r, Err(Refusal::Reflected(_))), "{r:?}");
}

#[test]
fn unrelated_query_and_the_apps_state_are_not_reflection() {
    // The app puts the page being visited into its state: not the browser choosing a parameter.
    let q = LOGIN.replace("state=st", "state=%2Faccount%3Ftab%3Dpayments");
    let r = screen(
        &cx("app.example.com", "/account", Some("tab=payments")),
        &location(&q),
        &pairs(&q),
        &POLICY,
    );
    assert_eq!(r, Ok(()));
    // Short values found only by chance (not as name=value) do not count.
    let q = format!("{LOGIN}&prompt=login");
    let r = screen(
        &cx("app.example.com", "/login", Some("from=login&x=S256")),
        &location(&q),
        &pairs(&q),
        &POLICY,
    );
    assert_eq!(r, Ok(()));
}

#[test]
fn a_foreign_redirect_uri_is_refused() {
    let req = cx("app.example.com", "/login", None);
    for uri in [
        "https://evil.example/cb",
        "https://app.example.com.evil.example/cb",
        "https://app.example.com:8443/cb",
        "https://user@app.example.com/cb",
        "not a url",
    ] {
        let r = check_redirect_uri(&req, uri, &POLICY);
        assert!(matches!(r, Err(Refusal::RedirectUriForeign(_))), "{uri}: {r:?}");
        assert_eq!(r.unwrap_err().failure(), FailureCode::RedirectUriForeign);
    }
    // Same host in another spelling: accepted.
    for (host, uri) in [
        ("App.Example.Com", "https://app.example.com/cb"),
        ("app.example.com.", "https://app.example.com/cb"),
        ("app.example.com:443", "https://app.example.com:443/cb"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080/callback"),
        ("[::1]:8080", "http://[::1]:8080/callback"),
    ] {
        assert_eq!(
            check_redirect_uri(&cx(host, "/login", None), uri, &POLICY),
            Ok(()),
            "{host} {uri}"
        );
    }
    // No Host at all: cannot be checked, refused.
    let none = RedirectContext { authority: None, ..req };
    assert!(check_redirect_uri(&none, "https://app.example.com/cb", &POLICY).is_err());
}

#[test]
fn a_reported_scheme_must_match_and_configured_origins_replace_the_host() {
    let https = RedirectContext {
        scheme: Some("https"),
        ..cx("app.example.com", "/login", None)
    };
    assert_eq!(
        check_redirect_uri(&https, "https://app.example.com/cb", &POLICY),
        Ok(())
    );
    assert!(check_redirect_uri(&https, "http://app.example.com:443/cb", &POLICY).is_err());
    let origins = [ConfiguredOrigin::parse("https://app.example.com").unwrap()];
    let policy = Policy {
        redirect_uri_origins: &origins,
        ..POLICY
    };
    let internal = cx("app-svc.default.svc:3000", "/login", None);
    assert_eq!(
        check_redirect_uri(&internal, "https://app.example.com/cb", &policy),
        Ok(())
    );
    assert!(check_redirect_uri(&internal, "http://app-svc.default.svc:3000/cb", &policy).is_err());
    for bad in [
        "https://app.example.com/x",
        "ftp://a.example",
        "https://u@a.example",
        "app.example.com",
    ] {
        assert!(ConfiguredOrigin::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn configured_callback_paths_and_login_paths_and_parameters() {
    let is_cb = |p: &str| p == "/cb";
    let policy = Policy {
        is_callback_path: Some(&is_cb),
        ..POLICY
    };
    let req = cx("app.example.com", "/login", None);
    assert_eq!(check_redirect_uri(&req, "https://app.example.com/cb", &policy), Ok(()));
    assert_eq!(
        check_redirect_uri(&req, "https://app.example.com/other", &policy),
        Err(Refusal::RedirectUriForeign("path"))
    );
    let login = ["/login".to_string()];
    let policy = Policy {
        login_paths: &login,
        ..POLICY
    };
    let ok = screen(
        &cx("app.example.com", "/login/", None),
        &location(LOGIN),
        &pairs(LOGIN),
        &policy,
    );
    assert_eq!(ok, Ok(()));
    let r = screen(
        &cx("app.example.com", "/redirect", None),
        &location(LOGIN),
        &pairs(LOGIN),
        &policy,
    );
    assert_eq!(r, Err(Refusal::NotALoginPath));
    let allowed = ["authorization_details".to_string()];
    let policy = Policy {
        allowed_parameters: Some(&allowed),
        ..POLICY
    };
    let q = format!("{LOGIN}&authorization_details=%5B%5D");
    assert_eq!(screen(&req, &location(&q), &pairs(&q), &policy), Ok(()));
    let q = format!("{LOGIN}&login_hint=alice");
    assert_eq!(
        screen(&req, &location(&q), &pairs(&q), &policy),
        Err(Refusal::ParameterNotAllowed("login_hint".into()))
    );
}

#[test]
fn forwarded_headers_only_behind_a_trusted_ingress() {
    let uri: http::Uri = "/login?x=1".parse().unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("host", "app-svc:3000".parse().unwrap());
    h.insert("x-forwarded-host", "evil.example, app.example.com".parse().unwrap());
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    let plain = RedirectContext::from_request(&uri, &h, false);
    assert_eq!((plain.authority, plain.scheme), (Some("app-svc:3000"), None));
    assert_eq!((plain.path, plain.query), ("/login", Some("x=1")));
    let trusted = RedirectContext::from_request(&uri, &h, true);
    assert_eq!(
        (trusted.authority, trusted.scheme),
        (Some("app.example.com"), Some("https"))
    );
}

#[test]
fn never_panics_on_odd_hosts() {
    for host in ["", ":", "[", "[::1", "a:b:c", "app:99999", "@", "[::1]x", "é.example"] {
        let _ = check_redirect_uri(&cx(host, "/", None), "https://app.example/cb", &POLICY);
    }
}

#[test]
fn config_keys_load_and_bad_values_name_their_key() {
    use crate::config::Settings;
    use std::path::Path;
    let base = crate::config::tests::MINIMAL;
    let load = |extra: &str, client: &str| {
        let text = base.replace(
            "  auth_method: private_key_jwt\n",
            &format!("  auth_method: private_key_jwt\n{client}"),
        );
        Settings::from_yaml(&format!("{text}\n{extra}"), Path::new("c.yaml"))
    };
    let s = load("", "").unwrap();
    assert!(s.login_paths.is_empty() && s.redirect_uri_origins.is_empty());
    assert_eq!(s.authorization_servers[0].client.allowed_authorize_parameters, None);
    let s = load(
        "par:\n  login_paths: [/login, /pay/start]\n  redirect_uri_origins: [\"https://App.Example:8443\"]\n",
        "  allowed_authorize_parameters: [authorization_details, prompt]\n",
    )
    .unwrap();
    assert_eq!(s.login_paths, ["/login", "/pay/start"]);
    assert_eq!(
        s.redirect_uri_origins,
        [ConfiguredOrigin::parse("https://app.example:8443").unwrap()]
    );
    assert_eq!(
        s.authorization_servers[0]
            .client
            .allowed_authorize_parameters
            .as_deref(),
        Some(&["authorization_details".to_string(), "prompt".to_string()][..])
    );
    for (extra, client, key) in [
        ("par: { login_paths: [login] }", "", "par.login_paths"),
        ("par: { login_paths: [\"/login?x=1\"] }", "", "par.login_paths"),
        (
            "par: { redirect_uri_origins: [\"https://app.example/cb\"] }",
            "",
            "par.redirect_uri_origins",
        ),
        (
            "",
            "  allowed_authorize_parameters: [request_uri]\n",
            "client.allowed_authorize_parameters",
        ),
        (
            "",
            "  allowed_authorize_parameters: [\"a=b\"]\n",
            "client.allowed_authorize_parameters",
        ),
    ] {
        let e = load(extra, client).unwrap_err().to_string();
        assert!(e.contains(key), "{extra}{client}: {e}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// How an app or a link may carry the target: as is, encoded once (form or
    /// path-segment style), or encoded twice.
    fn encode(s: &str, how: u8) -> String {
        let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let component =
            |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        match how % 4 {
            0 => s.to_string(),
            1 => form(s),
            2 => component(s),
            _ => form(&form(s)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A browser-chosen parameter (any value of a sensitive parameter, any encoding, any
        /// parameter name for the target, any padding around it) is never pushed.
        #[test]
        fn a_reflected_parameter_is_always_refused(
            param in prop::sample::select(vec!["login_hint", "prompt", "resource", "claims", "acr_values", "max_age", "authorization_details"]),
            value in "[a-zA-Z0-9@._ -]{1,24}",
            next in "[a-zA-Z]{1,10}",
            how in 0u8..4,
            before in "[a-z]{0,8}=[a-z0-9]{0,8}",
            after in "[a-z]{0,8}=[a-z0-9]{0,8}",
            whole in any::<bool>(),
        ) {
            let mut ser = url::form_urlencoded::Serializer::new(String::from(LOGIN));
            ser.append_pair(param, &value);
            let q = ser.finish();
            let loc = location(&q);
            // The whole Location, or only the one parameter copied by the app.
            let carried = if whole { loc.clone() } else {
                url::form_urlencoded::Serializer::new(String::new()).append_pair(param, &value).finish()
            };
            let query = format!("{before}&{next}={}&{after}", encode(&carried, how));
            let r = screen(&cx("app.example.com", "/go", Some(&query)), &loc, &pairs(&q), &POLICY);
            prop_assert!(matches!(r, Err(Refusal::Reflected(_))), "{query}: {r:?}");
        }

        /// The app's own login with any unrelated query (words that are not its values) passes,
        /// and nothing about the request's host panics.
        #[test]
        fn unrelated_requests_pass(query in "[a-z]{1,6}=[a-z]{1,6}(&[a-z]{1,6}=[0-9]{1,6}){0,4}", host in "\\PC{0,30}") {
            let r = screen(&cx("app.example.com", "/login", Some(&query)), &location(LOGIN), &pairs(LOGIN), &POLICY);
            prop_assert_eq!(r, Ok(()));
            let _ = check_redirect_uri(&cx(&host, "/login", None), "https://app.example.com/cb", &POLICY);
        }
    }
}
