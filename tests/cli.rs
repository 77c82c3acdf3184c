//! The CLI contract: check-config, jwks, and their error messages.

mod common;

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_par-sidecar"))
}

/// Test PKI with the file names the shipped example configs expect under
/// `PAR_SIDECAR_SECRETS`.
fn example_secrets() -> std::path::PathBuf {
    let pki = common::pki();
    for (from, to) in [
        ("sign-ps256.pem", "signing.pem"),
        ("transport.crt", "tls.crt"),
        ("transport.key", "tls.key"),
        ("ca.crt", "as-ca.pem"),
    ] {
        std::fs::copy(pki.join(from), pki.join(to)).unwrap();
    }
    std::fs::write(pki.join("state.key"), [9u8; 32]).unwrap();
    pki
}

/// The shipped example config passes `check-config --offline` once its secrets exist.
#[test]
fn example_config_checks_offline_with_generated_secrets() {
    let pki = example_secrets();
    let out = bin()
        .args([
            "check-config",
            "--offline",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/par-sidecar.example.yaml"),
        ])
        .env("PAR_SIDECAR_SECRETS", &pki)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("[default]"), "{stdout}");
    assert!(stdout.contains("client_id:       legacy-app"), "{stdout}");
    assert!(stdout.contains("PS256 kid="), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"));
    // The example leaves callback.paths unset: said loudly (issue 18 H1).
    assert!(stdout.contains("callback paths:    LEARNED"), "{stdout}");
    assert!(stdout.contains("code lifetime:     30 s"), "{stdout}");
    // The example's egress listener has no app secret configured: said loudly.
    assert!(
        stdout.contains("WARNING:           egress app authentication is OFF"),
        "{stdout}"
    );
}

/// With an app secret, no warning.
#[test]
fn an_app_secret_silences_the_egress_warning() {
    let pki = example_secrets();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/par-sidecar.example.yaml");
    let yaml = std::fs::read_to_string(example).unwrap().replace(
        "egress:\n",
        "egress:\n  app_client_secret_sha256: \"3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a\"\n",
    );
    let cfg = pki.join("with-app-secret.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = bin()
        .args(["check-config", "--offline", "--config"])
        .arg(&cfg)
        .env("PAR_SIDECAR_SECRETS", &pki)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("egress app authentication is OFF"), "{stdout}");
}

/// The two-bank example: every AS with its effective client; `jwks` prints the union once.
#[test]
fn two_bank_config_lists_every_as_and_one_jwks() {
    let pki = example_secrets();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/par-sidecar.two-banks.example.yaml");
    let out = bin()
        .args(["check-config", "--offline", "--config", example])
        .env("PAR_SIDECAR_SECRETS", &pki)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "authorization servers: 2",
        "[bank-a]",
        "https://auth.bank-a.example",
        "client_id:       tpp-at-bank-a",
        "[bank-b]",
        "client_id:       tpp-at-bank-b",
        "auth method:     private_key_jwt",
        "CN=legacy-app",
    ] {
        assert!(stdout.contains(want), "{want} missing in:\n{stdout}");
    }
    assert_eq!(stdout.matches("PS256 kid=").count(), 2, "{stdout}");

    // A per-bank key override: the union has both keys, each once.
    let yaml = std::fs::read_to_string(example).unwrap().replace(
        "client: { client_id: \"${BANK_B_CLIENT_ID:-tpp-at-bank-b}\" }",
        &format!(
            "client: {{ client_id: tpp-at-bank-b, signing_key: {{ path: \"{}\", alg: ES256 }} }}",
            pki.join("sign-es256.pem").display()
        ),
    );
    let cfg = pki.join("two.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = bin()
        .args(["jwks", "--config"])
        .arg(&cfg)
        .env("PAR_SIDECAR_SECRETS", &pki)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let algs: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs, ["PS256", "ES256"]);
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = common::pki();
    let cfg = dir.join("bad.yaml");
    std::fs::write(
        &cfg,
        "listen: { public: \"127.0.0.1:1\", admin: \"127.0.0.1:2\" }\nupstream: \"127.0.0.1:3\"\nauthorization_server: { issuer: \"https://as\" }\nclient:\n  client_id: x\n  clent_secret: y\n",
    )
    .unwrap();
    let out = bin()
        .args(["check-config", "--offline", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("clent_secret") && err.contains("line 6"),
        "{err}"
    );

    std::fs::write(&cfg, "upstream: ${NOT_SET_ANYWHERE}\n").unwrap();
    let out = bin()
        .args(["check-config", "--offline", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("NOT_SET_ANYWHERE"), "{err}");

    // A key file that is not a key: the path is named, the content never printed.
    let yaml = common::settings_yaml(
        &dir,
        "https://as.example",
        "transport.crt",
        "ES256",
        "private_key_jwt",
        "",
    );
    std::fs::write(&cfg, yaml).unwrap();
    let out = bin()
        .args(["check-config", "--offline", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("transport.crt") && err.contains("PRIVATE KEY"), "{err}");
}

#[test]
fn jwks_prints_public_keys_only() {
    let dir = common::pki();
    let cfg = dir.join("ok.yaml");
    let yaml = common::settings_yaml(
        &dir,
        "https://as.example",
        "sign-eddsa.pem",
        "EdDSA",
        "private_key_jwt",
        "",
    );
    std::fs::write(&cfg, yaml).unwrap();
    let out = bin().args(["jwks", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = &v["keys"][0];
    assert_eq!(k["kty"], "OKP");
    assert_eq!(k["alg"], "EdDSA");
    assert!(k.get("d").is_none());
    // kid defaults to the RFC 7638 thumbprint.
    assert_eq!(k["kid"], par_sidecar::as_client::jose::jwk_thumbprint(k));
}

#[test]
fn check_config_and_run_list_every_validation_error_with_line_and_key() {
    let dir = common::pki();
    let cfg = dir.join("several.yaml");
    std::fs::write(
        &cfg,
        "listen: { public: \"127.0.0.1:1\", admin: \"127.0.0.1:1\" }\n\
         upstream: \"127.0.0.1:3\"\n\
         authorization_servers:\n\
         \x20 - name: bank-a\n\
         \x20   issuer: https://a.example\n\
         \x20   client:\n\
         \x20     client_id: x\n\
         \x20     auth_method: client_secret_basic\n\
         \x20     signing_key: { path: k.pem, alg: ES256 }\n\
         \x20     transport: { cert_path: t.crt, key_path: t.key }\n\
         callback:\n\
         \x20 code_ttl_seconds: 3600\n",
    )
    .unwrap();
    for args in [&["check-config", "--offline", "--config"][..], &["run", "--config"][..]] {
        let out = bin().args(args).arg(&cfg).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        let file = cfg.display();
        assert_eq!(
            lines,
            [
                format!("error: {file}:1: `listen.admin`: must differ from listen.public: admin endpoints never share the browser listener"),
                format!("error: {file}:8: `authorization_servers[0].client.auth_method`: `client_secret_basic` is not one of private_key_jwt, tls_client_auth"),
                format!("error: {file}:12: `callback.code_ttl_seconds`: 3600 is outside 5..=600"),
            ],
            "{args:?}: {err}"
        );
    }
}
