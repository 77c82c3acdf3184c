//! JWS signing with parsed, cached aws-lc keys.
//!
//! Why not `jsonwebtoken::encode`: it re-parses the PEM private key on every call (PS256
//! ~690 us vs ~245 us with a parsed key, measured in shared/platform-notes.md). We build the
//! compact JWS ourselves; `jsonwebtoken` is still used to *verify* (tests, JARM).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::protocol::jose::Alg;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{0}")]
    Parse(String),
    #[error("signing failed")]
    Sign,
}

enum KeyMaterial {
    Rsa(RsaKeyPair),
    /// The key and its JWK `crv`.
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

/// A parsed private signing key with its `kid` and public JWK. Debug never prints key bytes.
pub struct SigningKey {
    alg: Alg,
    kid: String,
    material: KeyMaterial,
    public_jwk: Value,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a DER private key (PKCS#8, or PKCS#1 for RSA / SEC1 for EC) for `alg`.
    pub fn from_der(der: &[u8], alg: Alg, kid: Option<String>) -> Result<Self, KeyError> {
        let material = match alg {
            Alg::PS256 => {
                let kp = RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(|e| KeyError::Parse(format!("not an RSA private key for PS256: {e}")))?;
                if kp.public_modulus_len() < 256 {
                    return Err(KeyError::Parse("RSA keys must be at least 2048 bits (CR-2)".into()));
                }
                KeyMaterial::Rsa(kp)
            }
            Alg::ES256 | Alg::ES384 | Alg::ES512 => KeyMaterial::Ec(ec_key(der, alg)?, ec_crv(alg)),
            Alg::EdDSA => KeyMaterial::Ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| KeyError::Parse(format!("not an Ed25519 private key for EdDSA: {e}")))?,
            ),
        };
        Ok(Self::from_material(material, alg, kid))
    }

    /// A fresh key pair, kept in memory only (a DPoP key without a file).
    pub fn generate(alg: Alg) -> Result<Self, KeyError> {
        let err = |_| KeyError::Parse(format!("cannot generate a {} key", alg.as_str()));
        let material = match alg {
            Alg::PS256 => KeyMaterial::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(err)?),
            Alg::ES256 | Alg::ES384 | Alg::ES512 => {
                KeyMaterial::Ec(EcdsaKeyPair::generate(ecdsa(alg)).map_err(err)?, ec_crv(alg))
            }
            Alg::EdDSA => KeyMaterial::Ed(Ed25519KeyPair::generate().map_err(err)?),
        };
        Ok(Self::from_material(material, alg, None))
    }

    fn from_material(material: KeyMaterial, alg: Alg, kid: Option<String>) -> Self {
        let public = public_jwk_members(&material);
        let kid = kid.unwrap_or_else(|| jwk_thumbprint(&public));
        let mut public_jwk = public;
        let obj = public_jwk.as_object_mut().expect("jwk is an object");
        obj.insert("kid".into(), Value::String(kid.clone()));
        obj.insert("use".into(), Value::String("sig".into()));
        obj.insert("alg".into(), Value::String(alg.as_str().into()));
        SigningKey {
            alg,
            kid,
            material,
            public_jwk,
            rng: SystemRandom::new(),
        }
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kid`, `use` and `alg`, for registration at the AS.
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The bare public key (`kty` and its required members only), e.g. a DPoP proof's
    /// `jwk` header: no `kid`, `use` or `alg`, and never a private member.
    pub fn bare_public_jwk(&self) -> Value {
        public_jwk_members(&self.material)
    }

    /// RFC 7638 thumbprint of the public key (a DPoP `jkt` / `dpop_jkt`).
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.public_jwk)
    }

    fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.material {
            KeyMaterial::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PSS_SHA256, &self.rng, msg, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            KeyMaterial::Ec(kp, _) => Ok(kp.sign(&self.rng, msg).map_err(|_| KeyError::Sign)?.as_ref().to_vec()),
            KeyMaterial::Ed(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }

    /// Compact JWS over `claims` with header `{alg, kid, typ?}`.
    pub fn sign_jwt(&self, typ: Option<&str>, claims: &Map<String, Value>) -> Result<String, KeyError> {
        let mut header = json!({ "alg": self.alg.as_str(), "kid": self.kid });
        if let Some(t) = typ {
            header["typ"] = Value::String(t.into());
        }
        self.sign_with_header(&header, claims)
    }

    /// Compact JWS with the caller's header (which must name this key's `alg`).
    pub fn sign_with_header(&self, header: &Value, claims: &Map<String, Value>) -> Result<String, KeyError> {
        let header = serde_json::to_vec(header).map_err(|_| KeyError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 400);
        B64.encode_string(&header, &mut out);
        out.push('.');
        B64.encode_string(&payload, &mut out);
        let sig = self.sign_bytes(out.as_bytes())?;
        out.push('.');
        B64.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// Fixed-length (r || s, RFC 7518 §3.4) ECDSA signing for an ES* alg.
fn ecdsa(alg: Alg) -> &'static signature::EcdsaSigningAlgorithm {
    match alg {
        Alg::ES384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        Alg::ES512 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        _ => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    }
}

fn ec_crv(alg: Alg) -> &'static str {
    alg.curve().unwrap_or("P-256")
}

/// An EC key for `alg`. The key's curve decides the alg: a key on another curve is refused
/// with the alg it would sign (a P-384 key signs ES384, never ES256).
fn ec_key(der: &[u8], alg: Alg) -> Result<EcdsaKeyPair, KeyError> {
    let parse =
        |a: Alg| EcdsaKeyPair::from_pkcs8(ecdsa(a), der).or_else(|_| EcdsaKeyPair::from_private_key_der(ecdsa(a), der));
    parse(alg).map_err(|e| {
        let fits = [Alg::ES256, Alg::ES384, Alg::ES512]
            .into_iter()
            .find(|a| *a != alg && parse(*a).is_ok());
        match fits {
            Some(a) => KeyError::Parse(format!(
                "a {} key signs {}, not {}: set alg: {}",
                ec_crv(a),
                a.as_str(),
                alg.as_str(),
                a.as_str()
            )),
            None => KeyError::Parse(format!("not a {} private key for {}: {e}", ec_crv(alg), alg.as_str())),
        }
    })
}

fn public_jwk_members(m: &KeyMaterial) -> Value {
    match m {
        KeyMaterial::Rsa(kp) => {
            let pk = kp.public_key();
            json!({
                "kty": "RSA",
                "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
                "e": B64.encode(pk.exponent().big_endian_without_leading_zero()),
            })
        }
        KeyMaterial::Ec(kp, crv) => {
            // Uncompressed SEC1 point: 0x04 || X || Y, coordinates of equal length (32, 48, 66).
            let p = kp.public_key().as_ref();
            let n = (p.len() - 1) / 2;
            json!({ "kty": "EC", "crv": crv, "x": B64.encode(&p[1..1 + n]), "y": B64.encode(&p[1 + n..]) })
        }
        KeyMaterial::Ed(kp) => {
            json!({ "kty": "OKP", "crv": "Ed25519", "x": B64.encode(kp.public_key().as_ref()) })
        }
    }
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
pub fn jwk_thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["crv", "kty", "x"],
    };
    // serde_json's Map is a BTreeMap here (no preserve_order), so keys serialize sorted.
    let canonical: Map<String, Value> = members.iter().map(|k| (k.to_string(), jwk[*k].clone())).collect();
    let bytes = serde_json::to_vec(&canonical).expect("json");
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes))
}

/// `base64url(sha256(ascii))` without padding: PKCE S256 (RFC 7636 §4.2).
pub fn s256(ascii: &str) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ascii.as_bytes()))
}

/// 32 random octets, base64url: a PKCE verifier or any other 256-bit token (CR-3).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).expect("system RNG");
    B64.encode(b)
}

/// Why no key of an AS's JWKS may verify a JWS (JARM responses and ID tokens alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelectError {
    /// No `kid`, and not exactly one key fits the alg (`fitting` of them do).
    NoKid { fitting: usize },
    /// No key carries this `kid`.
    UnknownKid,
    /// Keys carry this `kid`, but none is a signing key for the alg.
    WrongKey,
}

/// Right key type and curve for `alg`, the JWK's own `alg` (if any) equal, not an
/// encryption key.
pub fn key_fits(jwk: &jsonwebtoken::jwk::Jwk, alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve, KeyAlgorithm, PublicKeyUse};
    use jsonwebtoken::Algorithm as A;
    let type_ok = match (&jwk.algorithm, alg) {
        (P::RSA(_), A::PS256) => true,
        (P::EllipticCurve(p), A::ES256) => p.curve == EllipticCurve::P256,
        (P::OctetKeyPair(p), A::EdDSA) => p.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    let alg_ok = jwk.common.key_algorithm.is_none_or(|a| a == KeyAlgorithm::from(alg));
    let use_ok = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
    type_ok && alg_ok && use_ok
}

/// The one key-selection rule for everything the sidecar verifies with an AS's JWKS (JARM
/// responses, ID tokens), so the two cannot drift apart: with a `kid`, the first key under
/// that `kid` that fits the alg (an AS may publish an encryption key and a signing key under
/// one `kid`); without one, only an unambiguous single fitting key.
pub fn select_verification_key<'k>(
    jwks: &'k jsonwebtoken::jwk::JwkSet,
    kid: Option<&str>,
    alg: jsonwebtoken::Algorithm,
) -> Result<&'k jsonwebtoken::jwk::Jwk, KeySelectError> {
    let Some(kid) = kid else {
        let mut fit = jwks.keys.iter().filter(|j| key_fits(j, alg));
        return match (fit.next(), fit.next()) {
            (Some(j), None) => Ok(j),
            (None, _) => Err(KeySelectError::NoKid { fitting: 0 }),
            (Some(_), Some(_)) => Err(KeySelectError::NoKid {
                fitting: 2 + fit.count(),
            }),
        };
    };
    let mut named = jwks
        .keys
        .iter()
        .filter(|j| j.common.key_id.as_deref() == Some(kid))
        .peekable();
    if named.peek().is_none() {
        return Err(KeySelectError::UnknownKid);
    }
    named.find(|j| key_fits(j, alg)).ok_or(KeySelectError::WrongKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1 example key.
        let jwk = json!({"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29",
          "n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(jwk_thumbprint(&jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn pkce_s256_matches_openssl_digest() {
        assert_eq!(
            s256("dBjftJeZ4CVP-1B0gMtBmV4LjjQ7uGqU8oE2YmcTSnc"),
            // printf VERIFIER | openssl dgst -sha256 -binary | base64url
            "Lp_A6Vjm0xkqgvIhrhwq3d79Nn9xJ3kYwUnfHXu7vT8"
        );
    }

    #[test]
    fn alg_names() {
        assert_eq!(Alg::parse("Ed25519"), Some(Alg::EdDSA));
        assert!(Alg::parse("none").is_none());
        assert!(Alg::parse("HS256").is_none());
        assert!(Alg::EdDSA.advertised_as("Ed25519"));
        assert!(!Alg::ES256.advertised_as("PS256"));
        assert_eq!(Alg::parse("ES384"), Some(Alg::ES384));
        assert_eq!(Alg::ES512.as_str(), "ES512");
    }

    /// ES384/ES512 (Singpass accepts P-384 and P-521 client keys): the JWS verifies with
    /// the published JWK, whose `crv` and coordinate lengths fit the curve.
    #[test]
    fn es384_and_es512_sign_and_publish_their_curve() {
        use aws_lc_rs::signature::{
            UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ECDSA_P521_SHA512_FIXED,
        };
        for (alg, verify, crv, len) in [
            (Alg::ES256, &ECDSA_P256_SHA256_FIXED, "P-256", 32),
            (Alg::ES384, &ECDSA_P384_SHA384_FIXED, "P-384", 48),
            (Alg::ES512, &ECDSA_P521_SHA512_FIXED, "P-521", 66),
        ] {
            let key = SigningKey::generate(alg).unwrap();
            let jwk = key.public_jwk();
            assert_eq!(
                (jwk["crv"].as_str(), jwk["alg"].as_str()),
                (Some(crv), Some(alg.as_str()))
            );
            let coord = |n: &str| B64.decode(jwk[n].as_str().unwrap()).unwrap();
            assert_eq!((coord("x").len(), coord("y").len()), (len, len));
            assert!(jwk.get("d").is_none());
            let mut claims = Map::new();
            claims.insert("sub".into(), json!("c"));
            let jws = key.sign_jwt(Some("dpop+jwt"), &claims).unwrap();
            let (input, sig) = jws.rsplit_once('.').unwrap();
            let header: Value = serde_json::from_slice(&B64.decode(input.split('.').next().unwrap()).unwrap()).unwrap();
            assert_eq!(header["alg"], alg.as_str());
            // Verified with the published JWK alone: 0x04 || x || y, r || s of 2 * len bytes.
            let sig = B64.decode(sig).unwrap();
            assert_eq!(sig.len(), 2 * len);
            let point = [vec![4u8], coord("x"), coord("y")].concat();
            let ok = UnparsedPublicKey::new(verify, &point).verify(input.as_bytes(), &sig);
            assert!(ok.is_ok(), "{alg:?}");
        }
    }

    #[test]
    fn the_key_curve_decides_the_alg() {
        let p384 = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let der = p384.to_pkcs8v1().unwrap();
        let err = SigningKey::from_der(der.as_ref(), Alg::ES256, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a P-384 key signs ES384") && err.contains("set alg: ES384"),
            "{err}"
        );
        let k = SigningKey::from_der(der.as_ref(), Alg::ES384, Some("k".into())).unwrap();
        assert_eq!((k.alg(), k.public_jwk()["crv"].as_str()), (Alg::ES384, Some("P-384")));
        let p521 = EcdsaKeyPair::generate(&signature::ECDSA_P521_SHA512_FIXED_SIGNING).unwrap();
        let der = p521.to_pkcs8v1().unwrap();
        assert!(SigningKey::from_der(der.as_ref(), Alg::ES512, None).is_ok());
        let err = SigningKey::from_der(der.as_ref(), Alg::PS256, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an RSA private key"), "{err}");
    }
}
