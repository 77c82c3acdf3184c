//! JARM (JWT Secured Authorization Response Mode) responses, signed or signed then encrypted
//! (JARM §2.3): decrypted with the client's encryption keys, verified on the shared JWS path
//! ([`crate::as_client::jws`]) with the AS's JWKS, then the JARM claim rules (CB-2, CB-3).
//! The AS's JWKS cache, [`AsJwks`], lives here too: fetched, cached, refreshed on an unknown
//! `kid` and rate-limited; ID tokens and userinfo JWTs use it alike.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::jwe::{self, JweError};
use crate::as_client::jwks::AsJwks;
use crate::as_client::jws::{self, Clock, JwksFetch, JwsError};
use crate::as_client::registry::AsClient;
use crate::errors::FailureCode;
use crate::metrics::Metrics;

/// Why a JARM response was refused; [`JarmError::check`] names the one rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JarmError {
    /// The shared JWS path refused it (shape, alg, `crit`, key, signature, JWKS).
    Jws(JwsError),
    /// `iss`, `aud` or `exp` broke the JARM claim rules (JARM §4.4): the claim and why.
    Claim(&'static str, String),
    /// An encrypted response that does not decrypt with this client's keys, or whose
    /// `alg`/`enc` the AS's metadata rules out.
    Jwe(JweError),
    /// The decrypted response is not a signed JWT (JARM §2.3: signed, then encrypted).
    JweInner,
}

impl std::fmt::Display for JarmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let check = self.check();
        match self {
            JarmError::Jws(e) => write!(f, "response JWT refused ({check}): {e}"),
            JarmError::Claim(_, d) => write!(f, "response JWT refused ({check}): {d}"),
            JarmError::Jwe(_) => write!(f, "encrypted response JWT refused ({check})"),
            JarmError::JweInner => write!(f, "encrypted response JWT refused ({check}): not a signed JWT inside"),
        }
    }
}

impl std::error::Error for JarmError {}

impl JarmError {
    /// The browser-facing failure this error becomes.
    pub fn failure(&self) -> FailureCode {
        match self {
            JarmError::Jws(JwsError::Jwks(_)) => FailureCode::JwksUnavailable,
            _ => FailureCode::JarmInvalid,
        }
    }

    /// The stable code (metric label).
    pub fn code(&self) -> &'static str {
        self.failure().as_str()
    }

    /// The rule the response broke, as the log detail names it (bounded).
    pub fn check(&self) -> &'static str {
        match self {
            JarmError::Jws(JwsError::Malformed(_)) => "malformed",
            JarmError::Jws(JwsError::Alg(_)) => "alg",
            JarmError::Jws(JwsError::Crit) => "crit",
            JarmError::Jws(JwsError::UnknownKid(_)) => "unknown_kid",
            JarmError::Jws(JwsError::Signature(_)) => "signature",
            JarmError::Jws(JwsError::Jwks(_)) => "jwks_unavailable",
            JarmError::Claim(name, _) => name,
            JarmError::Jwe(e) => e.check(),
            JarmError::JweInner => "jwe_inner",
        }
    }
}

impl AsJwks {
    /// Verifies a signed JARM response on the shared JWS path, then the JARM claim rules;
    /// returns its claims (`code`, `state`, `error`, ...).
    pub async fn verify_jarm(
        &self,
        jws: &str,
        x: &JarmExpect<'_>,
        fetch: &JwksFetch<'_>,
    ) -> Result<Map<String, Value>, JarmError> {
        let claims = self
            .verify_jws(jws, x.advertised, fetch)
            .await
            .map_err(JarmError::Jws)?;
        check_claims(&claims, x)?;
        Ok(claims)
    }
}

/// What a JARM response must match.
#[derive(Debug, Clone, Copy)]
pub struct JarmExpect<'a> {
    /// Compared byte for byte.
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// `authorization_signing_alg_values_supported`; `None` when the AS does not list it.
    pub advertised: Option<&'a [String]>,
    pub clock: Clock,
}

/// JARM §4.4: `iss` the issuer, `aud` naming the client, `exp` present and not past (the
/// configured clock skew, as for ID tokens).
fn check_claims(c: &Map<String, Value>, x: &JarmExpect) -> Result<(), JarmError> {
    let claim = |name, why: &str| Err(JarmError::Claim(name, why.to_string()));
    match c.get("iss") {
        Some(Value::String(i)) if i == x.issuer => {}
        Some(Value::String(i)) => return claim("iss", &format!("iss {} is not the AS issuer", jws::short(i))),
        _ => return claim("iss", "iss missing or not a string"),
    }
    let names_client = match c.get("aud") {
        Some(Value::String(a)) => a == x.client_id,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(x.client_id)),
        _ => false,
    };
    if !names_client {
        return claim("aud", "aud missing or not naming the client_id");
    }
    match jws::numeric(c, "exp") {
        None => claim("exp", "exp missing or not a number"),
        Some(exp) if x.clock.expired(exp) => claim(
            "exp",
            &format!("expired: exp {exp}, now {}, skew {}", x.clock.now, x.clock.skew),
        ),
        Some(_) => Ok(()),
    }
}

/// A `response` parameter opened to its signed JWT: as it arrived, or decrypted.
#[derive(Debug)]
pub struct JarmResponse {
    /// The signed JWT (the inner one of an encrypted response); its unverified `state`
    /// names the AS to verify it with.
    pub jws: String,
    encrypted: Option<Encryption>,
}

#[derive(Debug)]
struct Encryption {
    alg: &'static str,
    enc: &'static str,
    /// The public JWK of the key that decrypted it.
    key: Value,
}

/// Opens a `response` parameter. A JWE is decrypted with the encryption keys of every AS
/// configured for JARM: which AS it comes from is only known from the `state` inside;
/// [`verify`] then requires the key to be that AS's own.
pub fn open(response: &str, clients: &[Arc<AsClient>]) -> Result<JarmResponse, JarmError> {
    if !jwe::is_compact_jwe(response) {
        return Ok(JarmResponse {
            jws: response.to_string(),
            encrypted: None,
        });
    }
    let keys = jarm_decryption_keys(clients);
    if keys.is_empty() {
        return Err(JarmError::Jwe(JweError::Key));
    }
    let (alg, enc) = jwe::peek_algs(response).map_err(JarmError::Jwe)?;
    let (plain, key) = jwe::decrypt_with_key(response, &keys).map_err(JarmError::Jwe)?;
    let key = key.public_jwk().clone();
    let jws = jwe::nested_jws(plain).ok_or(JarmError::JweInner)?;
    Ok(JarmResponse {
        jws,
        encrypted: Some(Encryption {
            alg: alg.as_str(),
            enc: enc.as_str(),
            key,
        }),
    })
}

fn jarm_decryption_keys(clients: &[Arc<AsClient>]) -> Vec<Arc<jwe::DecryptionKey>> {
    clients
        .iter()
        .filter(|c| c.settings.client.jarm)
        .flat_map(|c| c.keys.load().decryption_keys())
        .collect()
}

/// Off a callback path: a JWE `response` is ours to check only when its header names one
/// of our JARM clients' encryption keys (no decryption: any request may carry one).
pub fn encrypted_to_us(response: &str, clients: &[Arc<AsClient>]) -> bool {
    jwe::is_compact_jwe(response) && jwe::names_a_key(response, &jarm_decryption_keys(clients))
}

/// Verifies an opened JARM response for `client` (the AS its sealed state names): an
/// encrypted one must have been encrypted to this client's key with an `alg`/`enc` the
/// AS's metadata lists (`authorization_encryption_{alg,enc}_values_supported`, when
/// listed); then the signed JWT as [`AsJwks::verify_jarm`] checks it.
pub async fn verify(
    client: &AsClient,
    md: &ProviderMetadata,
    response: &JarmResponse,
    clock_skew: u64,
    timeout: Duration,
    metrics: &Metrics,
) -> Result<Map<String, Value>, JarmError> {
    if let Some(e) = &response.encrypted {
        let own = client.keys.load().decryption_keys();
        if !own.iter().any(|k| *k.public_jwk() == e.key) {
            return Err(JarmError::Jwe(JweError::Key));
        }
        let listed = |member: &str, value: &str| {
            jws::advertised(&md.document, member).is_none_or(|l| l.iter().any(|v| v == value))
        };
        if !listed("authorization_encryption_alg_values_supported", e.alg)
            || !listed("authorization_encryption_enc_values_supported", e.enc)
        {
            return Err(JarmError::Jwe(JweError::Alg));
        }
    }
    let advertised = jws::advertised(&md.document, "authorization_signing_alg_values_supported");
    let x = JarmExpect {
        issuer: client.settings.issuer.as_str(),
        client_id: client.settings.client.client_id.as_str(),
        advertised: advertised.as_deref(),
        clock: Clock::with_skew(clock_skew),
    };
    let http = client.http.load();
    let fetch = JwksFetch {
        http: http.as_ref().as_ref(),
        jwks_uri: md.jwks_uri.as_ref(),
        timeout,
        metrics,
    };
    client.jwks.verify_jarm(&response.jws, &x, &fetch).await
}

#[cfg(test)]
mod tests;
