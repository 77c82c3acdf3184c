//! Encrypted ID tokens (Singpass, Corppass: a JWS nested in a JWE) through the egress
//! listener, against the real-TLS AS double: decrypted with the configured key, the inner
//! JWS checked as any ID token and handed to the app in place of the JWE; every refusal is
//! `invalid_token_response` naming its check.

mod common;

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::jwe::{encrypt, write_ec_key};
use common::token_as::refused_as;
use common::token_as::TokenAs;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use par_sidecar::egress::{self, EgressResponse};
use serde_json::{json, Value};

type Stack = TokenAs;

/// `client_keys`: YAML lines added to the client block (the encryption keys), or "".
async fn stack(client_keys: &str) -> Stack {
    stack_with("", client_keys).await
}

/// `top`: YAML lines put before the file (e.g. `profile: singpass`).
async fn stack_with(top: &str, client_keys: &str) -> Stack {
    TokenAs::start(|yaml, pki| {
        write_ec_key(pki, "enc.pem");
        let keys = client_keys.replace("ENC", &pki.join("enc.pem").display().to_string());
        format!(
            "{top}{}",
            yaml.replace("  transport: {", &format!("{keys}\n  transport: {{"))
        )
    })
    .await
}

const ONE_KEY: &str = "  encryption_key: { path: \"ENC\", alg: ECDH-ES+A256KW, kid: enc-1 }";

impl Stack {
    /// Our published encryption key, as the AS would take it from `par-sidecar jwks`.
    fn enc_jwk(&self) -> Value {
        let jwks = self.state.public_jwks();
        let keys = jwks["keys"].as_array().unwrap();
        keys.iter()
            .find(|k| k["use"] == "enc")
            .cloned()
            .expect("an enc key is published")
    }

    /// A code exchange whose response carries `id_token`.
    async fn exchange(&self, n: u32, id_token: &str) -> EgressResponse {
        self.answer(json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "id_token": id_token}));
        self.code(&format!("code-{n}"), Some("n-1"));
        let form = format!("grant_type=authorization_code&code=code-{n}");
        egress::handle(&self.state, common::egress_post("/token", Some("legacy-app:s"), &form)).await
    }
}

#[tokio::test]
async fn an_encrypted_id_token_reaches_the_app_as_its_verified_inner_jws() {
    let s = stack(ONE_KEY).await;
    let enc = s.enc_jwk();
    assert_eq!(
        (enc["alg"].as_str(), enc["kid"].as_str()),
        (Some("ECDH-ES+A256KW"), Some("enc-1"))
    );
    assert!(enc.get("d").is_none(), "public members only");
    let inner = s.id_token("alice", Some("n-1"));
    let r = s.exchange(1, &encrypt(inner.as_bytes(), &enc, json!({}))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["id_token"].as_str(), Some(inner.as_str()));
    assert_eq!(v["access_token"], "at-1");
    // A refresh response's encrypted ID token is decrypted the same way.
    let inner = s.id_token("alice", None);
    s.answer(
        json!({"access_token": "at-2", "token_type": "Bearer", "id_token": encrypt(inner.as_bytes(), &enc, json!({}))}),
    );
    let r = egress::handle(
        &s.state,
        common::egress_post(
            "/token",
            Some("legacy-app:s"),
            "grant_type=refresh_token&refresh_token=rt-1",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["id_token"].as_str(), Some(inner.as_str()));
}

#[tokio::test]
async fn every_jwe_refusal_names_its_check() {
    let s = stack(ONE_KEY).await;
    let enc = s.enc_jwk();
    let good = s.id_token("alice", Some("n-1"));
    // Encrypted to a kid we do not have.
    let t = encrypt(good.as_bytes(), &enc, json!({"kid": "someone-else"}));
    refused_as(&s.exchange(1, &t).await, "jwe_key");
    // Encrypted to another key under our kid (the AS has a stale or wrong key).
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let other = {
        use aws_lc_rs::signature::KeyPair;
        let p = pair.public_key().as_ref().to_vec();
        json!({"kid": "enc-1", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])})
    };
    refused_as(
        &s.exchange(2, &encrypt(good.as_bytes(), &other, json!({}))).await,
        "jwe_decrypt",
    );
    // Forbidden algorithms and header members, refused before any key is used.
    refused_as(
        &s.exchange(3, &encrypt(good.as_bytes(), &enc, json!({"alg": "RSA1_5"})))
            .await,
        "jwe_alg",
    );
    refused_as(
        &s.exchange(4, &encrypt(good.as_bytes(), &enc, json!({"zip": "DEF"})))
            .await,
        "jwe_alg",
    );
    // A flipped tag bit.
    let t = encrypt(good.as_bytes(), &enc, json!({}));
    let (head, tag) = t.rsplit_once('.').unwrap();
    let mut tag = B64.decode(tag).unwrap();
    tag[0] ^= 1;
    refused_as(
        &s.exchange(5, &format!("{head}.{}", B64.encode(tag))).await,
        "jwe_decrypt",
    );
    // The plaintext is not a JWS (the nested token must be signed).
    refused_as(
        &s.exchange(6, &encrypt(b"{\"sub\":\"alice\"}", &enc, json!({}))).await,
        "jwe_inner",
    );
    // An unsigned inner JWT (alg none) fails the ID token alg check.
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none"}"#),
        good.split('.').nth(1).unwrap()
    );
    refused_as(&s.exchange(7, &encrypt(none.as_bytes(), &enc, json!({}))).await, "alg");
    // A correctly encrypted inner JWS for another login: the usual checks apply.
    let stale = s.id_token("alice", Some("n-other"));
    refused_as(
        &s.exchange(8, &encrypt(stale.as_bytes(), &enc, json!({}))).await,
        "nonce",
    );
    let metrics = String::from_utf8(s.state.metrics.render()).unwrap();
    assert!(metrics.contains(
        r#"par_sidecar_token_response_checks_total{as="default",grant="authorization_code",outcome="jwe_decrypt"} 2"#
    ), "{metrics}");
}

#[tokio::test]
async fn an_alg_the_as_metadata_does_not_list_is_refused() {
    let s = stack(ONE_KEY).await;
    s.double.metadata_overrides.lock().unwrap().insert(
        "id_token_encryption_alg_values_supported".into(),
        json!(["ECDH-ES", "RSA-OAEP-256"]),
    );
    for c in &s.state.registry.clients {
        assert!(par_sidecar::ops::background::refresh_once(&s.state, c).await);
    }
    let enc = s.enc_jwk();
    let t = encrypt(s.id_token("alice", Some("n-1")).as_bytes(), &enc, json!({}));
    refused_as(&s.exchange(1, &t).await, "jwe_alg");
    s.double.metadata_overrides.lock().unwrap().insert(
        "id_token_encryption_alg_values_supported".into(),
        json!(["ECDH-ES+A256KW"]),
    );
    for c in &s.state.registry.clients {
        assert!(par_sidecar::ops::background::refresh_once(&s.state, c).await);
    }
    let t = encrypt(s.id_token("alice", Some("n-1")).as_bytes(), &enc, json!({}));
    assert_eq!(s.exchange(2, &t).await.status, 200);
}

#[tokio::test]
async fn without_an_encryption_key_a_jwe_is_malformed_as_before() {
    let s = stack("").await;
    assert!(s.state.public_jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["use"] != "enc"));
    // A well-formed JWE to some key; with no key configured it is never decrypted.
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let to = {
        use aws_lc_rs::signature::KeyPair;
        let p = pair.public_key().as_ref().to_vec();
        json!({"kid": "x", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])})
    };
    let t = encrypt(s.id_token("alice", Some("n-1")).as_bytes(), &to, json!({}));
    refused_as(&s.exchange(1, &t).await, "malformed");
}

#[tokio::test]
async fn a_rotated_encryption_key_keeps_decrypting_but_is_no_longer_published() {
    // No explicit kid: the thumbprint names each key, so the rotation changes the kid.
    let s = stack("  encryption_key: { path: \"ENC\", alg: ECDH-ES+A256KW }").await;
    let old = s.enc_jwk();
    let pki = s.state.settings.authorization_servers[0].client.encryption_keys[0]
        .path
        .parent()
        .unwrap()
        .to_path_buf();
    write_ec_key(&pki, "enc.pem");
    assert!(par_sidecar::ops::reload::reload(&s.state, "test"));
    let new = s.enc_jwk();
    assert_ne!(new["kid"], old["kid"]);
    let published = s.state.public_jwks();
    assert!(!published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == old["kid"]));
    // The AS still encrypts to its cached copy of the old key: accepted in the grace period.
    let inner = s.id_token("alice", Some("n-1"));
    assert_eq!(
        s.exchange(1, &encrypt(inner.as_bytes(), &old, json!({}))).await.status,
        200
    );
    assert_eq!(
        s.exchange(2, &encrypt(inner.as_bytes(), &new, json!({}))).await.status,
        200
    );
}

/// README "Rotating keys": the Secret's key file is replaced twice (A, then B, then C); an
/// AS still encrypting to A (its cached copy of our JWKS) keeps working through both
/// reloads, and only C is published.
#[tokio::test]
async fn a_key_rotated_out_twice_still_decrypts_within_its_grace_period() {
    let s = stack("  encryption_key: { path: \"ENC\", alg: ECDH-ES+A256KW }").await;
    let pki = s.state.settings.authorization_servers[0].client.encryption_keys[0]
        .path
        .parent()
        .unwrap()
        .to_path_buf();
    let a = s.enc_jwk();
    write_ec_key(&pki, "enc.pem");
    assert!(par_sidecar::ops::reload::reload(&s.state, "test"));
    let b = s.enc_jwk();
    write_ec_key(&pki, "enc.pem");
    assert!(par_sidecar::ops::reload::reload(&s.state, "test"));
    let c = s.enc_jwk();
    assert!(a["kid"] != b["kid"] && b["kid"] != c["kid"]);
    let published = s.state.public_jwks();
    let kids: Vec<&Value> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(kids.contains(&&c["kid"]) && !kids.contains(&&a["kid"]) && !kids.contains(&&b["kid"]));
    let inner = s.id_token("alice", Some("n-1"));
    for (n, to) in [(1, &a), (2, &b), (3, &c)] {
        let r = s.exchange(n, &encrypt(inner.as_bytes(), to, json!({}))).await;
        assert_eq!(r.status, 200, "key {n}: {}", String::from_utf8_lossy(&r.body));
    }
    // An unrelated reload (nothing changed) keeps the grace keys.
    assert!(par_sidecar::ops::reload::reload(&s.state, "test"));
    let r = s.exchange(4, &encrypt(inner.as_bytes(), &a, json!({}))).await;
    assert_eq!(r.status, 200);
}

/// `id_token_handover: original`: the app gets the JWE as the AS sent it, but only after
/// the sidecar decrypted and verified it (a bad one is still refused).
#[tokio::test]
async fn id_token_handover_original_hands_the_checked_jwe_to_the_app() {
    let s = stack(&format!("{ONE_KEY}\n  id_token_handover: original")).await;
    let enc = s.enc_jwk();
    let jwe = encrypt(s.id_token("alice", Some("n-1")).as_bytes(), &enc, json!({}));
    let r = s.exchange(1, &jwe).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["id_token"].as_str(), Some(jwe.as_str()));
    // Still decrypted and verified first: a wrong nonce inside is refused.
    let bad = encrypt(s.id_token("alice", Some("other")).as_bytes(), &enc, json!({}));
    refused_as(&s.exchange(2, &bad).await, "nonce");
}

impl Stack {
    /// The AS's userinfo endpoint answers `body` as `application/jwt`.
    async fn userinfo(&self, body: &str) -> EgressResponse {
        let ep = format!("{}/userinfo", self.double.issuer);
        self.double
            .metadata_overrides
            .lock()
            .unwrap()
            .insert("userinfo_endpoint".into(), json!(ep));
        for c in &self.state.registry.clients {
            assert!(par_sidecar::ops::background::refresh_once(&self.state, c).await);
        }
        self.double.replies.lock().unwrap().insert(
            "/userinfo".into(),
            (
                200,
                vec![("content-type".into(), "application/jwt".into())],
                body.into(),
            ),
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer at-1".parse().unwrap());
        let req = par_sidecar::egress::EgressRequest {
            method: http::Method::GET,
            path: "/userinfo".into(),
            query: None,
            headers,
            body: bytes::Bytes::new(),
        };
        egress::handle(&self.state, req).await
    }

    fn signed(&self, claims: Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("as-1".into());
        jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
    }
}

#[tokio::test]
async fn a_jwt_userinfo_reaches_the_app_as_verified_json_claims() {
    let s = stack(ONE_KEY).await;
    let claims = json!({"sub": "alice", "iss": s.double.issuer, "aud": "legacy-app", "name": "Alice"});
    let r = s.userinfo(&s.signed(claims.clone())).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ct = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(ct, Some("application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), claims);
    // Signed then encrypted to our key (Myinfo): the same claims.
    let enc = s.enc_jwk();
    let r = s
        .userinfo(&encrypt(s.signed(claims.clone()).as_bytes(), &enc, json!({})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), claims);
}

#[tokio::test]
async fn every_userinfo_jwt_refusal_names_its_check() {
    let s = stack(ONE_KEY).await;
    let iss = s.double.issuer.clone();
    let refused = |r: &EgressResponse, check: &str| {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (r.status, v["error"].as_str()),
            (502, Some("invalid_token_response")),
            "{v}"
        );
        assert!(
            v["error_description"].as_str().unwrap().contains(&format!("`{check}`")),
            "{v}"
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("alice"),
            "no claim reaches the app"
        );
    };
    refused(
        &s.userinfo(&s.signed(json!({"sub": "alice", "iss": "https://evil.example"})))
            .await,
        "userinfo_iss",
    );
    refused(
        &s.userinfo(&s.signed(json!({"sub": "alice", "iss": iss, "aud": "other"})))
            .await,
        "userinfo_aud",
    );
    // Signed by a key the AS does not publish, under the AS's kid.
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let forged_key = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("as-1".into());
    let forged = jsonwebtoken::encode(&h, &json!({"sub": "alice"}), &forged_key).unwrap();
    refused(&s.userinfo(&forged).await, "userinfo_signature");
    // The crit rule of ID tokens and JARM (one JWS path): a genuine signature, refused.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("as-1".into());
    h.crit = Some(vec!["exp".into()]);
    let crit = jsonwebtoken::encode(&h, &json!({"sub": "alice"}), &s.key).unwrap();
    refused(&s.userinfo(&crit).await, "userinfo_crit");
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none"}"#),
        B64.encode(r#"{"sub":"alice"}"#)
    );
    refused(&s.userinfo(&none).await, "userinfo_malformed");
    refused(&s.userinfo("not a jwt").await, "userinfo_malformed");
    let enc = s.enc_jwk();
    let t = encrypt(
        s.signed(json!({"sub": "alice"})).as_bytes(),
        &enc,
        json!({"kid": "nobody"}),
    );
    refused(&s.userinfo(&t).await, "jwe_key");
    // Encrypted but not signed inside: refused (a nested JWT must be signed).
    refused(
        &s.userinfo(&encrypt(br#"{"sub":"alice"}"#, &enc, json!({}))).await,
        "userinfo_malformed",
    );
}

#[tokio::test]
async fn a_profile_whose_as_encrypts_refuses_a_plain_id_token() {
    // Without a profile a plain ID token next to an encryption key is accepted (README).
    let s = stack(ONE_KEY).await;
    let plain = s.id_token("alice", Some("n-1"));
    assert_eq!(s.exchange(1, &plain).await.status, 200);
    // Singpass encrypts every ID token: a plain one is a downgrade or a misconfigured AS.
    let s = stack_with("profile: singpass\n", ONE_KEY).await;
    let plain = s.id_token("alice", Some("n-1"));
    s.answer(json!({"access_token": "at-2", "token_type": "DPoP", "id_token": plain}));
    s.code("code-2", Some("n-1"));
    let r = egress::handle(
        &s.state,
        common::egress_post(
            "/token",
            Some("legacy-app:s"),
            "grant_type=authorization_code&code=code-2",
        ),
    )
    .await;
    refused_as(&r, "jwe_required");
    // The encrypted one still goes through.
    let jwe = encrypt(s.id_token("alice", Some("n-1")).as_bytes(), &s.enc_jwk(), json!({}));
    s.answer(json!({"access_token": "at-3", "token_type": "DPoP", "id_token": jwe}));
    s.code("code-3", Some("n-1"));
    let r = egress::handle(
        &s.state,
        common::egress_post(
            "/token",
            Some("legacy-app:s"),
            "grant_type=authorization_code&code=code-3",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
