//! JWE decryption (RFC 7516 compact serialization only) for tokens the AS encrypts to the
//! client: Singpass and Corppass return the ID token as a JWS nested in a JWE.
//!
//! Hand-written on aws-lc-rs because no well-kept Rust JWE crate runs on it: `josekit` needs
//! OpenSSL, `jwt-simple` and `compact_jwt` bring their own crypto stacks; adding a second
//! crypto library for a few hundred lines of glue is the larger risk. Decrypt only: the
//! sidecar never produces a JWE.
//!
//! The allowlist is closed: key management `ECDH-ES`, `ECDH-ES+A128KW/A192KW/A256KW` (P-256,
//! P-384, P-521) and `RSA-OAEP-256`; content encryption `A128GCM`, `A192GCM`, `A256GCM`,
//! `A128CBC-HS256`, `A192CBC-HS384`, `A256CBC-HS512`. Never `RSA1_5` (padding oracle), never
//! `dir` (shared secret), never `zip` (compression oracle), never an unknown `crit`.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey, AES_128, AES_192, AES_256,
};
use aws_lc_rs::key_wrap::{self, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use aws_lc_rs::{aead, constant_time, digest, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::as_client::jose::{jwk_thumbprint, KeyError};
use crate::protocol::jose::KeyAlg;

/// Largest compact JWE accepted (an ID token is a few KiB; this bounds decoding work).
pub const MAX_JWE_LEN: usize = 256 * 1024;

/// Content encryption algorithms (`enc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enc {
    A128Gcm,
    A192Gcm,
    A256Gcm,
    A128CbcHs256,
    A192CbcHs384,
    A256CbcHs512,
}

impl Enc {
    pub fn parse(s: &str) -> Option<Enc> {
        Some(match s {
            "A128GCM" => Enc::A128Gcm,
            "A192GCM" => Enc::A192Gcm,
            "A256GCM" => Enc::A256Gcm,
            "A128CBC-HS256" => Enc::A128CbcHs256,
            "A192CBC-HS384" => Enc::A192CbcHs384,
            "A256CBC-HS512" => Enc::A256CbcHs512,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Enc::A128Gcm => "A128GCM",
            Enc::A192Gcm => "A192GCM",
            Enc::A256Gcm => "A256GCM",
            Enc::A128CbcHs256 => "A128CBC-HS256",
            Enc::A192CbcHs384 => "A192CBC-HS384",
            Enc::A256CbcHs512 => "A256CBC-HS512",
        }
    }

    /// CEK length in bytes (for CBC-HS: MAC key and encryption key together).
    pub fn key_len(self) -> usize {
        match self {
            Enc::A128Gcm => 16,
            Enc::A192Gcm => 24,
            Enc::A256Gcm | Enc::A128CbcHs256 => 32,
            Enc::A192CbcHs384 => 48,
            Enc::A256CbcHs512 => 64,
        }
    }
}

/// Why a JWE was refused; each maps to one bounded check name for metrics and refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JweError {
    /// Not five base64url parts, or a protected header that is not a JSON object.
    Malformed,
    /// `alg` or `enc` outside the allowlist, `zip`, or `crit` present.
    Alg,
    /// No configured key for the `kid` (or, without one, not exactly one key for the `alg`).
    Key,
    /// Key agreement, key unwrap or the authentication tag failed.
    Decrypt,
}

impl JweError {
    pub fn check(self) -> &'static str {
        match self {
            JweError::Malformed => "jwe_malformed",
            JweError::Alg => "jwe_alg",
            JweError::Key => "jwe_key",
            JweError::Decrypt => "jwe_decrypt",
        }
    }
}

enum Material {
    Ec {
        key: PrivateKey,
        curve: &'static agreement::Algorithm,
        crv: &'static str,
    },
    Rsa(OaepPrivateDecryptingKey),
}

/// A parsed private decryption key with its `kid`, `alg` and public JWK (`use: enc`).
/// Debug never prints key bytes.
pub struct DecryptionKey {
    alg: KeyAlg,
    kid: String,
    material: Material,
    public_jwk: Value,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn ec_curve_of(der: &[u8]) -> Option<(PrivateKey, &'static agreement::Algorithm, &'static str)> {
    [
        (&agreement::ECDH_P256, "P-256"),
        (&agreement::ECDH_P384, "P-384"),
        (&agreement::ECDH_P521, "P-521"),
    ]
    .into_iter()
    .find_map(|(a, crv)| PrivateKey::from_private_key_der(a, der).ok().map(|k| (k, a, crv)))
}

impl DecryptionKey {
    /// Parses a DER private key: EC (PKCS#8 or SEC1; P-256/384/521) for the ECDH-ES algs,
    /// RSA (PKCS#8, at least 2048 bits) for RSA-OAEP-256.
    pub fn from_der(der: &[u8], alg: KeyAlg, kid: Option<String>) -> Result<Self, KeyError> {
        let (material, public) = if alg.is_ec() {
            let (key, curve, crv) = ec_curve_of(der)
                .ok_or_else(|| KeyError::Parse(format!("not an EC P-256/384/521 private key for {}", alg.as_str())))?;
            let point = key
                .compute_public_key()
                .map_err(|_| KeyError::Parse("cannot compute the EC public key".into()))?;
            // Uncompressed SEC1 point: 0x04 || X || Y, coordinates of equal length.
            let p = point.as_ref();
            let n = (p.len() - 1) / 2;
            let public =
                json!({ "kty": "EC", "crv": crv, "x": B64.encode(&p[1..1 + n]), "y": B64.encode(&p[1 + n..]) });
            (Material::Ec { key, curve, crv }, public)
        } else {
            let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der)
                .map_err(|e| KeyError::Parse(format!("not a PKCS#8 RSA private key for RSA-OAEP-256: {e}")))?;
            if pair.public_modulus_len() < 256 {
                return Err(KeyError::Parse("RSA keys must be at least 2048 bits".into()));
            }
            use aws_lc_rs::signature::KeyPair;
            let pk = pair.public_key();
            let public = json!({
                "kty": "RSA",
                "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
                "e": B64.encode(pk.exponent().big_endian_without_leading_zero()),
            });
            let dk = PrivateDecryptingKey::from_pkcs8(der)
                .map_err(|e| KeyError::Parse(format!("not an RSA decryption key: {e}")))
                .and_then(|k| {
                    OaepPrivateDecryptingKey::new(k).map_err(|_| KeyError::Parse("not an RSA decryption key".into()))
                })?;
            (Material::Rsa(dk), public)
        };
        let kid = kid.unwrap_or_else(|| jwk_thumbprint(&public));
        let mut public_jwk = public;
        let obj = public_jwk.as_object_mut().expect("jwk is an object");
        obj.insert("kid".into(), Value::String(kid.clone()));
        obj.insert("use".into(), Value::String("enc".into()));
        obj.insert("alg".into(), Value::String(alg.as_str().into()));
        Ok(DecryptionKey {
            alg,
            kid,
            material,
            public_jwk,
        })
    }

    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kid`, `use: enc` and `alg`, for registration at the AS.
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The CEK for this JWE, or why not. `ek` is the decoded JWE Encrypted Key.
    fn content_key(&self, header: &Map<String, Value>, enc: Enc, ek: &[u8]) -> Result<Vec<u8>, JweError> {
        match &self.material {
            Material::Ec { key, curve, crv } => {
                let z = agree(key, curve, crv, header)?;
                let apu = b64_member(header, "apu")?;
                let apv = b64_member(header, "apv")?;
                match self.alg.kw_len() {
                    None => {
                        if !ek.is_empty() {
                            return Err(JweError::Malformed);
                        }
                        Ok(concat_kdf(&z, enc.as_str(), &apu, &apv, enc.key_len()))
                    }
                    Some(n) => {
                        let kek = concat_kdf(&z, self.alg.as_str(), &apu, &apv, n);
                        let cek = aes_key_unwrap(&kek, ek)?;
                        if cek.len() != enc.key_len() {
                            return Err(JweError::Decrypt);
                        }
                        Ok(cek)
                    }
                }
            }
            Material::Rsa(dk) => {
                // RFC 7516 §11.5: on any failure continue with a random CEK so the tag check
                // fails the same way (no oracle telling OAEP failures from tag failures).
                let mut out = vec![0u8; dk.min_output_size()];
                let cek = match dk.decrypt(&OAEP_SHA256_MGF1SHA256, ek, &mut out, None) {
                    Ok(p) if p.len() == enc.key_len() => p.to_vec(),
                    _ => {
                        let mut r = vec![0u8; enc.key_len()];
                        aws_lc_rs::rand::fill(&mut r).map_err(|_| JweError::Decrypt)?;
                        r
                    }
                };
                Ok(cek)
            }
        }
    }
}

/// A compact JWE has five parts (a JWS three): the shape test callers use to branch.
pub fn is_compact_jwe(token: &str) -> bool {
    token.split('.').count() == 5
}

/// Decrypts a compact JWE with the key its `kid` names (or, without a `kid`, the only key
/// for its `alg`). Returns the plaintext; the caller checks it is a JWS and verifies it.
pub fn decrypt(token: &str, keys: &[impl AsRef<DecryptionKey>]) -> Result<Vec<u8>, JweError> {
    decrypt_with_key(token, keys).map(|(p, _)| p)
}

/// [`decrypt`], also naming the key that decrypted: a caller that tried several clients'
/// keys can then check the key belongs to the client the plaintext turns out to be for.
pub fn decrypt_with_key<'k, K: AsRef<DecryptionKey>>(
    token: &str,
    keys: &'k [K],
) -> Result<(Vec<u8>, &'k DecryptionKey), JweError> {
    if token.len() > MAX_JWE_LEN {
        return Err(JweError::Malformed);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h64, ek64, iv64, ct64, tag64] = parts[..] else {
        return Err(JweError::Malformed);
    };
    let header: Map<String, Value> = B64
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JweError::Malformed)?;
    let (alg, enc) = header_algs(&header)?;
    let candidates = select_keys(&header, alg, keys)?;
    let dec = |s: &str| B64.decode(s).map_err(|_| JweError::Malformed);
    let (ek, iv, ct, tag) = (dec(ek64)?, dec(iv64)?, dec(ct64)?, dec(tag64)?);
    // Several keys under one kid only across a rotation (a new file under an unchanged
    // kid, the old one kept for its grace period): the first that decrypts wins.
    let mut last = JweError::Decrypt;
    for key in candidates {
        let result = key
            .content_key(&header, enc, &ek)
            .and_then(|cek| decrypt_content(enc, &cek, h64.as_bytes(), &iv, ct.clone(), &tag));
        match result {
            Ok(p) => return Ok((p, key)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// True when the JWE's header passes the header rules and names one of `keys` (no
/// decryption): cheap enough to decide whether an unknown parameter is meant for us.
pub fn names_a_key(token: &str, keys: &[impl AsRef<DecryptionKey>]) -> bool {
    let h64 = token.split('.').next().unwrap_or_default();
    let header: Option<Map<String, Value>> = B64.decode(h64).ok().and_then(|b| serde_json::from_slice(&b).ok());
    header.is_some_and(|h| header_algs(&h).is_ok_and(|(alg, _)| select_keys(&h, alg, keys).is_ok()))
}

/// The plaintext of a nested JWT when it is a compact JWS (three base64url parts): a
/// token the AS encrypted must also be signed (never an unsigned inner token).
pub fn nested_jws(plaintext: Vec<u8>) -> Option<String> {
    String::from_utf8(plaintext)
        .ok()
        .filter(|s| s.split('.').count() == 3 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
}

/// The `alg` and `enc` of a compact JWE, with the header rules applied (no key is used): for
/// comparing with what the AS's metadata says it encrypts with.
pub fn peek_algs(token: &str) -> Result<(KeyAlg, Enc), JweError> {
    let h64 = token.split('.').next().unwrap_or_default();
    let header: Map<String, Value> = B64
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JweError::Malformed)?;
    header_algs(&header)
}

/// `alg`, `enc`, and the header rules: no `zip`, no `crit` (no extension is understood).
fn header_algs(header: &Map<String, Value>) -> Result<(KeyAlg, Enc), JweError> {
    let alg = header.get("alg").and_then(Value::as_str).and_then(KeyAlg::parse);
    let enc = header.get("enc").and_then(Value::as_str).and_then(Enc::parse);
    let (Some(alg), Some(enc)) = (alg, enc) else {
        return Err(JweError::Alg);
    };
    if header.contains_key("zip") || header.contains_key("crit") {
        return Err(JweError::Alg);
    }
    Ok((alg, enc))
}

/// With a `kid`: the keys under it configured for this `alg`; without one, the only key
/// for this `alg` (never a guess among several).
fn select_keys<'k, K: AsRef<DecryptionKey>>(
    header: &Map<String, Value>,
    alg: KeyAlg,
    keys: &'k [K],
) -> Result<Vec<&'k DecryptionKey>, JweError> {
    let for_alg = keys.iter().map(AsRef::as_ref).filter(|k| k.alg == alg);
    let found: Vec<&DecryptionKey> = match header.get("kid") {
        Some(Value::String(kid)) => for_alg.filter(|k| k.kid == *kid).collect(),
        Some(_) => return Err(JweError::Malformed),
        None => {
            let all: Vec<_> = for_alg.collect();
            if all.len() == 1 {
                all
            } else {
                Vec::new()
            }
        }
    };
    if found.is_empty() {
        return Err(JweError::Key);
    }
    Ok(found)
}

fn b64_member(header: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JweError> {
    match header.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => B64.decode(s).map_err(|_| JweError::Malformed),
        Some(_) => Err(JweError::Malformed),
    }
}

/// ECDH with the header's `epk` (which must be on our key's curve; aws-lc checks the point
/// is on the curve, which stops invalid-curve attacks). Returns the shared secret Z.
fn agree(
    key: &PrivateKey,
    curve: &'static agreement::Algorithm,
    crv: &str,
    header: &Map<String, Value>,
) -> Result<Vec<u8>, JweError> {
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or(JweError::Malformed)?;
    if epk.get("kty").and_then(Value::as_str) != Some("EC") || epk.get("crv").and_then(Value::as_str) != Some(crv) {
        return Err(JweError::Key);
    }
    let coord = |n: &str| {
        epk.get(n)
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
            .ok_or(JweError::Malformed)
    };
    let (x, y) = (coord("x")?, coord("y")?);
    let len = match crv {
        "P-256" => 32,
        "P-384" => 48,
        _ => 66,
    };
    if x.len() != len || y.len() != len {
        return Err(JweError::Malformed);
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    agreement::agree(key, UnparsedPublicKey::new(curve, &point), JweError::Decrypt, |z| {
        Ok(z.to_vec())
    })
}

/// Concat KDF (NIST SP 800-56A §5.8.1) with SHA-256 as RFC 7518 §4.6.2 profiles it:
/// OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo (key length in bits).
pub fn concat_kdf(z: &[u8], alg_id: &str, apu: &[u8], apv: &[u8], key_len: usize) -> Vec<u8> {
    let lp = |b: &[u8]| {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    };
    let mut other = lp(alg_id.as_bytes());
    other.extend(lp(apu));
    other.extend(lp(apv));
    other.extend_from_slice(&((key_len * 8) as u32).to_be_bytes());
    let mut out = Vec::with_capacity(key_len + 32);
    let mut counter: u32 = 1;
    while out.len() < key_len {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        ctx.update(&other);
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(key_len);
    out
}

/// AES key unwrap (RFC 3394): aws-lc-rs `key_wrap` for 128 and 256-bit KEKs; it has no
/// AES-192 KEK, so that one runs the RFC 3394 §2.2.2 loop over single-block AES-ECB.
pub fn aes_key_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, JweError> {
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return Err(JweError::Decrypt);
    }
    let mut out = vec![0u8; wrapped.len()];
    let cipher = match kek.len() {
        16 => &key_wrap::AES_128,
        32 => &key_wrap::AES_256,
        24 => return aes192_unwrap(kek, wrapped),
        _ => return Err(JweError::Decrypt),
    };
    let k = KeyEncryptionKey::new(cipher, kek).map_err(|_| JweError::Decrypt)?;
    let n = k.unwrap(wrapped, &mut out).map_err(|_| JweError::Decrypt)?.len();
    out.truncate(n);
    Ok(out)
}

fn aes192_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, JweError> {
    let key = UnboundCipherKey::new(&AES_192, kek).map_err(|_| JweError::Decrypt)?;
    let ecb = DecryptingKey::ecb(key).map_err(|_| JweError::Decrypt)?;
    let n = wrapped.len() / 8 - 1;
    let mut a: [u8; 8] = wrapped[..8].try_into().map_err(|_| JweError::Decrypt)?;
    let mut r: Vec<[u8; 8]> = wrapped[8..].chunks(8).map(|c| c.try_into().unwrap_or([0; 8])).collect();
    for j in (0..6u64).rev() {
        for i in (1..=n).rev() {
            let t = (n as u64) * j + i as u64;
            let mut block = [0u8; 16];
            let at = u64::from_be_bytes(a) ^ t;
            block[..8].copy_from_slice(&at.to_be_bytes());
            block[8..].copy_from_slice(&r[i - 1]);
            ecb.decrypt(&mut block, DecryptionContext::None)
                .map_err(|_| JweError::Decrypt)?;
            a.copy_from_slice(&block[..8]);
            r[i - 1].copy_from_slice(&block[8..]);
        }
    }
    constant_time::verify_slices_are_equal(&a, &[0xA6; 8]).map_err(|_| JweError::Decrypt)?;
    Ok(r.concat())
}

/// Content decryption (RFC 7518 §5.2 for CBC-HS, §5.3 for GCM); `aad` is the ASCII of the
/// encoded protected header.
pub fn decrypt_content(
    enc: Enc,
    cek: &[u8],
    aad: &[u8],
    iv: &[u8],
    ct: Vec<u8>,
    tag: &[u8],
) -> Result<Vec<u8>, JweError> {
    if cek.len() != enc.key_len() {
        return Err(JweError::Decrypt);
    }
    match enc {
        Enc::A128Gcm | Enc::A192Gcm | Enc::A256Gcm => {
            let alg = match enc {
                Enc::A128Gcm => &aead::AES_128_GCM,
                Enc::A192Gcm => &aead::AES_192_GCM,
                _ => &aead::AES_256_GCM,
            };
            if tag.len() != 16 {
                return Err(JweError::Decrypt);
            }
            let nonce = aead::Nonce::try_assume_unique_for_key(iv).map_err(|_| JweError::Decrypt)?;
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, cek).map_err(|_| JweError::Decrypt)?);
            let mut in_out = ct;
            in_out.extend_from_slice(tag);
            let n = key
                .open_in_place(nonce, aead::Aad::from(aad), &mut in_out)
                .map_err(|_| JweError::Decrypt)?
                .len();
            in_out.truncate(n);
            Ok(in_out)
        }
        Enc::A128CbcHs256 | Enc::A192CbcHs384 | Enc::A256CbcHs512 => cbc_hs(enc, cek, aad, iv, ct, tag),
    }
}

fn cbc_hs(enc: Enc, cek: &[u8], aad: &[u8], iv: &[u8], ct: Vec<u8>, tag: &[u8]) -> Result<Vec<u8>, JweError> {
    let half = cek.len() / 2;
    let (mac_key, enc_key) = cek.split_at(half);
    let (mac_alg, aes) = match enc {
        Enc::A128CbcHs256 => (hmac::HMAC_SHA256, &AES_128),
        Enc::A192CbcHs384 => (hmac::HMAC_SHA384, &AES_192),
        _ => (hmac::HMAC_SHA512, &AES_256),
    };
    // Tag first, before any decryption (no padding oracle): T = HMAC(A || IV || E || AL)[..half].
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(mac_alg, mac_key));
    ctx.update(aad);
    ctx.update(iv);
    ctx.update(&ct);
    ctx.update(&((aad.len() as u64) * 8).to_be_bytes());
    let m = ctx.sign();
    constant_time::verify_slices_are_equal(&m.as_ref()[..half], tag).map_err(|_| JweError::Decrypt)?;
    let iv: [u8; 16] = iv.try_into().map_err(|_| JweError::Decrypt)?;
    let key = UnboundCipherKey::new(aes, enc_key).map_err(|_| JweError::Decrypt)?;
    let dk = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| JweError::Decrypt)?;
    let mut buf = ct;
    let n = dk
        .decrypt(&mut buf, DecryptionContext::Iv128(iv.into()))
        .map_err(|_| JweError::Decrypt)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
#[path = "jwe/tests.rs"]
mod tests;
