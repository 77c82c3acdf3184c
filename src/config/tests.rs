use super::*;

/// The smallest valid config (one AS, ES256, private_key_jwt); other modules' tests start from it.
pub(crate) const MINIMAL: &str = r#"
listen: { public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }
upstream: "127.0.0.1:3000"
authorization_server: { issuer: "https://as.example.com" }
client:
  client_id: legacy-app
  auth_method: private_key_jwt
  signing_key: { path: keys/sign.pem, alg: ES256 }
  transport: { cert_path: /etc/tls.crt, key_path: /etc/tls.key }
"#;

#[test]
fn minimal_config_gets_safe_defaults() {
    let s = Settings::from_yaml(MINIMAL, Path::new("/etc/ps/config.yaml")).unwrap();
    assert!(s.par_required, "PAR must fail closed by default");
    assert!(!s.multi_as);
    let a = &s.authorization_servers[0];
    assert_eq!(a.name.as_str(), "default");
    assert_eq!(
        a.discovery_url.as_str(),
        "https://as.example.com/.well-known/openid-configuration"
    );
    assert_eq!(a.client.signing_keys[0].path, PathBuf::from("/etc/ps/keys/sign.pem"));
    assert_eq!(a.par_alias, AliasPolicy::Auto);
    assert_eq!(a.client.assertion_lifetime, Duration::from_secs(60));
    assert_eq!(s.state_binding, "legacy-app");
    assert_eq!(
        s.max_connections_per_client, 0,
        "off: an ingress or a NAT is one peer address"
    );
}

#[test]
fn callback_code_lifetime_and_all_paths() {
    let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    assert_eq!(s.code_ttl, Duration::from_secs(30), "a redirect and one token call");
    assert!(!s.check_all_paths);
    let text = format!("{MINIMAL}\ncallback: {{ code_ttl_seconds: 90, check_all_paths: true }}\n");
    let s = Settings::from_yaml(&text, Path::new("c.yaml")).unwrap();
    assert_eq!(s.code_ttl, Duration::from_secs(90));
    assert!(s.check_all_paths);
    let text = format!("{MINIMAL}\ncallback: {{ code_ttl_seconds: 3600 }}\n");
    let e = Settings::from_yaml(&text, Path::new("c.yaml")).unwrap_err().to_string();
    assert!(e.contains("callback.code_ttl_seconds"), "{e}");
}

#[test]
fn per_client_connection_cap_is_read() {
    let text = format!("{MINIMAL}\nlimits:\n  max_connections_per_client: 64\n");
    let s = Settings::from_yaml(&text, Path::new("c.yaml")).unwrap();
    assert_eq!(s.max_connections_per_client, 64);
}

#[test]
fn authorize_hosts_are_bare_hosts_normalised() {
    let with = |v: &str| {
        let text = MINIMAL.replace(
            r#"{ issuer: "https://as.example.com" }"#,
            &format!(r#"{{ issuer: "https://as.example.com", authorize_hosts: {v} }}"#),
        );
        Settings::from_yaml(&text, Path::new("c.yaml"))
    };
    let s = with(r#"["Bank.Example.", "10.0.0.1"]"#).unwrap();
    assert_eq!(s.authorization_servers[0].authorize_hosts, ["bank.example", "10.0.0.1"]);
    assert!(
        MINIMAL.contains(r#"{ issuer: "https://as.example.com" }"#),
        "the test edits this line"
    );
    for bad in [
        r#"["https://bank.example"]"#,
        r#"["bank.example/authorize"]"#,
        r#"["bank.example:8443"]"#,
        r#"["u@bank.example"]"#,
        r#"[""]"#,
    ] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains("authorize_hosts"), "{bad}: {e}");
    }
}

const TWO_BANKS: &str = r#"
listen: { public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }
upstream: "127.0.0.1:3000"
client:
  client_id: tpp
  auth_method: private_key_jwt
  signing_key: { path: keys/sign.pem, alg: PS256 }
  transport: { cert_path: /etc/tls.crt, key_path: /etc/tls.key }
authorization_servers:
  - name: bank-a
    issuer: https://a.example.com
    client: { client_id: tpp-at-a }
  - name: bank-b
    issuer: https://b.example.com
    client:
      auth_method: tls_client_auth
      signing_key: { path: /k/b.pem, alg: ES256 }
egress:
  resources:
    - { prefix: /rs/b/, target: "https://rs.b.example.com/", authorization_server: bank-b }
"#;

#[test]
fn several_ass_merge_client_overrides_over_the_shared_block() {
    let s = Settings::from_yaml(TWO_BANKS, Path::new("/etc/ps/c.yaml")).unwrap();
    assert!(s.multi_as);
    let [a, b] = &s.authorization_servers[..] else {
        panic!("two ASs")
    };
    assert_eq!((a.name.as_str(), a.client.client_id.as_str()), ("bank-a", "tpp-at-a"));
    assert_eq!(a.client.auth_method, AuthMethod::PrivateKeyJwt);
    assert_eq!(a.client.signing_keys[0].path, PathBuf::from("/etc/ps/keys/sign.pem"));
    assert_eq!((b.name.as_str(), b.client.client_id.as_str()), ("bank-b", "tpp"));
    assert_eq!(b.client.auth_method, AuthMethod::TlsClientAuth);
    assert_eq!(b.client.signing_keys.len(), 1, "keys are replaced, not appended");
    assert_eq!(b.client.signing_keys[0].path, PathBuf::from("/k/b.pem"));
    assert_eq!(b.client.transport_cert, PathBuf::from("/etc/tls.crt"));
    assert_eq!(s.resources[0].authorization_server, 1);
    assert_eq!(s.as_index("bank-b"), Some(1));
    assert_eq!(s.state_binding, "tpp");
}

#[test]
fn several_ass_config_errors_name_their_key() {
    let err = |text: &str| Settings::from_yaml(text, Path::new("c.yaml")).unwrap_err().to_string();
    let e = err(&TWO_BANKS.replace("name: bank-b", "name: bank-a"));
    assert!(
        e.contains("authorization_servers[1].name") && e.contains("another AS"),
        "{e}"
    );
    let e = err(&TWO_BANKS.replace("https://b.example.com", "https://a.example.com"));
    assert!(
        e.contains("authorization_servers[1].issuer") && e.contains("unique"),
        "{e}"
    );
    let e = err(&TWO_BANKS.replace("  - name: bank-a\n    issuer", "  - issuer"));
    assert!(
        e.contains("authorization_servers[0].name") && e.contains("required"),
        "{e}"
    );
    let e = err(&TWO_BANKS.replace("name: bank-a", "name: Bank_A"));
    assert!(e.contains("authorization_servers[0].name"), "{e}");
    let e = err(&TWO_BANKS.replace(
        "authorization_servers:",
        "authorization_server: { issuer: \"https://c.example.com\" }\nauthorization_servers:",
    ));
    assert!(e.contains("not both"), "{e}");
    let e = err(&TWO_BANKS.replace(", authorization_server: bank-b", ""));
    assert!(e.contains("egress.resources[0].authorization_server"), "{e}");
    let e = err(&TWO_BANKS.replace(", authorization_server: bank-b", ", authorization_server: bank-z"));
    assert!(e.contains("bank-z"), "{e}");
    // A client key missing in both blocks names the per-AS block.
    let e = err(&TWO_BANKS.replace("  client_id: tpp\n", ""));
    assert!(e.contains("authorization_servers[1].client.client_id"), "{e}");
    // Unknown keys in a per-AS client block keep their line.
    let e = err(&TWO_BANKS.replace("client: { client_id: tpp-at-a }", "client: { clent_id: tpp-at-a }"));
    assert!(e.contains("clent_id") && e.contains("line"), "{e}");
}

#[test]
fn dpop_settings_default_merge_and_validation() {
    let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    assert_eq!(
        s.authorization_servers[0].client.sender_constraint,
        SenderConstraint::Mtls
    );
    assert!(s.authorization_servers[0].client.dpop.is_none());
    let with = |extra: &str| {
        Settings::from_yaml(
            &MINIMAL.replace("  transport:", &format!("{extra}  transport:")),
            Path::new("/etc/ps/c.yaml"),
        )
    };
    // DPoP without a key block: an in-memory ES256 key, the app told Bearer.
    let d = with("  sender_constraint: dpop\n").unwrap().authorization_servers[0]
        .client
        .dpop
        .clone()
        .unwrap();
    assert_eq!(
        (d.key_path, d.alg, d.token_type_to_app),
        (None, Alg::ES256, TokenTypeToApp::Bearer)
    );
    let d =
        with("  sender_constraint: dpop\n  dpop: { key: { path: k/dpop.pem, alg: EdDSA }, token_type_to_app: dpop }\n")
            .unwrap()
            .authorization_servers[0]
            .client
            .dpop
            .clone()
            .unwrap();
    assert_eq!(d.key_path, Some(PathBuf::from("/etc/ps/k/dpop.pem")));
    assert_eq!((d.alg, d.token_type_to_app), (Alg::EdDSA, TokenTypeToApp::Dpop));
    for (bad, key) in [
        ("  sender_constraint: bearer\n", "client.sender_constraint"),
        (
            "  sender_constraint: dpop\n  dpop: { key: { alg: RS256 } }\n",
            "client.dpop.key.alg",
        ),
        (
            "  sender_constraint: dpop\n  dpop: { key: { path: k.pem } }\n",
            "client.dpop.key.alg",
        ),
        (
            "  sender_constraint: dpop\n  dpop: { token_type_to_app: mac }\n",
            "client.dpop.token_type_to_app",
        ),
        ("  dpop: { key: { alg: ES256 } }\n", "client.sender_constraint"),
        ("  sender_constraint: dpop\n  dpop: { kee: {} }\n", "kee"),
    ] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains(key), "{bad}: {e}");
    }
    // `mtls` chosen explicitly: a shared dpop block is ignored for this AS.
    let s = with("  sender_constraint: mtls\n  dpop: { key: { alg: ES256 } }\n").unwrap();
    assert!(s.authorization_servers[0].client.dpop.is_none());
    // Per AS: the shared block's dpop settings merge under an AS's own overrides.
    let multi = TWO_BANKS
            .replace(
                "  transport: { cert_path: /etc/tls.crt",
                "  sender_constraint: mtls\n  dpop: { key: { path: /k/dpop.pem, alg: PS256 }, token_type_to_app: dpop }\n  transport: { cert_path: /etc/tls.crt",
            )
            .replace(
                "client: { client_id: tpp-at-a }",
                "client: { client_id: tpp-at-a, sender_constraint: dpop, dpop: { token_type_to_app: bearer } }",
            );
    let s = Settings::from_yaml(&multi, Path::new("/etc/ps/c.yaml")).unwrap();
    let a = s.authorization_servers[0].client.dpop.clone().unwrap();
    assert_eq!(
        a.key_path,
        Some(PathBuf::from("/k/dpop.pem")),
        "key from the shared block"
    );
    assert_eq!((a.alg, a.token_type_to_app), (Alg::PS256, TokenTypeToApp::Bearer));
    assert!(s.authorization_servers[1].client.dpop.is_none(), "bank-b stays on mTLS");
}

#[test]
fn unknown_key_is_rejected_with_its_position() {
    let bad = MINIMAL.replace("client_id: legacy-app", "client_id: legacy-app\n  clent_secret: x");
    let err = Settings::from_yaml(&bad, Path::new("c.yaml")).unwrap_err().to_string();
    assert!(err.contains("clent_secret"), "{err}");
    assert!(err.contains("line"), "{err}");
    assert!(err.starts_with("c.yaml"), "{err}");
}

#[test]
fn bad_values_name_their_key() {
    let bad = MINIMAL.replace("alg: ES256", "alg: RS256");
    let err = Settings::from_yaml(&bad, Path::new("c.yaml")).unwrap_err().to_string();
    assert!(err.contains("signing_keys[0].alg"), "{err}");
    let bad = MINIMAL.replace("admin: \"127.0.0.1:9090\"", "admin: \"127.0.0.1:8080\"");
    assert!(Settings::from_yaml(&bad, Path::new("c.yaml")).is_err());
    let bad = MINIMAL.replace("https://as.example.com", "http://as.example.com");
    assert!(Settings::from_yaml(&bad, Path::new("c.yaml")).is_err());
    // The single form has no name and no per-AS client: both belong to the list form.
    let bad = MINIMAL.replace(
        r#"{ issuer: "https://as.example.com" }"#,
        r#"{ issuer: "https://as.example.com", name: bank }"#,
    );
    let err = Settings::from_yaml(&bad, Path::new("c.yaml")).unwrap_err().to_string();
    assert!(err.contains("authorization_server") && err.contains("`name`"), "{err}");
}

#[test]
fn egress_grant_allowlist_and_app_secret() {
    let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    assert_eq!(s.allowed_grant_types, ["authorization_code", "refresh_token"]);
    assert!(s.app_secret.is_none(), "no app secret unless configured");
    let with =
        |extra: &str| Settings::from_yaml(&format!("{MINIMAL}egress:\n{extra}"), Path::new("/nonexistent/c.yaml"));
    let s = with("  allowed_grant_types: [authorization_code, refresh_token, \"urn:x:grant\"]\n").unwrap();
    assert_eq!(s.allowed_grant_types.len(), 3);
    // client_credentials only with the app's own secret on the egress (issue 20 item 5).
    let e = with("  allowed_grant_types: [authorization_code, client_credentials]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("egress.allowed_grant_types")
            && e.contains("egress.app_client_secret_sha256")
            && e.contains("egress.app_client_secret_file"),
        "{e}"
    );
    let s = with(&format!(
        "  allowed_grant_types: [client_credentials]\n  app_client_secret_sha256: \"{}\"\n",
        "3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a"
    ))
    .unwrap();
    assert_eq!(s.allowed_grant_types, ["client_credentials"]);
    let e = with("  allowed_grant_types: []\n").unwrap_err().to_string();
    assert!(e.contains("egress.allowed_grant_types"), "{e}");
    let e = with("  allowed_grant_types: [\"a b\"]\n").unwrap_err().to_string();
    assert!(e.contains("egress.allowed_grant_types"), "{e}");

    let digest = "3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a";
    let s = with(&format!("  app_client_secret_sha256: \"{digest}\"\n")).unwrap();
    assert!(s.app_secret.as_ref().unwrap().verify(b"the-apps-old-secret"));
    assert!(!format!("{s:?}").contains(digest), "the digest is never printed");
    let e = with("  app_client_secret_sha256: nothex\n").unwrap_err().to_string();
    assert!(e.contains("egress.app_client_secret_sha256"), "{e}");

    let dir = std::env::temp_dir().join(format!("ps-app-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.secret"), "the-apps-old-secret\n").unwrap();
    let yaml = format!("{MINIMAL}egress:\n  app_client_secret_file: app.secret\n");
    let s = Settings::from_yaml(&yaml, &dir.join("c.yaml")).unwrap();
    assert_eq!(
        s.app_secret,
        with(&format!("  app_client_secret_sha256: \"{digest}\"\n"))
            .unwrap()
            .app_secret
    );
    std::fs::write(dir.join("empty.secret"), "").unwrap();
    let e = Settings::from_yaml(&yaml.replace("app.secret", "empty.secret"), &dir.join("c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("app_client_secret_file") && e.contains("empty"), "{e}");
    let e = Settings::from_yaml(&yaml.replace("app.secret", "missing.secret"), &dir.join("c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("app_client_secret_file"), "{e}");
    let e = with(&format!(
        "  app_client_secret_sha256: \"{digest}\"\n  app_client_secret_file: /x\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("not both"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn env_expansion_with_defaults_and_missing() {
    let env = |k: &str| (k == "HOST").then(|| "as.example.com".to_string());
    assert_eq!(
        expand_env("a: https://${HOST}/x\nb: ${PORT:-443}\n", &env).unwrap(),
        "a: https://as.example.com/x\nb: 443\n"
    );
    assert_eq!(expand_env("a: 1\nb: ${NOPE}\n", &env), Err((2, "NOPE".into())));
    // Comments are left alone, quoted # is not a comment.
    assert_eq!(
        expand_env("# ${NOPE}\na: x # ${NOPE}\n", &env).unwrap(),
        "# ${NOPE}\na: x # ${NOPE}\n"
    );
    assert_eq!(
        expand_env("a: \"#${HOST}\"\n", &env).unwrap(),
        "a: \"#as.example.com\"\n"
    );
}

#[test]
fn assertion_pool_defaults_and_bounds() {
    // Off by default for ES256/EdDSA keys, on for PS256.
    let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    let c = &s.authorization_servers[0].client;
    assert_eq!(c.assertion_pool, 0);
    assert_eq!(c.assertion_pool_max_age, Duration::from_secs(10));
    let rsa = Settings::from_yaml(&MINIMAL.replace("alg: ES256", "alg: PS256"), Path::new("c.yaml")).unwrap();
    assert_eq!(
        rsa.authorization_servers[0].client.assertion_pool,
        validate_client::DEFAULT_ASSERTION_POOL
    );
    let with = |extra: &str| {
        let text = MINIMAL.replace(
            "  auth_method: private_key_jwt\n",
            &format!("  auth_method: private_key_jwt\n{extra}"),
        );
        Settings::from_yaml(&text, Path::new("c.yaml"))
    };
    let off = with("  assertion_pool: 0\n").unwrap();
    assert_eq!(off.authorization_servers[0].client.assertion_pool, 0);
    assert!(with("  assertion_pool: 17\n").is_err());
    let s = with("  assertion_pool: 8\n  assertion_pool_max_age_seconds: 5\n").unwrap();
    assert_eq!(s.authorization_servers[0].client.assertion_pool, 8);
    assert_eq!(
        s.authorization_servers[0].client.assertion_pool_max_age,
        Duration::from_secs(5)
    );
    assert!(with("  assertion_pool_max_age_seconds: 0\n").is_err());
    assert!(with("  assertion_pool_max_age_seconds: 31\n").is_err());
    // At most half the assertion lifetime; the default shrinks with a short lifetime.
    assert!(with("  assertion_lifetime_seconds: 10\n  assertion_pool_max_age_seconds: 6\n").is_err());
    let short = with("  assertion_lifetime_seconds: 10\n").unwrap();
    assert_eq!(
        short.authorization_servers[0].client.assertion_pool_max_age,
        Duration::from_secs(5)
    );
}

#[test]
fn connection_read_buffer_and_memory_trim_limits() {
    let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    assert_eq!(s.connection_read_buffer, 0, "no read buffer by default");
    assert_eq!(s.memory_trim_interval, Duration::from_secs(1));
    let with = |limits: &str| Settings::from_yaml(&format!("{MINIMAL}limits: {{ {limits} }}\n"), Path::new("c.yaml"));
    let s = with("connection_read_buffer_bytes: 4096, memory_trim_interval_ms: 0").unwrap();
    assert_eq!(s.connection_read_buffer, 4096);
    assert!(s.memory_trim_interval.is_zero(), "0 turns the trim off");
    for bad in ["connection_read_buffer_bytes: 512", "memory_trim_interval_ms: 10"] {
        let err = with(bad).unwrap_err().to_string();
        assert!(err.contains(bad.split(':').next().unwrap()), "{err}");
    }
}

#[test]
fn connection_bounds_defaults_and_limits() {
    let s = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    assert_eq!(s.max_connections, 1280);
    assert_eq!(
        s.connection_bounds,
        super::ConnectionBounds {
            max_request_header_bytes: 16384,
            pressure_percent: 80,
            admin_max_connections: 32,
            egress_max_connections: 128,
        }
    );
    let with = |limits: &str| Settings::from_yaml(&format!("{MINIMAL}limits: {{ {limits} }}\n"), Path::new("c.yaml"));
    let s = with("max_request_header_bytes: 32768, connection_pressure_percent: 100, admin_max_connections: 4, egress_max_connections: 512").unwrap();
    assert_eq!(s.connection_bounds.max_request_header_bytes, 32768);
    assert_eq!(s.connection_bounds.pressure_percent, 100);
    assert_eq!(s.connection_bounds.admin_max_connections, 4);
    assert_eq!(s.connection_bounds.egress_max_connections, 512);
    for bad in [
        "max_request_header_bytes: 100",
        "max_request_header_bytes: 2000000",
        "connection_pressure_percent: 0",
        "connection_pressure_percent: 101",
        "admin_max_connections: 0",
        "egress_max_connections: 0",
    ] {
        let err = with(bad).unwrap_err().to_string();
        assert!(err.contains(bad.split(':').next().unwrap()), "{err}");
    }
}

#[test]
fn every_validation_error_of_a_file_is_reported_at_once() {
    let text = MINIMAL
        .replace("\"127.0.0.1:9090\"", "\"not-an-addr\"")
        .replace("auth_method: private_key_jwt", "auth_method: client_secret_basic")
        .replace("alg: ES256", "alg: HS256")
        + "callback: { code_ttl_seconds: 3600, paths: [cb] }\nlogging: { format: xml }\n";
    let e = Settings::from_yaml(&text, Path::new("c.yaml")).unwrap_err();
    let ConfigError::Several(list) = &e else {
        panic!("several problems: {e}")
    };
    let keys: Vec<&str> = list
        .iter()
        .filter_map(|p| match p {
            ConfigError::Invalid { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        keys,
        [
            "listen.admin",
            "client.auth_method",
            "client.signing_keys[0].alg",
            "callback.paths",
            "callback.code_ttl_seconds",
            "logging.format",
        ],
        "{e}"
    );
    // One problem per line, each keeping its own message.
    let text = e.to_string();
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.contains("`client_secret_basic` is not one of private_key_jwt, tls_client_auth"),
        "{text}"
    );
}

#[test]
fn a_problem_in_one_as_does_not_hide_the_next() {
    let text = TWO_BANKS
        .replace(
            "client: { client_id: tpp-at-a }",
            "client: { client_id: tpp-at-a, assertion_pool: 99 }",
        )
        .replace("https://b.example.com", "http://b.example.com");
    let e = Settings::from_yaml(&text, Path::new("c.yaml")).unwrap_err().to_string();
    assert!(e.contains("authorization_servers[0].client.assertion_pool"), "{e}");
    assert!(e.contains("authorization_servers[1].issuer"), "{e}");
}

#[test]
fn choice_keys_load_their_spellings_and_name_the_allowed_values() {
    let as_with = |par_endpoint: &str| {
        let text = MINIMAL.replace(
            r#"{ issuer: "https://as.example.com" }"#,
            &format!(r#"{{ issuer: "https://as.example.com", par_endpoint: {par_endpoint} }}"#),
        );
        Settings::from_yaml(&text, Path::new("c.yaml"))
    };
    for (spelling, want) in [
        ("auto", AliasPolicy::Auto),
        ("mtls_alias", AliasPolicy::Always),
        ("always", AliasPolicy::Always),
        ("top_level", AliasPolicy::Never),
        ("never", AliasPolicy::Never),
    ] {
        assert_eq!(
            as_with(spelling).unwrap().authorization_servers[0].par_alias,
            want,
            "{spelling}"
        );
    }
    let client_with = |line: &str| {
        Settings::from_yaml(
            &MINIMAL.replace("  transport:", &format!("{line}\n  transport:")),
            Path::new("c.yaml"),
        )
    };
    for spelling in ["jwt", "query.jwt"] {
        let s = client_with(&format!("  response_mode: {spelling}")).unwrap();
        assert!(s.authorization_servers[0].client.jarm, "{spelling}");
    }
    let s = Settings::from_yaml(&format!("{MINIMAL}logging: {{ format: text }}\n"), Path::new("c.yaml")).unwrap();
    assert!(!s.log_json);
    // Unknown values: one problem each, all reported, each naming the allowed values.
    let text = MINIMAL
        .replace(
            r#"{ issuer: "https://as.example.com" }"#,
            r#"{ issuer: "https://as.example.com", par_endpoint: sometimes }"#,
        )
        .replace(
            "  transport:",
            "  response_mode: form_post\n  sender_constraint: Dpop\n  transport:",
        )
        + "logging: { format: xml }\n";
    let e = Settings::from_yaml(&text, Path::new("c.yaml")).unwrap_err().to_string();
    for want in [
        "c.yaml:4: `authorization_server.par_endpoint`: `sometimes` is not one of auto, mtls_alias, top_level",
        "c.yaml:9: `client.response_mode`: `form_post` is not supported: use jwt (query.jwt), or leave it out",
        "c.yaml:10: `client.sender_constraint`: `Dpop` is not one of mtls, dpop",
        "c.yaml:12: `logging.format`: `xml` is not json or text",
    ] {
        assert!(e.contains(want), "{want} not in\n{e}");
    }
}
