//! `client.encryption_key` / `client.encryption_keys` (issue 20 item 1): the keys the AS
//! encrypts ID tokens to, apart from `validate.rs` to keep that module in size.

use std::path::PathBuf;

use super::{file, ConfigError, EncryptionKeyRef, IdTokenHandover};
use crate::protocol::jose::KeyAlg;

const ALGS: &str = "ECDH-ES, ECDH-ES+A128KW, ECDH-ES+A192KW, ECDH-ES+A256KW, RSA-OAEP-256";

/// `encryption_key` first, then `encryption_keys`; no key is fine (no encrypted tokens).
/// `RSA1_5` and `dir` get their own refusal: they are the two a copied AS example may name.
pub(super) fn encryption_keys(
    c: &file::ClientFile,
    ck: &dyn Fn(&str) -> String,
    invalid: &dyn Fn(&str, String) -> ConfigError,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Vec<EncryptionKeyRef>, ConfigError> {
    let mut files: Vec<(String, &file::EncryptionKeyFile)> = Vec::new();
    if let Some(k) = &c.encryption_key {
        files.push(("encryption_key".into(), k));
    }
    for (i, k) in c.encryption_keys.iter().flatten().enumerate() {
        files.push((format!("encryption_keys[{i}]"), k));
    }
    let mut out = Vec::new();
    let mut kids = std::collections::HashSet::new();
    for (name, k) in files {
        let alg = KeyAlg::parse(&k.alg).ok_or_else(|| {
            let why = match k.alg.as_str() {
                "RSA1_5" => "is refused (RSAES-PKCS1-v1_5 is open to padding oracles)".to_string(),
                "dir" => "is refused (a shared symmetric key is not a client key)".to_string(),
                other => format!("`{other}` is not one of {ALGS}"),
            };
            invalid(&ck(&format!("{name}.alg")), why)
        })?;
        if let Some(kid) = &k.kid {
            if kid.is_empty() || !kids.insert(kid.clone()) {
                return Err(invalid(
                    &ck(&format!("{name}.kid")),
                    format!("`{kid}` is empty or used by another encryption key"),
                ));
            }
        }
        out.push(EncryptionKeyRef {
            path: resolve(&k.path),
            alg,
            kid: k.kid.clone(),
        });
    }
    Ok(out)
}

/// `verified_jws` (default) or `original`.
pub(super) fn id_token_handover(
    c: &file::ClientFile,
    ck: &dyn Fn(&str) -> String,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<IdTokenHandover, ConfigError> {
    match c.id_token_handover.as_deref() {
        None | Some("verified_jws") => Ok(IdTokenHandover::VerifiedJws),
        Some("original") => Ok(IdTokenHandover::Original),
        Some(other) => Err(invalid(
            &ck("id_token_handover"),
            format!("`{other}` is not one of verified_jws, original"),
        )),
    }
}

/// `public_jwks_path`: an absolute path without query or fragment that is not a callback
/// path (a JWKS there would shadow the app's callback).
pub(super) fn public_jwks_path(
    path: Option<&str>,
    callback_paths: &[String],
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Option<String>, ConfigError> {
    let Some(p) = path else { return Ok(None) };
    let fine = p.starts_with('/') && p.len() <= 256 && p.bytes().all(|b| b.is_ascii_graphic() && !b"?#%".contains(&b));
    if !fine {
        return Err(invalid(
            "public_jwks_path",
            format!(
                "`{}` is not an absolute path of at most 256 visible characters without ?, # or %",
                p.escape_debug()
            ),
        ));
    }
    if callback_paths.iter().any(|c| c == p) {
        return Err(invalid("public_jwks_path", format!("`{p}` is also a callback path")));
    }
    Ok(Some(p.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::MINIMAL;
    use crate::config::Settings;
    use crate::protocol::jose::KeyAlg;

    fn with(client_lines: &str) -> Result<Settings, String> {
        let yaml = MINIMAL.replace("  transport: {", &format!("{client_lines}\n  transport: {{"));
        Settings::from_yaml(&yaml, Path::new("/etc/ps/c.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn no_encryption_key_by_default() {
        let s = Settings::from_yaml(MINIMAL, Path::new("/etc/ps/c.yaml")).unwrap();
        assert!(s.authorization_servers[0].client.encryption_keys.is_empty());
    }

    #[test]
    fn id_token_handover_defaults_to_the_verified_jws() {
        use crate::config::IdTokenHandover;
        let s = Settings::from_yaml(MINIMAL, Path::new("/etc/ps/c.yaml")).unwrap();
        assert_eq!(
            s.authorization_servers[0].client.id_token_handover,
            IdTokenHandover::VerifiedJws
        );
        let s = with("  id_token_handover: original").unwrap();
        assert_eq!(
            s.authorization_servers[0].client.id_token_handover,
            IdTokenHandover::Original
        );
        let err = with("  id_token_handover: jwe").unwrap_err();
        assert!(
            err.contains("id_token_handover") && err.contains("verified_jws, original"),
            "{err}"
        );
    }

    #[test]
    fn public_jwks_path_is_off_by_default_and_checked() {
        let s = Settings::from_yaml(MINIMAL, Path::new("/etc/ps/c.yaml")).unwrap();
        assert_eq!(s.public_jwks_path, None);
        let on = format!("{MINIMAL}public_jwks_path: /.well-known/jwks.json\n");
        let s = Settings::from_yaml(&on, Path::new("/etc/ps/c.yaml")).unwrap();
        assert_eq!(s.public_jwks_path.as_deref(), Some("/.well-known/jwks.json"));
        for bad in ["jwks.json", "/jwks?x=1", "/a b"] {
            let y = format!("{MINIMAL}public_jwks_path: \"{bad}\"\n");
            let err = Settings::from_yaml(&y, Path::new("/etc/ps/c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("public_jwks_path"), "{bad}: {err}");
        }
    }

    #[test]
    fn one_key_or_a_list_in_order() {
        let s = with(
            "  encryption_key: { path: keys/enc.pem, alg: ECDH-ES+A256KW }\n  encryption_keys:\n    - { path: /k/old.pem, alg: ECDH-ES, kid: old }",
        )
        .unwrap();
        let k = &s.authorization_servers[0].client.encryption_keys;
        assert_eq!(k.len(), 2);
        assert_eq!(
            (k[0].path.to_str().unwrap(), k[0].alg),
            ("/etc/ps/keys/enc.pem", KeyAlg::EcdhEsA256Kw)
        );
        assert_eq!((k[1].alg, k[1].kid.as_deref()), (KeyAlg::EcdhEs, Some("old")));
    }

    #[test]
    fn rsa1_5_dir_and_unknown_algs_are_refused_by_name() {
        for (alg, want) in [
            ("RSA1_5", "padding oracle"),
            ("dir", "shared symmetric"),
            ("A256KW", "is not one of"),
        ] {
            let err = with(&format!("  encryption_key: {{ path: k.pem, alg: {alg} }}")).unwrap_err();
            assert!(err.contains("encryption_key.alg") && err.contains(want), "{err}");
        }
        let err = with("  encryption_keys:\n    - { path: a.pem, alg: ECDH-ES, kid: x }\n    - { path: b.pem, alg: ECDH-ES, kid: x }")
            .unwrap_err();
        assert!(err.contains("encryption_keys[1].kid"), "{err}");
    }

    #[test]
    fn per_as_override_replaces_the_shared_keys() {
        let yaml = r#"
listen: { public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }
upstream: "127.0.0.1:3000"
client:
  client_id: tpp
  auth_method: private_key_jwt
  signing_key: { path: /k/sign.pem, alg: ES256 }
  encryption_key: { path: /k/enc.pem, alg: ECDH-ES+A256KW }
  transport: { cert_path: /etc/tls.crt, key_path: /etc/tls.key }
authorization_servers:
  - name: singpass
    issuer: https://a.example.com
  - name: corppass
    issuer: https://b.example.com
    client:
      encryption_keys: [ { path: /k/cp.pem, alg: ECDH-ES+A128KW } ]
"#;
        let s = Settings::from_yaml(yaml, Path::new("/etc/ps/c.yaml")).unwrap();
        let a = &s.authorization_servers[0].client.encryption_keys;
        let b = &s.authorization_servers[1].client.encryption_keys;
        assert_eq!((a.len(), a[0].alg), (1, KeyAlg::EcdhEsA256Kw));
        assert_eq!((b.len(), b[0].alg), (1, KeyAlg::EcdhEsA128Kw));
        assert_eq!(b[0].path.to_str(), Some("/k/cp.pem"));
    }
}
