//! Encrypted JARM responses (JARM §2.3: signed, then encrypted) with two banks behind one
//! sidecar, each with its own encryption key: the response is opened with the keys of every
//! JARM bank (its state is inside), then verified only by the bank whose key decrypted it,
//! within that bank's advertised algorithms; every refusal names its check.

mod common;

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use common::jwe::{encrypt, write_ec_key};
use common::AsDouble;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use par_sidecar::as_client::jarm;
use par_sidecar::metrics::Metrics;
use serde_json::{json, Value};

fn two_banks_yaml(pki: &Path, a: &str, b: &str) -> String {
    format!(
        r#"
listen: {{ public: "127.0.0.1:18080", admin: "127.0.0.1:19090" }}
upstream: "127.0.0.1:13000"
client:
  auth_method: private_key_jwt
  response_mode: jwt
  signing_key: {{ path: "{key}", alg: ES256 }}
  transport: {{ cert_path: "{cert}", key_path: "{tkey}" }}
authorization_servers:
  - {{ name: bank-a, issuer: "{a}", ca_file: "{ca}", client: {{ client_id: tpp-a, encryption_key: {{ path: "{ea}", alg: ECDH-ES+A256KW }} }} }}
  - {{ name: bank-b, issuer: "{b}", ca_file: "{ca}", client: {{ client_id: tpp-b, encryption_key: {{ path: "{eb}", alg: ECDH-ES+A256KW }} }} }}
callback: {{ cookie_secure: false }}
"#,
        ca = pki.join("ca.crt").display(),
        key = pki.join("sign-es256.pem").display(),
        cert = pki.join("transport.crt").display(),
        tkey = pki.join("transport.key").display(),
        ea = pki.join("jarm-a.pem").display(),
        eb = pki.join("jarm-b.pem").display(),
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn an_encrypted_response_is_verified_only_by_the_bank_whose_key_decrypted_it() {
    let pki = common::pki();
    write_ec_key(&pki, "jarm-a.pem");
    write_ec_key(&pki, "jarm-b.pem");
    let a = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let b = AsDouble::start(&pki, &pki.join("sign-es256.pem"), Algorithm::ES256).await;
    let state = common::loaded_state(&two_banks_yaml(&pki, &a.issuer, &b.issuer), &pki.join("s.yaml")).await;
    // Bank b signs its JARM responses with a key it publishes under kid b-1.
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let key = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("b-1".into());
    let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    b.replies.lock().unwrap().insert(
        "/jwks".into(),
        (200, vec![("content-type".into(), "application/json".into())], jwks),
    );
    let bank_a = state.registry.by_name("bank-a").unwrap();
    let bank_b = state.registry.by_name("bank-b").unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("b-1".into());
    let claims = json!({"iss": b.issuer, "aud": "tpp-b", "exp": now() + 300, "state": "ps1.x", "code": "c-1"});
    let jws = jsonwebtoken::encode(&h, &claims, &key).unwrap();
    let to_b: Value = bank_b.keys.load().encryption[0].public_jwk().clone();
    let jwe = encrypt(jws.as_bytes(), &to_b, json!({}));
    let clients = &state.registry.clients;
    assert!(jarm::encrypted_to_us(&jwe, clients));

    let opened = jarm::open(&jwe, clients).unwrap();
    assert_eq!(opened.jws, jws, "the state is readable once decrypted");
    let m = Metrics::new();
    let t = Duration::from_secs(2);
    let verified = jarm::verify(bank_b, &bank_b.metadata().unwrap(), &opened, 60, t, &m).await;
    assert_eq!(verified.unwrap()["code"], "c-1");
    // A state naming bank a: bank b's key decrypted it, so bank a refuses it.
    let e = jarm::verify(bank_a, &bank_a.metadata().unwrap(), &opened, 60, t, &m)
        .await
        .unwrap_err();
    assert_eq!((e.check(), e.failure().as_str()), ("jwe_key", "jarm_invalid"));
    assert!(!e.to_string().contains(&jws[..20]), "never the token: {e}");

    // Bank b advertises another key management alg for authorization responses.
    b.metadata_overrides.lock().unwrap().insert(
        "authorization_encryption_alg_values_supported".into(),
        json!(["ECDH-ES"]),
    );
    assert!(par_sidecar::ops::background::refresh_once(&state, bank_b).await);
    let e = jarm::verify(bank_b, &bank_b.metadata().unwrap(), &opened, 60, t, &m)
        .await
        .unwrap_err();
    assert_eq!(e.check(), "jwe_alg");

    // Opening refuses what no JARM bank can decrypt, tampering, and an unsigned inside.
    let check = |r: Result<jarm::JarmResponse, jarm::JarmError>| r.unwrap_err().check();
    let nobody = encrypt(jws.as_bytes(), &to_b, json!({"kid": "nobody"}));
    assert!(!jarm::encrypted_to_us(&nobody, clients));
    assert_eq!(check(jarm::open(&nobody, clients)), "jwe_key");
    let mut parts: Vec<String> = jwe.split('.').map(str::to_string).collect();
    let first = if parts[3].starts_with('A') { 'B' } else { 'A' };
    parts[3] = format!("{first}{}", &parts[3][1..]);
    assert_eq!(check(jarm::open(&parts.join("."), clients)), "jwe_decrypt");
    let unsigned = encrypt(br#"{"state":"ps1.x","code":"c-1"}"#, &to_b, json!({}));
    assert_eq!(check(jarm::open(&unsigned, clients)), "jwe_inner");
}
