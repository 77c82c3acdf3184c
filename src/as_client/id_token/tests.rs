use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, OctetKeyParameters, OctetKeyType};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use IdTokenCheck as C;

const ISS: &str = "https://as.example.com";
const CLIENT: &str = "legacy-app";
const NOW: u64 = 1_700_000_000;
const HS_SECRET: &[u8] = b"the-apps-old-secret";

struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    ed: EncodingKey,
    jwks: JwkSet,
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.into());
    j
}

/// Keys are generated once per test binary (RSA generation is the slow part).
fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let b64 = STANDARD.encode(AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap().as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        // A PEM wrapper around the key generated above (the label is assembled so that no
        // key-looking block sits in the source).
        let label = ["PRIVATE", "KEY"].join(" ");
        let pem = format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"));
        let rsa = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let ec = EncodingKey::from_ec_der(ec.to_pkcs8v1().unwrap().as_ref());
        let ed = EncodingKey::from_ed_der(Ed25519KeyPair::generate().unwrap().to_pkcs8v1().unwrap().as_ref());
        let mut rs256 = jwk(&rsa, Algorithm::PS256, "rs256-only");
        rs256.common.key_algorithm = Some(KeyAlgorithm::RS256);
        let mut oct = jwk(&rsa, Algorithm::PS256, "hs");
        oct.common.key_algorithm = None;
        oct.algorithm = AlgorithmParameters::OctetKey(OctetKeyParameters {
            key_type: OctetKeyType::Octet,
            value: URL_SAFE_NO_PAD.encode(HS_SECRET),
        });
        let jwks = JwkSet {
            keys: vec![
                jwk(&rsa, Algorithm::PS256, "ps"),
                jwk(&rsa, Algorithm::PS256, "ps-twin"),
                rs256,
                jwk(&ec, Algorithm::ES256, "es"),
                jwk(&ed, Algorithm::EdDSA, "ed"),
                oct,
            ],
        };
        Keys { rsa, ec, ed, jwks }
    })
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "u1", "aud": CLIENT, "exp": NOW + 300, "iat": NOW, "nonce": "n-1", "auth_time": NOW - 10})
}

fn with(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut c = claims();
    edit(c.as_object_mut().unwrap());
    c
}

fn sign_h(h: Header, claims: &Value) -> String {
    let k = keys();
    let hs = EncodingKey::from_secret(HS_SECRET);
    let key = match h.alg {
        Algorithm::PS256 | Algorithm::RS256 => &k.rsa,
        Algorithm::ES256 => &k.ec,
        Algorithm::EdDSA => &k.ed,
        _ => &hs,
    };
    encode(&h, claims, key).unwrap()
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(Into::into);
    sign_h(h, claims)
}

fn ps(claims: &Value) -> String {
    sign(Algorithm::PS256, Some("ps"), claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn expect() -> IdTokenExpectations<'static> {
    IdTokenExpectations {
        issuer: ISS,
        client_id: CLIENT,
        advertised_algs: None,
        nonce: Some("n-1"),
        max_age: None,
        skew: DEFAULT_SKEW,
        now: NOW,
    }
}

fn run(jwt: &str, x: &IdTokenExpectations) -> Result<Map<String, Value>, IdTokenError> {
    let r = validate(jwt, &keys().jwks, x);
    if let Err(e) = &r {
        let leaked = jwt.len() > 20 && (e.detail.contains(jwt) || e.to_string().contains(jwt));
        assert!(!leaked, "token leaked into {e}");
    }
    r
}

fn check(jwt: &str) -> Option<IdTokenCheck> {
    run(jwt, &expect()).err().map(|e| e.check)
}

#[test]
fn happy_paths_for_each_fapi_alg() {
    let c = run(&ps(&claims()), &expect()).unwrap();
    assert_eq!(c["sub"], "u1");
    assert_eq!(check(&sign(Algorithm::ES256, Some("es"), &claims())), None);
    assert_eq!(check(&sign(Algorithm::EdDSA, Some("ed"), &claims())), None);
    // Without a kid, the single EC key is unambiguous; the two RSA keys are not.
    assert_eq!(check(&sign(Algorithm::ES256, None, &claims())), None);
    assert_eq!(check(&sign(Algorithm::PS256, None, &claims())), Some(C::UnknownKid));
}

#[test]
fn labels_are_distinct() {
    let all = [C::Malformed, C::Alg, C::Crit, C::UnknownKid, C::Signature, C::Iss]
        .into_iter()
        .chain([C::Aud, C::Azp, C::Exp, C::Iat, C::Nonce, C::AuthTime, C::Sub, C::Nbf]);
    let labels: std::collections::BTreeSet<_> = all.map(|c| c.label()).collect();
    assert_eq!(labels.len(), 14);
    assert!(labels.contains("unknown_kid") && labels.contains("auth_time"));
}

#[test]
fn malformed_shapes() {
    for t in ["", "a.b", "a.b.c.d", "!!.e30.", "WzFd.e30.sig"] {
        assert_eq!(check(t), Some(C::Malformed), "{t}");
    }
    let good = ps(&claims());
    let (hp, _) = good.rsplit_once('.').unwrap();
    assert_eq!(check(&format!("{hp}.not*base64")), Some(C::Malformed));
    let kid_num = b64(&json!({"alg": "PS256", "kid": 7}));
    assert_eq!(check(&format!("{kid_num}.e30.")), Some(C::Malformed));
}

#[test]
fn alg_none_hs256_and_rs256_are_refused() {
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims()));
    assert_eq!(check(&none), Some(C::Alg));
    // Even with a matching oct key in the JWKS, a client secret never verifies an ID token.
    assert_eq!(check(&sign(Algorithm::HS256, Some("hs"), &claims())), Some(C::Alg));
    assert_eq!(check(&sign(Algorithm::RS256, Some("ps"), &claims())), Some(C::Alg));
    assert_eq!(
        check(&format!("{}.{}.x", b64(&json!({"kid": "ps"})), b64(&claims()))),
        Some(C::Alg)
    );
    assert_eq!(check("e30.e30."), Some(C::Alg));
}

#[test]
fn alg_must_be_advertised_when_the_as_advertises() {
    let adv = vec!["ES256".to_string()];
    let x = IdTokenExpectations {
        advertised_algs: Some(&adv),
        ..expect()
    };
    assert_eq!(run(&ps(&claims()), &x).unwrap_err().check, C::Alg);
    assert!(run(&sign(Algorithm::ES256, Some("es"), &claims()), &x).is_ok());
}

#[test]
fn key_must_fit_the_alg() {
    // The JWK's own alg is RS256; a PS256 token naming it is refused.
    assert_eq!(
        check(&sign(Algorithm::PS256, Some("rs256-only"), &claims())),
        Some(C::Alg)
    );
    // An EC key named by a PS256 token.
    assert_eq!(check(&sign(Algorithm::PS256, Some("es"), &claims())), Some(C::Alg));
}

#[test]
fn crit_header_is_refused() {
    let mut h = Header::new(Algorithm::PS256);
    h.kid = Some("ps".into());
    h.crit = Some(vec!["exp".into()]);
    assert_eq!(check(&sign_h(h, &claims())), Some(C::Crit));
}

#[test]
fn payload_changed_after_signing() {
    let good = ps(&claims());
    let mut p: Vec<&str> = good.split('.').collect();
    let forged = b64(&with(|c| {
        c.insert("sub".into(), json!("admin"));
    }));
    p[1] = &forged;
    assert_eq!(check(&p.join(".")), Some(C::Signature));
    // Another token's signature spliced on.
    let other = ps(&with(|c| drop(c.insert("sub".into(), json!("u2")))));
    let (hp, _) = good.rsplit_once('.').unwrap();
    let (_, sig) = other.rsplit_once('.').unwrap();
    assert_eq!(check(&format!("{hp}.{sig}")), Some(C::Signature));
}

#[test]
fn unknown_kid() {
    assert_eq!(
        check(&sign(Algorithm::PS256, Some("rotated"), &claims())),
        Some(C::UnknownKid)
    );
    assert_eq!(header_kid(&ps(&claims())).unwrap().as_deref(), Some("ps"));
    assert_eq!(header_kid(&sign(Algorithm::ES256, None, &claims())).unwrap(), None);
    assert_eq!(header_kid("nope").unwrap_err().check, C::Malformed);
}

#[test]
fn issuer_is_byte_for_byte() {
    let iss = |v: Value| ps(&with(|c| drop(c.insert("iss".into(), v))));
    assert_eq!(check(&iss(json!("https://as.example.com/"))), Some(C::Iss));
    assert_eq!(check(&iss(json!("https://AS.example.com"))), Some(C::Iss));
    assert_eq!(check(&iss(json!([ISS]))), Some(C::Iss));
    assert_eq!(check(&ps(&with(|c| drop(c.remove("iss"))))), Some(C::Iss));
}

#[test]
fn audience_and_azp() {
    let aud = |v: Value| with(|c| drop(c.insert("aud".into(), v)));
    assert_eq!(check(&ps(&aud(json!("other-client")))), Some(C::Aud));
    assert_eq!(check(&ps(&aud(json!(["other-client"])))), Some(C::Aud));
    assert_eq!(check(&ps(&aud(json!([CLIENT, 5])))), Some(C::Aud));
    assert_eq!(check(&ps(&with(|c| drop(c.remove("aud"))))), Some(C::Aud));
    assert_eq!(check(&ps(&aud(json!([CLIENT])))), None);
    let multi = aud(json!([CLIENT, "other"]));
    assert_eq!(check(&ps(&multi)), Some(C::Azp));
    let mut with_azp = multi.clone();
    with_azp["azp"] = json!(CLIENT);
    // An extra audience is untrusted even with azp = client_id (OIDC Core 3.1.3.7 (3)).
    assert_eq!(check(&ps(&with_azp)), Some(C::Aud));
    with_azp["azp"] = json!("other");
    assert_eq!(check(&ps(&with_azp)), Some(C::Azp));
    // azp present with a single aud must still be the client.
    assert_eq!(
        check(&ps(&with(|c| drop(c.insert("azp".into(), json!("other")))))),
        Some(C::Azp)
    );
}

#[test]
fn exp_and_iat_with_skew_boundaries() {
    let at = |name: &str, v: Value| ps(&with(|c| drop(c.insert(name.into(), v))));
    assert_eq!(check(&at("exp", json!(NOW - 3600))), Some(C::Exp));
    assert_eq!(check(&at("exp", json!(NOW - 60))), Some(C::Exp)); // exp + skew == now: expired
    assert_eq!(check(&at("exp", json!(NOW - 59))), None);
    assert_eq!(check(&at("exp", json!("soon"))), Some(C::Exp));
    assert_eq!(check(&ps(&with(|c| drop(c.remove("exp"))))), Some(C::Exp));
    assert_eq!(check(&at("iat", json!(NOW + 3600))), Some(C::Iat));
    assert_eq!(check(&at("iat", json!(NOW + 61))), Some(C::Iat));
    assert_eq!(check(&at("iat", json!(NOW + 60))), None);
    assert_eq!(check(&ps(&with(|c| drop(c.remove("iat"))))), Some(C::Iat));
    // Fractional NumericDate is accepted.
    assert_eq!(check(&at("iat", json!(NOW as f64 + 0.5))), None);
    // Zero skew is strict.
    let x = IdTokenExpectations { skew: 0, ..expect() };
    assert_eq!(run(&at("iat", json!(NOW + 1)), &x).unwrap_err().check, C::Iat);
    assert_eq!(run(&at("exp", json!(NOW)), &x).unwrap_err().check, C::Exp);
    assert!(run(&at("exp", json!(NOW + 1)), &x).is_ok());
}

#[test]
fn sub_is_required() {
    let sub = |v: Option<Value>| {
        ps(&with(|c| match v {
            Some(v) => drop(c.insert("sub".into(), v)),
            None => drop(c.remove("sub")),
        }))
    };
    assert_eq!(check(&sub(None)), Some(C::Sub));
    assert_eq!(check(&sub(Some(json!("")))), Some(C::Sub));
    assert_eq!(check(&sub(Some(json!(42)))), Some(C::Sub));
    // jsonwebtoken itself refuses a non-string `sub` it cannot read.
    assert!(check(&sub(Some(json!(["u1"])))).is_some());
    assert_eq!(check(&sub(Some(json!("u2")))), None);
}

#[test]
fn nbf_is_honoured_with_the_skew() {
    let nbf = |v: Value| ps(&with(|c| drop(c.insert("nbf".into(), v))));
    assert_eq!(check(&nbf(json!(NOW + 3600))), Some(C::Nbf));
    assert_eq!(check(&nbf(json!(NOW + 61))), Some(C::Nbf));
    assert_eq!(check(&nbf(json!(NOW + 60))), None);
    assert_eq!(check(&nbf(json!(NOW - 10))), None);
    assert_eq!(check(&nbf(json!("now"))), Some(C::Nbf));
    assert_eq!(check(&nbf(json!(-5))), Some(C::Nbf));
    let x = IdTokenExpectations { skew: 0, ..expect() };
    assert_eq!(run(&nbf(json!(NOW + 1)), &x).unwrap_err().check, C::Nbf);
    assert!(run(&nbf(json!(NOW)), &x).is_ok());
}

#[test]
fn nonce_when_expected_only() {
    let wrong = ps(&with(|c| drop(c.insert("nonce".into(), json!("n-2")))));
    let missing = ps(&with(|c| drop(c.remove("nonce"))));
    assert_eq!(check(&wrong), Some(C::Nonce));
    assert_eq!(check(&missing), Some(C::Nonce));
    let refresh = IdTokenExpectations {
        nonce: None,
        ..expect()
    };
    assert!(run(&wrong, &refresh).is_ok());
    assert!(run(&missing, &refresh).is_ok());
}

#[test]
fn auth_time_with_max_age() {
    let x = IdTokenExpectations {
        max_age: Some(100),
        ..expect()
    };
    let missing = ps(&with(|c| drop(c.remove("auth_time"))));
    assert_eq!(run(&missing, &x).unwrap_err().check, C::AuthTime);
    assert!(
        run(&missing, &expect()).is_ok(),
        "auth_time is optional without max_age"
    );
    let at = |t: u64| ps(&with(|c| drop(c.insert("auth_time".into(), json!(t)))));
    assert!(run(&at(NOW - 160), &x).is_ok()); // auth_time + max_age + skew == now
    assert_eq!(run(&at(NOW - 161), &x).unwrap_err().check, C::AuthTime);
}

#[test]
fn overflowing_numbers_do_not_panic() {
    let big = ps(&with(|c| {
        c.insert("exp".into(), json!(u64::MAX));
        c.insert("auth_time".into(), json!(1e300));
    }));
    let x = IdTokenExpectations {
        max_age: Some(u64::MAX),
        skew: u64::MAX,
        now: u64::MAX,
        ..expect()
    };
    let _ = run(&big, &x);
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary text, arbitrary three-part tokens and single-byte corruptions of a good
        /// token never panic and never pass.
        #[test]
        fn garbage_never_panics_or_passes(
            s in "\\PC{0,200}",
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 3),
            pos in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let _ = header_kid(&s);
            prop_assert!(run(&s, &expect()).is_err());
            let t: Vec<String> = parts.iter().map(|p| URL_SAFE_NO_PAD.encode(p)).collect();
            prop_assert!(run(&t.join("."), &expect()).is_err());
            let good = ps(&claims());
            let mut bad = good.clone().into_bytes();
            let i = pos.index(bad.len());
            bad[i] = byte;
            if let Ok(bad) = String::from_utf8(bad) {
                if bad != good {
                    let _ = header_kid(&bad);
                    prop_assert!(run(&bad, &expect()).is_err(), "corruption at {} passed", i);
                }
            }
        }
    }
}
