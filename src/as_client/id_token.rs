//! ID token validation for the egress token route (FAPI 2.0 Message Signing client rules): the
//! AS's `id_token` is checked before the legacy app, which checks little or nothing, sees it.
//! Pure: the clock and the AS JWKS are passed in, so fetching, caching and refetching on an
//! unknown `kid` (see [`header_kid`]) stay with the caller. Every failure names exactly one
//! [`IdTokenCheck`], a bounded metric label.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::as_client::jose::{select_verification_key, KeySelectError};

/// Clock skew tolerated on `exp`, `iat` and `auth_time` unless configured (config caps it at 300).
pub const DEFAULT_SKEW: u64 = 60;

/// What the token must match; everything about the current exchange, nothing global.
#[derive(Debug, Clone, Copy)]
pub struct IdTokenExpectations<'a> {
    /// Compared byte for byte (no normalisation of trailing slashes or case).
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// `id_token_signing_alg_values_supported` from discovery; `None` when not advertised.
    pub advertised_algs: Option<&'a [String]>,
    /// `Some` for an authorization_code grant whose pushed request carried a nonce; `None` for refresh.
    pub nonce: Option<&'a str>,
    /// The app's `max_age`, which makes `auth_time` required.
    pub max_age: Option<u64>,
    pub skew: u64,
    /// Unix seconds.
    pub now: u64,
}

/// The one rule a rejected token broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenCheck {
    Malformed,
    Alg,
    Crit,
    UnknownKid,
    Signature,
    Iss,
    Aud,
    Azp,
    Exp,
    Iat,
    Nonce,
    AuthTime,
    /// `sub` missing, not a string or empty (OIDC Core §2: REQUIRED).
    Sub,
    /// `nbf` present and in the future, or not a number.
    Nbf,
}

impl IdTokenCheck {
    pub fn label(&self) -> &'static str {
        match self {
            IdTokenCheck::Malformed => "malformed",
            IdTokenCheck::Alg => "alg",
            IdTokenCheck::Crit => "crit",
            IdTokenCheck::UnknownKid => "unknown_kid",
            IdTokenCheck::Signature => "signature",
            IdTokenCheck::Iss => "iss",
            IdTokenCheck::Aud => "aud",
            IdTokenCheck::Azp => "azp",
            IdTokenCheck::Exp => "exp",
            IdTokenCheck::Iat => "iat",
            IdTokenCheck::Nonce => "nonce",
            IdTokenCheck::AuthTime => "auth_time",
            IdTokenCheck::Sub => "sub",
            IdTokenCheck::Nbf => "nbf",
        }
    }
}

/// `detail` is for logs: it may quote a short, escaped header or claim value, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenError {
    pub check: IdTokenCheck,
    pub detail: String,
}

impl fmt::Display for IdTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "id_token rejected ({}): {}", self.check.label(), self.detail)
    }
}

impl std::error::Error for IdTokenError {}

fn fail<T>(check: IdTokenCheck, detail: impl Into<String>) -> Result<T, IdTokenError> {
    Err(IdTokenError {
        check,
        detail: detail.into(),
    })
}

/// Token-supplied text as it may appear in a detail: at most 64 chars, escaped (no log injection).
fn short(s: &str) -> String {
    format!("{:?}", s.chars().take(64).collect::<String>())
}

fn parts(jwt: &str) -> Result<(&str, &str), IdTokenError> {
    let mut it = jwt.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(_), None) => Ok((h, p)),
        _ => fail(IdTokenCheck::Malformed, "not a compact JWS of three parts"),
    }
}

fn header(jwt: &str) -> Result<Map<String, Value>, IdTokenError> {
    let (h, _) = parts(jwt)?;
    let bytes = URL_SAFE_NO_PAD.decode(h);
    match bytes.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        Some(Value::Object(m)) => Ok(m),
        _ => fail(IdTokenCheck::Malformed, "header is not base64url JSON object"),
    }
}

fn kid_of(header: &Map<String, Value>) -> Result<Option<String>, IdTokenError> {
    match header.get("kid") {
        None => Ok(None),
        Some(Value::String(k)) => Ok(Some(k.clone())),
        Some(_) => fail(IdTokenCheck::Malformed, "header kid is not a string"),
    }
}

/// The header `kid`, read without verification, so the caller can refetch the JWKS first.
pub fn header_kid(jwt: &str) -> Result<Option<String>, IdTokenError> {
    kid_of(&header(jwt)?)
}

/// FAPI 2.0 algorithms only: never `none`, HMAC (a client secret would verify) or RSA PKCS#1 v1.5.
fn fapi_alg(name: &str) -> Option<Algorithm> {
    match name {
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The shared selection ([`select_verification_key`]), its refusal as this module's check.
fn select<'k>(jwks: &'k JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<&'k Jwk, IdTokenError> {
    match select_verification_key(jwks, kid, alg) {
        Ok(j) => Ok(j),
        Err(KeySelectError::NoKid { fitting: 0 }) => {
            fail(IdTokenCheck::UnknownKid, format!("no kid and no AS key for {alg:?}"))
        }
        Err(KeySelectError::NoKid { .. }) => fail(
            IdTokenCheck::UnknownKid,
            format!("no kid and several AS keys for {alg:?}"),
        ),
        Err(KeySelectError::UnknownKid) => fail(
            IdTokenCheck::UnknownKid,
            format!("no AS key with kid {}", short(kid.unwrap_or(""))),
        ),
        Err(KeySelectError::WrongKey) => fail(
            IdTokenCheck::Alg,
            format!("AS key {} is not a {alg:?} signing key", short(kid.unwrap_or(""))),
        ),
    }
}

/// Verifies the signature and every claim rule; returns the claims for the caller's own use.
pub fn validate(jwt: &str, jwks: &JwkSet, x: &IdTokenExpectations) -> Result<Map<String, Value>, IdTokenError> {
    let header = header(jwt)?;
    let Some(Value::String(alg_name)) = header.get("alg") else {
        return fail(IdTokenCheck::Alg, "header has no string alg");
    };
    let Some(alg) = fapi_alg(alg_name) else {
        return fail(
            IdTokenCheck::Alg,
            format!("alg {} is not PS256, ES256 or EdDSA", short(alg_name)),
        );
    };
    if x.advertised_algs.is_some_and(|adv| !adv.iter().any(|a| a == alg_name)) {
        return fail(IdTokenCheck::Alg, format!("alg {alg_name} is not advertised by the AS"));
    }
    if header.contains_key("crit") {
        return fail(IdTokenCheck::Crit, "crit header present; no extensions are understood");
    }
    let kid = kid_of(&header)?;
    let jwk = select(jwks, kid.as_deref(), alg)?;
    let key = match DecodingKey::from_jwk(jwk) {
        Ok(k) => k,
        Err(e) => return fail(IdTokenCheck::Signature, format!("AS key unusable: {e}")),
    };
    // Built-in claim checks off: each claim rule below maps to exactly one IdTokenCheck.
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.leeway = 0;
    let claims = match jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &v) {
        Ok(d) => d.claims,
        Err(e) => {
            let check = match e.kind() {
                ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                    IdTokenCheck::Malformed
                }
                _ => IdTokenCheck::Signature,
            };
            return fail(check, e.to_string());
        }
    };
    check_claims(&claims, x)?;
    Ok(claims)
}

/// NumericDate: a non-negative JSON number (fractions truncated); anything else is absent.
fn numeric(c: &Map<String, Value>, name: &str) -> Option<u64> {
    let n = c.get(name)?.as_number()?;
    n.as_u64()
        .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

fn check_claims(c: &Map<String, Value>, x: &IdTokenExpectations) -> Result<(), IdTokenError> {
    use IdTokenCheck as C;
    match c.get("iss") {
        Some(Value::String(i)) if i == x.issuer => {}
        Some(Value::String(i)) => return fail(C::Iss, format!("iss {} is not the AS issuer", short(i))),
        _ => return fail(C::Iss, "iss missing or not a string"),
    }
    let aud: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => match a.iter().map(Value::as_str).collect::<Option<_>>() {
            Some(v) => v,
            None => return fail(C::Aud, "aud array holds a non-string"),
        },
        _ => return fail(C::Aud, "aud missing or not a string or array"),
    };
    if !aud.contains(&x.client_id) {
        return fail(C::Aud, "aud does not contain the client_id");
    }
    match c.get("azp") {
        Some(Value::String(a)) if a == x.client_id => {}
        Some(_) => return fail(C::Azp, "azp is not the client_id"),
        None if aud.len() > 1 => return fail(C::Azp, "aud has several values and azp is missing"),
        None => {}
    }
    // OIDC Core §3.1.3.7 (3): audiences the client does not trust are refused; the sidecar
    // trusts no audience but its own client_id, whatever azp says.
    if aud.iter().any(|a| *a != x.client_id) {
        return fail(C::Aud, "aud lists an audience other than the client_id");
    }
    // The app keys its user on `sub`: a token without one identifies nobody.
    match c.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return fail(C::Sub, "sub missing, empty or not a string"),
    }
    let Some(exp) = numeric(c, "exp") else {
        return fail(C::Exp, "exp missing or not a number");
    };
    if exp.saturating_add(x.skew) <= x.now {
        return fail(C::Exp, format!("expired: exp {exp}, now {}, skew {}", x.now, x.skew));
    }
    let Some(iat) = numeric(c, "iat") else {
        return fail(C::Iat, "iat missing or not a number");
    };
    if iat > x.now.saturating_add(x.skew) {
        return fail(
            C::Iat,
            format!("issued in the future: iat {iat}, now {}, skew {}", x.now, x.skew),
        );
    }
    // RFC 7519 §4.1.5: optional, but honoured when present (with the same skew as iat).
    if c.contains_key("nbf") {
        let Some(nbf) = numeric(c, "nbf") else {
            return fail(C::Nbf, "nbf is not a number");
        };
        if nbf > x.now.saturating_add(x.skew) {
            return fail(
                C::Nbf,
                format!("not valid yet: nbf {nbf}, now {}, skew {}", x.now, x.skew),
            );
        }
    }
    if let Some(nonce) = x.nonce {
        match c.get("nonce") {
            Some(Value::String(n)) if n == nonce => {}
            Some(_) => return fail(C::Nonce, "nonce is not the one sent"),
            None => return fail(C::Nonce, "nonce missing"),
        }
    }
    if let Some(max_age) = x.max_age {
        let Some(at) = numeric(c, "auth_time") else {
            return fail(
                C::AuthTime,
                "auth_time missing or not a number although max_age was sent",
            );
        };
        if at.saturating_add(max_age).saturating_add(x.skew) < x.now {
            return fail(
                C::AuthTime,
                format!("authentication too old: auth_time {at}, max_age {max_age}"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
