//! JWE helpers for the integration tests: what an AS does when it encrypts to the client.

use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::key_wrap::{KeyEncryptionKey, KeyWrap, AES_256};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use par_sidecar::as_client::jwe::concat_kdf;
use serde_json::{json, Value};

/// A fresh P-256 private key as PEM PKCS#8 at `dir/name` (mode 0600).
pub fn write_ec_key(dir: &Path, name: &str) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let b = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// What the AS does: ECDH-ES+A256KW / A256GCM to the recipient's public JWK (RFC 7518 §4.6).
pub fn encrypt(plaintext: &[u8], to: &Value, header_extra: Value) -> String {
    let eph = PrivateKey::generate(&ECDH_P256).unwrap();
    let epk = eph.compute_public_key().unwrap();
    let p = epk.as_ref();
    let mut point = vec![4u8];
    point.extend(B64.decode(to["x"].as_str().unwrap()).unwrap());
    point.extend(B64.decode(to["y"].as_str().unwrap()).unwrap());
    let z = agreement::agree(&eph, UnparsedPublicKey::new(&ECDH_P256, &point), (), |z| Ok(z.to_vec())).unwrap();
    let kek = concat_kdf(&z, "ECDH-ES+A256KW", b"", b"", 32);
    let mut cek = [0u8; 32];
    aws_lc_rs::rand::fill(&mut cek).unwrap();
    let mut wrapped = [0u8; 40];
    KeyEncryptionKey::new(&AES_256, &kek)
        .unwrap()
        .wrap(&cek, &mut wrapped)
        .unwrap();
    let mut header = json!({
        "alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": to["kid"], "cty": "JWT",
        "epk": {"kty": "EC", "crv": "P-256", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])}
    });
    for (k, v) in header_extra.as_object().unwrap() {
        header[k] = v.clone();
    }
    let h64 = B64.encode(header.to_string());
    let mut iv = [0u8; 12];
    aws_lc_rs::rand::fill(&mut iv).unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).unwrap());
    let mut buf = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(h64.as_bytes()), &mut buf)
        .unwrap();
    format!(
        "{h64}.{}.{}.{}.{}",
        B64.encode(wrapped),
        B64.encode(iv),
        B64.encode(&buf),
        B64.encode(tag.as_ref())
    )
}
