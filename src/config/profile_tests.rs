//! One test per profile rule: the default it fills, and the contradiction it refuses.

use std::path::Path;

use super::*;
use crate::config::{AliasPolicy, AuthMethod, ConfigError, SenderConstraint, Settings};

const DIGEST: &str = "3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a";

/// A single-AS config with `profile`, signing alg `alg` and the client lines `client`.
fn cfg(profile: &str, alg: &str, client: &str, extra: &str) -> Result<Settings, ConfigError> {
    let text = format!(
        r#"
listen: {{ public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }}
upstream: "127.0.0.1:3000"
profile: {profile}
authorization_server: {{ issuer: "https://as.example.com" }}
client:
  client_id: legacy-app
  signing_key: {{ path: keys/sign.pem, alg: {alg} }}
  transport: {{ cert_path: /etc/tls.crt, key_path: /etc/tls.key }}
{client}{extra}"#
    );
    Settings::from_yaml(&text, Path::new("/etc/ps/config.yaml"))
}

const ENC: &str = "  encryption_key: { path: keys/enc.pem, alg: ECDH-ES+A256KW }\n";

/// The refusal names the key, the profile, the AS and the source.
fn refused(r: Result<Settings, ConfigError>, key: &str, profile: &str, source: &str) {
    let e = r.expect_err("must be refused").to_string();
    assert!(e.contains(&format!("`{key}`")), "key {key}: {e}");
    assert!(e.contains(&format!("profile `{profile}`")), "{e}");
    assert!(e.contains("AS `default`"), "{e}");
    assert!(e.contains(&format!("source: {source}")), "{e}");
}

#[test]
fn no_profile_is_fapi2_message_signing_and_changes_nothing() {
    use crate::config::tests::MINIMAL;
    let absent = Settings::from_yaml(MINIMAL, Path::new("c.yaml")).unwrap();
    let named = Settings::from_yaml(
        &format!("{MINIMAL}profile: fapi2-message-signing\n"),
        Path::new("c.yaml"),
    )
    .unwrap();
    assert_eq!(
        format!("{absent:?}"),
        format!("{named:?}"),
        "the default is today's behaviour"
    );
    assert_eq!(absent.profiles.len(), 1);
    assert_eq!(absent.profiles[0].profile, "fapi2-message-signing");
    assert!(absent.profiles[0].defaults.is_empty());
    let a = &absent.authorization_servers[0];
    assert_eq!(a.par_alias, AliasPolicy::Auto);
    assert!(a.request_object);
    assert_eq!(a.client.sender_constraint, SenderConstraint::Mtls);
    assert_eq!(absent.allowed_grant_types, ["authorization_code", "refresh_token"]);
}

#[test]
fn unknown_profile_names_the_allowed_values() {
    let e = cfg("open-banking", "PS256", "  auth_method: private_key_jwt\n", "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`profile`") && e.contains("`open-banking`"), "{e}");
    for p in PROFILES {
        assert!(e.contains(p.name), "{e}");
    }
}

#[test]
fn cbuae_fills_private_key_jwt_and_mtls() {
    let s = cfg("cbuae", "PS256", "", "").unwrap();
    let a = &s.authorization_servers[0];
    assert_eq!(a.client.auth_method, AuthMethod::PrivateKeyJwt);
    assert_eq!(a.client.sender_constraint, SenderConstraint::Mtls);
    assert!(a.request_object, "JAR");
    assert_eq!(s.profiles[0].profile, "cbuae");
    assert_eq!(
        s.profiles[0].defaults,
        ["client.auth_method=private_key_jwt", "client.sender_constraint=mtls"]
    );
    assert_eq!(
        s.allowed_grant_types,
        ["authorization_code", "refresh_token"],
        "no client_credentials"
    );
}

#[test]
fn cbuae_refuses_each_contradiction() {
    let pkj = "  auth_method: private_key_jwt\n";
    refused(
        cfg("cbuae", "ES256", pkj, ""),
        "client.signing_key.alg",
        "cbuae",
        "UAE-SP",
    );
    refused(
        cfg(
            "cbuae",
            "PS256",
            &format!("{pkj}  request_object_signing_key: {{ path: r.pem, alg: EdDSA }}\n"),
            "",
        ),
        "client.request_object_signing_key.alg",
        "cbuae",
        "UAE-SP",
    );
    refused(
        cfg("cbuae", "PS256", "  auth_method: tls_client_auth\n", ""),
        "client.auth_method",
        "cbuae",
        "UAE-SP",
    );
    refused(
        cfg("cbuae", "PS256", &format!("{pkj}  sender_constraint: dpop\n"), ""),
        "client.sender_constraint",
        "cbuae",
        "UAE-SP",
    );
    for v in ["top_level", "never"] {
        let text = cfg("cbuae", "PS256", pkj, "")
            .map(|_| ())
            .and_then(|_| {
                let yaml = format!(
                    "listen: {{ public: \"127.0.0.1:8080\", admin: \"127.0.0.1:9090\" }}\nupstream: \"127.0.0.1:3000\"\nprofile: cbuae\nauthorization_server: {{ issuer: \"https://as.example.com\", par_endpoint: {v} }}\nclient:\n  client_id: a\n{pkj}  signing_key: {{ path: k.pem, alg: PS256 }}\n  transport: {{ cert_path: c, key_path: k }}\n"
                );
                Settings::from_yaml(&yaml, Path::new("c.yaml")).map(|_| ())
            });
        let e = text.expect_err(v).to_string();
        assert!(
            e.contains("`authorization_server.par_endpoint`") && e.contains("CS-MTLS"),
            "{e}"
        );
    }
    refused(
        cfg("cbuae", "PS256", pkj, "par: { request_object: false }\n"),
        "par.request_object",
        "cbuae",
        "UAE-SP",
    );
    refused(
        cfg("cbuae", "PS256", &format!("{pkj}  response_mode: jwt\n"), ""),
        "client.response_mode",
        "cbuae",
        "CS-MS-PLAN",
    );
    // What the profile allows still loads with the keys spelled out.
    let s = cfg(
        "cbuae",
        "PS256",
        &format!("{pkj}  sender_constraint: mtls\n"),
        "par: { request_object: true }\n",
    )
    .unwrap();
    assert!(s.profiles[0].defaults.is_empty());
}

#[test]
fn ksa_and_uk_and_brazil_allow_client_credentials_only_with_app_authentication() {
    let pkj = "  auth_method: private_key_jwt\n";
    let secret = format!("egress: {{ app_client_secret_sha256: \"{DIGEST}\" }}\n");
    for p in ["ksa", "uk-openbanking", "brazil"] {
        let s = cfg(p, "PS256", pkj, &secret).unwrap();
        assert_eq!(
            s.allowed_grant_types,
            ["authorization_code", "refresh_token", "client_credentials"],
            "{p}"
        );
        assert!(s.profiles[0]
            .defaults
            .contains(&"egress.allowed_grant_types+=client_credentials".to_string()));
        // Without app authentication the rule on main holds: no client_credentials.
        let s = cfg(p, "PS256", pkj, "").unwrap();
        assert_eq!(s.allowed_grant_types, ["authorization_code", "refresh_token"], "{p}");
        // An explicit list is the user's.
        let s = cfg(
            p,
            "PS256",
            pkj,
            &format!(
                "egress: {{ app_client_secret_sha256: \"{DIGEST}\", allowed_grant_types: [authorization_code] }}\n"
            ),
        )
        .unwrap();
        assert_eq!(s.allowed_grant_types, ["authorization_code"], "{p}");
        // Every call to the aliases.
        let yaml = format!(
            "listen: {{ public: \"127.0.0.1:8080\", admin: \"127.0.0.1:9090\" }}\nupstream: \"127.0.0.1:3000\"\nprofile: {p}\nauthorization_server: {{ issuer: \"https://as.example.com\", par_endpoint: top_level }}\nclient:\n  client_id: a\n{pkj}  signing_key: {{ path: k.pem, alg: PS256 }}\n  transport: {{ cert_path: c, key_path: k }}\n"
        );
        let e = Settings::from_yaml(&yaml, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(e.contains("par_endpoint") && e.contains("CS-MTLS"), "{p}: {e}");
    }
}

#[test]
fn ksa_refuses_dpop_plain_par_and_jarm() {
    let pkj = "  auth_method: private_key_jwt\n";
    let s = cfg("ksa", "PS256", pkj, "").unwrap();
    assert_eq!(s.profiles[0].defaults, ["client.sender_constraint=mtls"]);
    refused(
        cfg("ksa", "PS256", &format!("{pkj}  sender_constraint: dpop\n"), ""),
        "client.sender_constraint",
        "ksa",
        "CS-MS-PLAN",
    );
    refused(
        cfg("ksa", "PS256", pkj, "par: { request_object: false }\n"),
        "par.request_object",
        "ksa",
        "CS-MS-PLAN",
    );
    refused(
        cfg("ksa", "PS256", &format!("{pkj}  response_mode: jwt\n"), ""),
        "client.response_mode",
        "ksa",
        "CS-MS-PLAN",
    );
    // KSA's algs and client authentication are not confirmed publicly: not restricted.
    assert!(cfg("ksa", "ES256", "  auth_method: tls_client_auth\n", "").is_ok());
}

#[test]
fn uk_refuses_jarm_and_brazil_refuses_non_ps256() {
    let pkj = "  auth_method: private_key_jwt\n";
    refused(
        cfg("uk-openbanking", "PS256", &format!("{pkj}  response_mode: jwt\n"), ""),
        "client.response_mode",
        "uk-openbanking",
        "CS-MS-PLAN",
    );
    assert!(cfg("uk-openbanking", "ES256", pkj, "").unwrap().profiles[0]
        .defaults
        .is_empty());
    refused(
        cfg("brazil", "ES256", pkj, ""),
        "client.signing_key.alg",
        "brazil",
        "OFB-SP",
    );
    assert!(
        cfg("brazil", "PS256", &format!("{pkj}  response_mode: jwt\n"), "").is_ok(),
        "JARM allowed in Brazil"
    );
}

#[test]
fn singpass_fills_dpop_plain_par_and_private_key_jwt() {
    let s = cfg("singpass", "ES256", ENC, "").unwrap();
    let a = &s.authorization_servers[0];
    assert_eq!(a.client.auth_method, AuthMethod::PrivateKeyJwt);
    assert_eq!(a.client.sender_constraint, SenderConstraint::Dpop);
    assert!(a.client.dpop.is_some());
    assert!(!a.request_object, "plain PAR parameters");
    assert_eq!(
        s.profiles[0].defaults,
        [
            "client.auth_method=private_key_jwt",
            "client.sender_constraint=dpop",
            "par.request_object=false"
        ]
    );
    // Explicit choices the docs do not forbid are kept.
    let s = cfg(
        "singpass",
        "ES256",
        &format!("{ENC}  sender_constraint: mtls\n"),
        "par: { request_object: true }\n",
    )
    .unwrap();
    assert!(s.authorization_servers[0].request_object);
    assert_eq!(
        s.authorization_servers[0].client.sender_constraint,
        SenderConstraint::Mtls
    );
    // A `dpop` block alone is fine under the profile (it chose DPoP).
    assert!(cfg(
        "singpass",
        "ES256",
        &format!("{ENC}  dpop: {{ key: {{ alg: ES256 }} }}\n"),
        ""
    )
    .is_ok());
}

#[test]
fn singpass_refuses_rsa_keys_other_auth_and_a_missing_encryption_key() {
    refused(
        cfg("singpass", "PS256", ENC, ""),
        "client.signing_key.alg",
        "singpass",
        "SP-DOCS",
    );
    refused(
        cfg("singpass", "EdDSA", ENC, ""),
        "client.signing_key.alg",
        "singpass",
        "SP-DOCS",
    );
    refused(
        cfg(
            "singpass",
            "ES256",
            &format!("{ENC}  auth_method: tls_client_auth\n"),
            "",
        ),
        "client.auth_method",
        "singpass",
        "SP-DOCS",
    );
    refused(
        cfg("singpass", "ES256", "", ""),
        "client.encryption_key",
        "singpass",
        "SP-DOCS",
    );
    refused(
        cfg("singpass", "ES256", "  encryption_keys: []\n", ""),
        "client.encryption_key",
        "singpass",
        "SP-DOCS",
    );
}

#[test]
fn corppass_requires_dpop_and_ec() {
    let s = cfg("corppass", "ES256", ENC, "").unwrap();
    assert_eq!(
        s.authorization_servers[0].client.sender_constraint,
        SenderConstraint::Dpop
    );
    assert!(
        s.authorization_servers[0].request_object,
        "not confirmed: JAR stays the default"
    );
    refused(
        cfg("corppass", "ES256", &format!("{ENC}  sender_constraint: mtls\n"), ""),
        "client.sender_constraint",
        "corppass",
        "CP-DOCS",
    );
    refused(
        cfg("corppass", "PS256", ENC, ""),
        "client.signing_key.alg",
        "corppass",
        "CP-DOCS",
    );
    refused(
        cfg("corppass", "ES256", "", ""),
        "client.encryption_key",
        "corppass",
        "CP-DOCS",
    );
}

#[test]
fn per_as_profile_overrides_the_top_level_one() {
    let yaml = |bank_b_profile: &str, bank_b_alg: &str| {
        format!(
            r#"
listen: {{ public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }}
upstream: "127.0.0.1:3000"
profile: cbuae
client:
  client_id: legacy-app
  signing_key: {{ path: ps.pem, alg: PS256 }}
  transport: {{ cert_path: /etc/tls.crt, key_path: /etc/tls.key }}
authorization_servers:
  - {{ name: bank-a, issuer: "https://a.example.com" }}
  - name: bank-b
    issuer: "https://b.example.com"
    {bank_b_profile}
    client:
      auth_method: private_key_jwt
      signing_key: {{ path: ec.pem, alg: {bank_b_alg} }}
"#
        )
    };
    let s = Settings::from_yaml(&yaml("profile: fapi2-message-signing", "ES256"), Path::new("c.yaml")).unwrap();
    assert_eq!(s.profiles[0].profile, "cbuae");
    assert_eq!(s.profiles[1].profile, "fapi2-message-signing");
    assert_eq!(s.authorization_servers[0].client.auth_method, AuthMethod::PrivateKeyJwt);
    // Without the override bank-b is cbuae too, and its ES256 key is refused where it is set.
    let e = Settings::from_yaml(&yaml("", "ES256"), Path::new("c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`authorization_servers[1].client.signing_key.alg`") && e.contains("AS `bank-b`"),
        "{e}"
    );
    let e = Settings::from_yaml(&yaml("profile: nope", "ES256"), Path::new("c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`authorization_servers[1].profile`"), "{e}");
}

#[test]
fn every_profile_and_source_is_well_formed() {
    let mut names = std::collections::HashSet::new();
    for p in PROFILES {
        assert!(names.insert(p.name), "unique names");
        let sources = [
            p.signing_algs.map(|r| r.source),
            p.auth_method.map(|r| r.source),
            p.sender_constraint.map(|r| r.source),
            p.aliases_everywhere,
            p.request_object.map(|r| r.source),
            p.no_jarm,
            p.encrypted_id_token,
            p.client_credentials,
        ];
        for src in sources.into_iter().flatten() {
            assert!(
                SOURCES.iter().any(|s| s.short == src),
                "{}: unknown source {src}",
                p.name
            );
        }
    }
    assert_eq!(PROFILES[0].name, "fapi2-message-signing");
}

#[test]
fn readme_shows_the_table_the_code_applies() {
    let readme = include_str!("../../README.md");
    let table = readme_table();
    assert!(
        readme.contains(&table),
        "README \"Profiles\" must contain exactly this table (regenerate it):\n{table}"
    );
}

#[test]
fn check_config_lines_say_profile_defaults_and_the_missing_app_secret() {
    let pkj = "  auth_method: private_key_jwt\n";
    let s = cfg("cbuae", "PS256", "", "").unwrap();
    assert_eq!(
        s.profiles[0].describe(),
        "cbuae (defaults applied: client.auth_method=private_key_jwt, client.sender_constraint=mtls)"
    );
    assert_eq!(
        s.profiles[0].client_credentials_warning(false),
        None,
        "cbuae uses no client_credentials"
    );
    let s = cfg("uk-openbanking", "PS256", pkj, "").unwrap();
    assert_eq!(s.profiles[0].describe(), "uk-openbanking (no defaults applied)");
    let w = s.profiles[0].client_credentials_warning(false).unwrap();
    assert!(
        w.contains("egress.app_client_secret_sha256") && w.contains("uk-openbanking"),
        "{w}"
    );
    assert_eq!(s.profiles[0].client_credentials_warning(true), None);
}
