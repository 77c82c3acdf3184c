use std::sync::Arc;

use super::*;

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 7516 Appendix A.3 / Appendix B content encryption key.
const RFC7516_CEK: [u8; 32] = [
    4, 211, 31, 197, 84, 157, 252, 254, 11, 100, 157, 250, 63, 170, 106, 206, 107, 124, 212, 45, 111, 107, 9, 219, 200,
    177, 0, 240, 143, 156, 44, 207,
];

#[test]
fn rfc7518_appendix_c_concat_kdf() {
    // Bob's static key and Alice's ephemeral public key from RFC 7518 Appendix C.
    let bob = PrivateKey::from_private_key(
        &agreement::ECDH_P256,
        &b64("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw"),
    )
    .unwrap();
    let header: Map<String, Value> = serde_json::from_value(json!({
        "alg": "ECDH-ES", "enc": "A128GCM", "apu": "QWxpY2U", "apv": "Qm9i",
        "epk": {"kty": "EC", "crv": "P-256",
                "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
                "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}
    }))
    .unwrap();
    let z = agree(&bob, &agreement::ECDH_P256, "P-256", &header).unwrap();
    let key = concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 16);
    assert_eq!(B64.encode(key), "VqqN6vgjbSBcIijNcacQGg");
}

#[test]
fn rfc7516_appendix_b_a128cbc_hs256() {
    // AAD is the encoded protected header of Appendix A.2 ({"alg":"RSA1_5","enc":"A128CBC-HS256"}).
    let aad = b"eyJhbGciOiJSU0ExXzUiLCJlbmMiOiJBMTI4Q0JDLUhTMjU2In0";
    let iv = b64("AxY8DCtDaGlsbGljb3RoZQ");
    let ct = b64("KDlTtXchhZTGufMYmOYGS4HffxPSUrfmqCHXaI9wOGY");
    let tag = b64("9hH0vgRfYgPnAHOd8stkvw");
    let pt = decrypt_content(Enc::A128CbcHs256, &RFC7516_CEK, aad, &iv, ct.clone(), &tag).unwrap();
    assert_eq!(pt, b"Live long and prosper.");
    // One flipped tag bit, or one flipped ciphertext bit: refused before any decryption.
    let mut bad = tag.clone();
    bad[0] ^= 1;
    assert_eq!(
        decrypt_content(Enc::A128CbcHs256, &RFC7516_CEK, aad, &iv, ct.clone(), &bad),
        Err(JweError::Decrypt)
    );
    let mut bad_ct = ct;
    bad_ct[3] ^= 1;
    assert_eq!(
        decrypt_content(Enc::A128CbcHs256, &RFC7516_CEK, aad, &iv, bad_ct, &tag),
        Err(JweError::Decrypt)
    );
}

#[test]
fn rfc7516_appendix_a3_key_unwrap_then_content() {
    let kek = b64("GawgguFyGrWKav7AX4VKUg");
    let cek = aes_key_unwrap(&kek, &b64("6KB707dM9YTIgHtLvtgWQ8mKwboJW3of9locizkDTHzBC2IlrT1oOQ")).unwrap();
    assert_eq!(cek, RFC7516_CEK);
    let aad = b"eyJhbGciOiJBMTI4S1ciLCJlbmMiOiJBMTI4Q0JDLUhTMjU2In0";
    let pt = decrypt_content(
        Enc::A128CbcHs256,
        &cek,
        aad,
        &b64("AxY8DCtDaGlsbGljb3RoZQ"),
        b64("KDlTtXchhZTGufMYmOYGS4HffxPSUrfmqCHXaI9wOGY"),
        &b64("U0m_YmjN04DJvceFICbCVQ"),
    )
    .unwrap();
    assert_eq!(pt, b"Live long and prosper.");
    // Wrong KEK: the integrity check value fails.
    assert_eq!(
        aes_key_unwrap(
            &[0u8; 16],
            &b64("6KB707dM9YTIgHtLvtgWQ8mKwboJW3of9locizkDTHzBC2IlrT1oOQ")
        ),
        Err(JweError::Decrypt)
    );
}

#[test]
fn rfc3394_4_2_aes192_kek_unwrap() {
    let kek = hex("000102030405060708090A0B0C0D0E0F1011121314151617");
    let wrapped = hex("96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D");
    assert_eq!(
        aes_key_unwrap(&kek, &wrapped).unwrap(),
        hex("00112233445566778899AABBCCDDEEFF")
    );
    let mut bad = wrapped;
    bad[9] ^= 1;
    assert_eq!(aes_key_unwrap(&kek, &bad), Err(JweError::Decrypt));
}

struct Vectors {
    keys: Vec<Arc<DecryptionKey>>,
    tokens: Vec<(String, String, String, String)>,
    plaintext: String,
}

/// Tokens produced once by node `jose` 6.2 (`CompactEncrypt`, see the commit that added them),
/// one per key and alg/enc pair, all over the same plaintext.
fn node_vectors() -> Vectors {
    let v: Value = serde_json::from_str(include_str!("node-jose-vectors.json")).unwrap();
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let alg_of = |name: &str| match name {
        "rsa" => KeyAlg::RsaOaep256,
        _ => KeyAlg::EcdhEsA256Kw,
    };
    let mut keys = Vec::new();
    for (name, der) in v["keys"].as_object().unwrap() {
        let der = std_b64.decode(der.as_str().unwrap()).unwrap();
        // One key object per alg the vectors use with it (the key's `alg` must match).
        let algs: Vec<KeyAlg> = match name.as_str() {
            "p256" => vec![
                KeyAlg::EcdhEs,
                KeyAlg::EcdhEsA128Kw,
                KeyAlg::EcdhEsA192Kw,
                KeyAlg::EcdhEsA256Kw,
            ],
            "rsa" => vec![alg_of(name)],
            _ => vec![KeyAlg::EcdhEs, KeyAlg::EcdhEsA256Kw],
        };
        for a in algs {
            keys.push(Arc::new(DecryptionKey::from_der(&der, a, Some(name.clone())).unwrap()));
        }
    }
    let tokens = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap().to_string();
            (s("key"), s("alg"), s("enc"), s("token"))
        })
        .collect();
    Vectors {
        keys,
        tokens,
        plaintext: v["plaintext"].as_str().unwrap().into(),
    }
}

#[test]
fn node_jose_tokens_decrypt_for_every_alg_and_enc() {
    let v = node_vectors();
    assert_eq!(v.tokens.len(), 6 * 9);
    for (key, alg, enc, token) in &v.tokens {
        let pt = decrypt(token, &v.keys).unwrap_or_else(|e| panic!("{key} {alg} {enc}: {e:?}"));
        assert_eq!(pt, v.plaintext.as_bytes(), "{key} {alg} {enc}");
    }
}

fn replace_header(token: &str, f: impl FnOnce(&mut Map<String, Value>)) -> String {
    let (h, rest) = token.split_once('.').unwrap();
    let mut header: Map<String, Value> = serde_json::from_slice(&b64(h)).unwrap();
    f(&mut header);
    format!("{}.{rest}", B64.encode(serde_json::to_vec(&header).unwrap()))
}

fn sample(v: &Vectors, key: &str, alg: &str, enc: &str) -> String {
    v.tokens
        .iter()
        .find(|t| t.0 == key && t.1 == alg && t.2 == enc)
        .unwrap()
        .3
        .clone()
}

#[test]
fn forbidden_algs_zip_and_crit_are_refused_before_any_key_use() {
    let v = node_vectors();
    let t = sample(&v, "p256", "ECDH-ES+A256KW", "A256GCM");
    for (name, val) in [
        ("alg", json!("RSA1_5")),
        ("alg", json!("dir")),
        ("alg", json!("A256KW")),
        ("alg", json!("RSA-OAEP")),
        ("alg", json!("none")),
        ("enc", json!("A128CBC")),
        ("enc", json!(7)),
        ("zip", json!("DEF")),
        ("crit", json!(["exp"])),
        ("crit", json!([])),
    ] {
        let bad = replace_header(&t, |h| {
            h.insert(name.into(), val.clone());
        });
        assert_eq!(decrypt(&bad, &v.keys), Err(JweError::Alg), "{name}={val}");
    }
    assert_eq!(peek_algs(&t), Ok((KeyAlg::EcdhEsA256Kw, Enc::A256Gcm)));
    assert_eq!(peek_algs("x.a.b.c.d"), Err(JweError::Malformed));
    let no_enc = replace_header(&t, |h| {
        h.remove("enc");
    });
    assert_eq!(decrypt(&no_enc, &v.keys), Err(JweError::Alg));
}

#[test]
fn key_selection_by_kid_and_alg() {
    let v = node_vectors();
    let t = sample(&v, "p256", "ECDH-ES+A256KW", "A256GCM");
    let unknown = replace_header(&t, |h| {
        h.insert("kid".into(), json!("nobody"));
    });
    assert_eq!(decrypt(&unknown, &v.keys), Err(JweError::Key));
    // No kid: several keys fit ECDH-ES+A256KW, so none is guessed.
    let no_kid = replace_header(&t, |h| {
        h.remove("kid");
    });
    assert_eq!(decrypt(&no_kid, &v.keys), Err(JweError::Key));
    // ... but with the only key configured it decrypts (the header is the AAD, so a
    // re-encoded header fails the tag: use a token from node without kid instead).
    let only: Vec<_> = v
        .keys
        .iter()
        .filter(|k| k.kid() == "p256" && k.alg() == KeyAlg::EcdhEsA256Kw)
        .cloned()
        .collect();
    assert_eq!(decrypt(&no_kid, &only), Err(JweError::Decrypt));
    // The kid names a key configured for another alg: refused, not tried.
    let p256_es: Vec<_> = v
        .keys
        .iter()
        .filter(|k| k.kid() == "p256" && k.alg() == KeyAlg::EcdhEs)
        .cloned()
        .collect();
    assert_eq!(decrypt(&t, &p256_es), Err(JweError::Key));
    // The right kid on a different key (the AS encrypted to a key we do not hold).
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let fresh = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let other = DecryptionKey::from_der(fresh.as_ref(), KeyAlg::EcdhEsA256Kw, Some("p256".into())).unwrap();
    assert_eq!(decrypt(&t, &[Arc::new(other)]), Err(JweError::Decrypt));
}

#[test]
fn wrong_key_tampering_and_shape() {
    let v = node_vectors();
    let t = sample(&v, "p384", "ECDH-ES+A256KW", "A256GCM");
    // The p521 key under the p384 kid: wrong curve for the epk.
    let p521 = v
        .keys
        .iter()
        .find(|k| k.kid() == "p521" && k.alg() == KeyAlg::EcdhEsA256Kw)
        .unwrap();
    let relabelled = relabel(p521, "p384");
    assert_eq!(decrypt(&t, &[Arc::new(relabelled)]), Err(JweError::Key));
    // Tag and ciphertext bit flips.
    let parts: Vec<&str> = t.split('.').collect();
    let mut tag = b64(parts[4]);
    tag[0] ^= 0x80;
    let bad = format!(
        "{}.{}.{}.{}.{}",
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        B64.encode(tag)
    );
    assert_eq!(decrypt(&bad, &v.keys), Err(JweError::Decrypt));
    let mut ek = b64(parts[1]);
    ek[0] ^= 1;
    let bad = format!("{}.{}.{}.{}.{}", parts[0], B64.encode(ek), parts[2], parts[3], parts[4]);
    assert_eq!(decrypt(&bad, &v.keys), Err(JweError::Decrypt));
    // A JWS, four parts, junk: malformed.
    assert_eq!(decrypt("a.b.c", &v.keys), Err(JweError::Malformed));
    assert_eq!(decrypt(&format!("{t}.x"), &v.keys), Err(JweError::Malformed));
    assert_eq!(decrypt("!.a.b.c.d", &v.keys), Err(JweError::Malformed));
    // ECDH-ES direct must carry an empty encrypted key.
    let direct = sample(&v, "p256", "ECDH-ES", "A128GCM");
    let p: Vec<&str> = direct.split('.').collect();
    assert!(p[1].is_empty());
    let bad = format!("{}.AAAA.{}.{}.{}", p[0], p[2], p[3], p[4]);
    assert_eq!(decrypt(&bad, &v.keys), Err(JweError::Malformed));
    // RSA: a wrong encrypted key fails as a tag failure (no distinguishable OAEP error).
    let r = sample(&v, "rsa", "RSA-OAEP-256", "A256CBC-HS512");
    let p: Vec<&str> = r.split('.').collect();
    let mut ek = b64(p[1]);
    ek[10] ^= 1;
    let bad = format!("{}.{}.{}.{}.{}", p[0], B64.encode(ek), p[2], p[3], p[4]);
    assert_eq!(decrypt(&bad, &v.keys), Err(JweError::Decrypt));
}

/// The same key material under another kid (keys are not Clone: re-parse from a fixture).
fn relabel(k: &DecryptionKey, kid: &str) -> DecryptionKey {
    let v: Value = serde_json::from_str(include_str!("node-jose-vectors.json")).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(v["keys"][k.kid()].as_str().unwrap())
        .unwrap();
    DecryptionKey::from_der(&der, k.alg(), Some(kid.into())).unwrap()
}

#[test]
fn public_jwk_is_an_enc_key_with_alg_and_kid() {
    let v = node_vectors();
    for k in &v.keys {
        let j = k.public_jwk();
        assert_eq!(j["use"], "enc");
        assert_eq!(j["alg"], k.alg().as_str());
        assert_eq!(j["kid"], k.kid());
        assert!(j.get("d").is_none() && j.get("p").is_none());
    }
    let p521 = v.keys.iter().find(|k| k.kid() == "p521").unwrap().public_jwk();
    assert_eq!(p521["crv"], "P-521");
    assert_eq!(b64(p521["x"].as_str().unwrap()).len(), 66);
    // An RSA key for an EC alg (and the reverse) is refused at load.
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            serde_json::from_str::<Value>(include_str!("node-jose-vectors.json")).unwrap()["keys"]["rsa"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(DecryptionKey::from_der(&der, KeyAlg::EcdhEs, None).is_err());
    assert!(KeyAlg::parse("RSA1_5").is_none() && KeyAlg::parse("dir").is_none());
}

#[test]
fn a_rotated_key_under_the_same_kid_still_decrypts_while_kept() {
    let v = node_vectors();
    let t = sample(&v, "p256", "ECDH-ES+A256KW", "A128CBC-HS256");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let fresh = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let new = Arc::new(DecryptionKey::from_der(fresh.as_ref(), KeyAlg::EcdhEsA256Kw, Some("p256".into())).unwrap());
    let old = v
        .keys
        .iter()
        .find(|k| k.kid() == "p256" && k.alg() == KeyAlg::EcdhEsA256Kw)
        .unwrap()
        .clone();
    // New key first (as KeySet::decryption_keys lists it), the old one after: still decrypts.
    assert_eq!(decrypt(&t, &[new.clone(), old]).unwrap(), v.plaintext.as_bytes());
    assert_eq!(decrypt(&t, &[new]), Err(JweError::Decrypt));
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary text, arbitrary five-part tokens and single-byte corruptions of a good
        /// token never panic and never decrypt.
        #[test]
        fn garbage_never_panics_or_decrypts(
            s in "\\PC{0,300}",
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 5),
            pick in any::<proptest::sample::Index>(),
            pos in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let v = node_vectors();
            prop_assert!(decrypt(&s, &v.keys).is_err());
            let t: Vec<String> = parts.iter().map(|p| B64.encode(p)).collect();
            prop_assert!(decrypt(&t.join("."), &v.keys).is_err());
            let good = &v.tokens[pick.index(v.tokens.len())].3;
            let mut bad = good.clone().into_bytes();
            let i = pos.index(bad.len());
            prop_assume!(bad[i] != byte);
            bad[i] = byte;
            if let Ok(bad) = String::from_utf8(bad) {
                prop_assert!(decrypt(&bad, &v.keys).is_err());
            }
        }
    }
}
