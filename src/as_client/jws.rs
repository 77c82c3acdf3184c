//! The one JOSE verification path for what the sidecar verifies with an AS's JWKS: ID
//! tokens, JARM responses and userinfo JWTs. The header rules (FAPI 2.0 algorithms, the
//! AS's advertised list, no `crit`), the key selection ([`select_verification_key`]), the
//! signature, the JWKS refetch and the clock rule live here once, so the three cannot drift
//! apart; each token's own claim rules stay in its module.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use url::Url;

use crate::as_client::http_client::AsHttp;
use crate::as_client::jose::{select_verification_key, KeySelectError};
use crate::metrics::Metrics;

/// Why a JWS was refused before any claim rule. `String`s are for logs: they may quote a
/// short, escaped header value, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsError {
    /// Not three parts, a header that is not a base64url JSON object, a non-string `kid`,
    /// or a payload that is not a JSON object.
    Malformed(String),
    /// `alg` missing, not PS256/ES256/EdDSA, not in the AS's advertised list, or the key
    /// under the `kid` is not a signing key for it.
    Alg(String),
    /// A `crit` header: no extension is understood (RFC 7515 §4.1.11).
    Crit,
    /// No AS key under the `kid`, or without one not exactly one fitting key.
    UnknownKid(String),
    Signature(String),
    /// The AS's JWKS could not be loaded.
    Jwks(String),
}

impl std::fmt::Display for JwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwsError::Crit => f.write_str("crit header present; no extensions are understood"),
            JwsError::Malformed(d)
            | JwsError::Alg(d)
            | JwsError::UnknownKid(d)
            | JwsError::Signature(d)
            | JwsError::Jwks(d) => f.write_str(d),
        }
    }
}

/// Token-supplied text as it may appear in a detail: at most 64 chars, escaped (no log injection).
pub fn short(s: &str) -> String {
    format!("{:?}", s.chars().take(64).collect::<String>())
}

/// FAPI 2.0 algorithms only (CR-1): never `none`, HMAC (a client secret would verify) or
/// RSA PKCS#1 v1.5.
fn fapi_alg(name: &str) -> Option<Algorithm> {
    match name {
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The header of a JWS that passed the header rules.
#[derive(Debug, Clone)]
pub struct JwsHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Shape and header rules, no key used: three parts, `alg` in the FAPI set and in
/// `advertised` (the AS metadata's list for this token kind; `None` when not listed), no
/// `crit`, a string `kid` if any.
pub fn check_header(jwt: &str, advertised: Option<&[String]>) -> Result<JwsHeader, JwsError> {
    let mut it = jwt.split('.');
    let h = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(_), Some(_), None) => h,
        _ => return Err(JwsError::Malformed("not a compact JWS of three parts".into())),
    };
    let header = match URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        Some(Value::Object(m)) => m,
        _ => return Err(JwsError::Malformed("header is not base64url JSON object".into())),
    };
    let Some(Value::String(alg_name)) = header.get("alg") else {
        return Err(JwsError::Alg("header has no string alg".into()));
    };
    let Some(alg) = fapi_alg(alg_name) else {
        return Err(JwsError::Alg(format!(
            "alg {} is not PS256, ES256 or EdDSA",
            short(alg_name)
        )));
    };
    if advertised.is_some_and(|adv| !adv.iter().any(|a| a == alg_name)) {
        return Err(JwsError::Alg(format!("alg {alg_name} is not advertised by the AS")));
    }
    if header.contains_key("crit") {
        return Err(JwsError::Crit);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwsError::Malformed("header kid is not a string".into())),
    };
    Ok(JwsHeader { alg, kid })
}

/// Header rules, key selection and signature against `jwks`; returns the claims for the
/// caller's own rules. Pure: fetching the JWKS is `jwks::AsJwks::verify_jws`'s business.
pub fn verify_with(jwt: &str, jwks: &JwkSet, advertised: Option<&[String]>) -> Result<Map<String, Value>, JwsError> {
    let JwsHeader { alg, kid } = check_header(jwt, advertised)?;
    let named = || short(kid.as_deref().unwrap_or(""));
    let jwk = select_verification_key(jwks, kid.as_deref(), alg).map_err(|e| match e {
        KeySelectError::NoKid { fitting: 0 } => JwsError::UnknownKid(format!("no kid and no AS key for {alg:?}")),
        KeySelectError::NoKid { .. } => JwsError::UnknownKid(format!("no kid and several AS keys for {alg:?}")),
        KeySelectError::UnknownKid => JwsError::UnknownKid(format!("no AS key with kid {}", named())),
        KeySelectError::WrongKey => JwsError::Alg(format!("AS key {} is not a {alg:?} signing key", named())),
    })?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| JwsError::Signature(format!("AS key unusable: {e}")))?;
    // Built-in claim checks off: the claim rules are the caller's, each with its own name.
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.leeway = 0;
    match jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &v) {
        Ok(d) => Ok(d.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                JwsError::Malformed(e.to_string())
            }
            _ => JwsError::Signature(e.to_string()),
        }),
    }
}

/// The clock every time claim is read against: `now` and the configured skew
/// (`egress.clock_skew_seconds`, default 60), the same for ID tokens and JARM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Unix seconds.
    pub now: u64,
    pub skew: u64,
}

impl Clock {
    pub fn with_skew(skew: u64) -> Clock {
        Clock {
            now: crate::as_client::request_object::now_secs(),
            skew,
        }
    }

    /// An `exp` that lies behind us by more than the skew.
    pub fn expired(&self, exp: u64) -> bool {
        exp.saturating_add(self.skew) <= self.now
    }

    /// An `iat` or `nbf` ahead of us by more than the skew.
    pub fn in_future(&self, t: u64) -> bool {
        t > self.now.saturating_add(self.skew)
    }
}

/// NumericDate: a non-negative JSON number (fractions truncated); anything else is absent.
pub fn numeric(c: &Map<String, Value>, name: &str) -> Option<u64> {
    let n = c.get(name)?.as_number()?;
    n.as_u64()
        .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

/// The string list an AS metadata member holds, `None` when absent or not a list.
pub fn advertised(doc: &Map<String, Value>, member: &str) -> Option<Vec<String>> {
    match doc.get(member) {
        Some(Value::Array(v)) => Some(v.iter().filter_map(Value::as_str).map(str::to_string).collect()),
        _ => None,
    }
}

/// How a verification reaches the AS's JWKS.
#[derive(Clone, Copy)]
pub struct JwksFetch<'a> {
    pub http: &'a dyn AsHttp,
    pub jwks_uri: Option<&'a Url>,
    pub timeout: Duration,
    pub metrics: &'a Metrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn header_rules_are_one_set() {
        let t = |h: &str| format!("{}.{}.sig", b64(h), b64("{}"));
        let adv = vec!["ES256".to_string()];
        assert!(matches!(check_header("a.b", None), Err(JwsError::Malformed(_))));
        assert!(matches!(
            check_header(&t(r#"{"alg":"none"}"#), None),
            Err(JwsError::Alg(_))
        ));
        assert!(matches!(
            check_header(&t(r#"{"alg":"HS256"}"#), None),
            Err(JwsError::Alg(_))
        ));
        assert!(matches!(
            check_header(&t(r#"{"alg":"RS256"}"#), None),
            Err(JwsError::Alg(_))
        ));
        assert!(matches!(
            check_header(&t(r#"{"alg":"PS256"}"#), Some(&adv)),
            Err(JwsError::Alg(_))
        ));
        assert_eq!(
            check_header(&t(r#"{"alg":"ES256","crit":["b64"]}"#), Some(&adv)).unwrap_err(),
            JwsError::Crit
        );
        assert!(matches!(
            check_header(&t(r#"{"alg":"ES256","kid":7}"#), None),
            Err(JwsError::Malformed(_))
        ));
        let h = check_header(&t(r#"{"alg":"ES256","kid":"k"}"#), Some(&adv)).unwrap();
        assert_eq!((h.alg, h.kid.as_deref()), (Algorithm::ES256, Some("k")));
    }

    #[test]
    fn the_clock_allows_the_skew_and_no_more() {
        let c = Clock { now: 1000, skew: 60 };
        assert!(!c.expired(941));
        assert!(c.expired(940));
        assert!(!c.in_future(1060));
        assert!(c.in_future(1061));
        let none = Clock { now: 1000, skew: 0 };
        assert!(none.expired(1000));
    }
}
