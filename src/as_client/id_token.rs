//! ID token validation for the egress token route (FAPI 2.0 Message Signing client rules): the
//! AS's `id_token` is checked before the legacy app, which checks little or nothing, sees it.
//! Pure: the clock and the AS JWKS are passed in, so fetching, caching and refetching on an
//! unknown `kid` (see [`header_kid`]) stay with the caller. Every failure names exactly one
//! [`IdTokenCheck`], a bounded metric label.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Map, Value};

use crate::as_client::jws::{self, numeric, short, Clock, JwsError};

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

/// The header `kid`, read without verification, so the caller can refetch the JWKS first.
pub fn header_kid(jwt: &str) -> Result<Option<String>, IdTokenError> {
    let mut it = jwt.split('.');
    let (Some(h), Some(_), Some(_), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return fail(IdTokenCheck::Malformed, "not a compact JWS of three parts");
    };
    let header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok());
    match header.as_ref().map(|m| m.get("kid")) {
        Some(None) => Ok(None),
        Some(Some(Value::String(k))) => Ok(Some(k.clone())),
        Some(Some(_)) => fail(IdTokenCheck::Malformed, "header kid is not a string"),
        None => fail(IdTokenCheck::Malformed, "header is not base64url JSON object"),
    }
}

/// A refusal of the shared JWS path ([`jws::verify_with`]) as this module's check.
pub fn refused(e: JwsError) -> IdTokenError {
    let check = match &e {
        JwsError::Malformed(_) => IdTokenCheck::Malformed,
        JwsError::Alg(_) => IdTokenCheck::Alg,
        JwsError::Crit => IdTokenCheck::Crit,
        JwsError::UnknownKid(_) => IdTokenCheck::UnknownKid,
        JwsError::Signature(_) | JwsError::Jwks(_) => IdTokenCheck::Signature,
    };
    IdTokenError {
        check,
        detail: e.to_string(),
    }
}

/// Verifies the signature and every claim rule; returns the claims for the caller's own use.
pub fn validate(jwt: &str, jwks: &JwkSet, x: &IdTokenExpectations) -> Result<Map<String, Value>, IdTokenError> {
    let claims = jws::verify_with(jwt, jwks, x.advertised_algs).map_err(refused)?;
    check_claims(&claims, x)?;
    Ok(claims)
}

/// The ID token's own claim rules (OIDC Core §3.1.3.7), after the shared JWS path.
pub fn check_claims(c: &Map<String, Value>, x: &IdTokenExpectations) -> Result<(), IdTokenError> {
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
    let clock = Clock {
        now: x.now,
        skew: x.skew,
    };
    if clock.expired(exp) {
        return fail(C::Exp, format!("expired: exp {exp}, now {}, skew {}", x.now, x.skew));
    }
    let Some(iat) = numeric(c, "iat") else {
        return fail(C::Iat, "iat missing or not a number");
    };
    if clock.in_future(iat) {
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
        if clock.in_future(nbf) {
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
