//! One effective (merged) `client` block and its `dpop` block, apart from `validate.rs` to
//! keep that module in size.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// Pre-signed client assertions kept per AS (`client.assertion_pool`) when the signing key
/// is PS256 (0 otherwise); see benches/results/separate-runs.md for the measurement behind it.
pub const DEFAULT_ASSERTION_POOL: usize = 4;
/// Upper bound of `client.assertion_pool`: each pooled assertion is signed whether or not
/// it is used, and goes stale after the max age.
pub const MAX_ASSERTION_POOL: usize = 16;
/// Default `client.assertion_pool_max_age_seconds` (capped at half the assertion lifetime).
pub const DEFAULT_ASSERTION_POOL_MAX_AGE: u64 = 10;

pub(super) type Secs<'a> = dyn Fn(&str, Option<u64>, u64, u64, u64) -> Result<Duration, ConfigError> + 'a;

/// Checks one effective (merged) client block; `ck` names a key where the user can fix it.
pub(super) fn validate_client(
    c: &file::ClientFile,
    ck: &dyn Fn(&str) -> String,
    invalid: &dyn Fn(&str, String) -> ConfigError,
    resolve: &dyn Fn(&str) -> PathBuf,
    secs: &Secs,
) -> Result<ClientSettings, ConfigError> {
    let required = |sub: &str| invalid(&ck(sub), "required (here or in the shared client block)".into());
    let client_id = c.client_id.as_deref().ok_or_else(|| required("client_id"))?;
    let client_id = ClientId::new(client_id).map_err(|m| invalid(&ck("client_id"), m))?;
    let auth_method = match c.auth_method.as_deref().ok_or_else(|| required("auth_method"))? {
        "private_key_jwt" => AuthMethod::PrivateKeyJwt,
        "tls_client_auth" => AuthMethod::TlsClientAuth,
        other => {
            return Err(invalid(
                &ck("auth_method"),
                format!("`{other}` is not one of private_key_jwt, tls_client_auth"),
            ))
        }
    };
    let mut key_files = c.signing_keys.clone().unwrap_or_default();
    if let Some(k) = c.signing_key.clone() {
        key_files.insert(0, k);
    }
    if key_files.is_empty() {
        return Err(invalid(
            &ck("signing_key"),
            "a signing key is required: it signs the request object (and the client assertion for private_key_jwt)"
                .into(),
        ));
    }
    let mut signing_keys = Vec::new();
    for (i, k) in key_files.iter().enumerate() {
        let alg = Alg::parse(&k.alg).ok_or_else(|| {
            invalid(
                &ck(&format!("signing_keys[{i}].alg")),
                format!("`{}` is not one of PS256, ES256, EdDSA", k.alg),
            )
        })?;
        signing_keys.push(SigningKeyRef {
            path: resolve(&k.path),
            alg,
            kid: k.kid.clone(),
        });
    }
    let request_object_key = match &c.request_object_signing_key {
        Some(k) => Some(SigningKeyRef {
            path: resolve(&k.path),
            alg: Alg::parse(&k.alg).ok_or_else(|| {
                invalid(
                    &ck("request_object_signing_key.alg"),
                    format!("`{}` is not one of PS256, ES256, EdDSA", k.alg),
                )
            })?,
            kid: k.kid.clone(),
        }),
        None => None,
    };
    let transport = c.transport.as_ref().ok_or_else(|| required("transport"))?;
    let jarm = match c.response_mode.as_deref() {
        None => false,
        Some("jwt") | Some("query.jwt") => true,
        Some(other) => {
            return Err(invalid(
                &ck("response_mode"),
                format!("`{other}` is not supported: use jwt (query.jwt), or leave it out"),
            ))
        }
    };
    let sender_constraint = match c.sender_constraint.as_deref() {
        None | Some("mtls") => SenderConstraint::Mtls,
        Some("dpop") => SenderConstraint::Dpop,
        Some(other) => {
            return Err(invalid(
                &ck("sender_constraint"),
                format!("`{other}` is not one of mtls, dpop"),
            ))
        }
    };
    if c.sender_constraint.is_none() && c.dpop.is_some() {
        // A `dpop` block with nothing choosing DPoP is almost certainly a forgotten line.
        return Err(invalid(
            &ck("sender_constraint"),
            "a `dpop` block is set: choose `sender_constraint: dpop` (or `mtls` explicitly to ignore it)".into(),
        ));
    }
    let dpop = match sender_constraint {
        SenderConstraint::Mtls => None,
        SenderConstraint::Dpop => Some(validate_dpop(
            &c.dpop.clone().unwrap_or_default(),
            ck,
            invalid,
            resolve,
        )?),
    };
    // RFC 7523 / UAE: short-lived, at most 5 minutes.
    let assertion_lifetime = secs(
        &ck("assertion_lifetime_seconds"),
        c.assertion_lifetime_seconds,
        60,
        10,
        300,
    )?;
    // On by default only where a signature is slow enough to be worth taking off the login's
    // path: RSA (PS256, ~400 us here). An ES256/EdDSA signature (~15-25 us) costs less than
    // handing work to another thread (measured: benches/results/separate-runs.md).
    let default_pool = if signing_keys[0].alg == Alg::PS256 {
        DEFAULT_ASSERTION_POOL
    } else {
        0
    };
    let assertion_pool = match c.assertion_pool.unwrap_or(default_pool) {
        n @ 0..=MAX_ASSERTION_POOL => n,
        n => {
            return Err(invalid(
                &ck("assertion_pool"),
                format!("{n} is outside 0..={MAX_ASSERTION_POOL} (0 turns the pool off)"),
            ))
        }
    };
    // A pooled assertion keeps at least half its lifetime: the default age bound shrinks
    // with a short lifetime; an explicit one must fit.
    let half_lifetime = assertion_lifetime.as_secs() / 2;
    let assertion_pool_max_age = match c.assertion_pool_max_age_seconds {
        None => Duration::from_secs(DEFAULT_ASSERTION_POOL_MAX_AGE.min(half_lifetime)),
        Some(v) => {
            let max = half_lifetime.min(30);
            if v == 0 || v > max {
                return Err(invalid(
                    &ck("assertion_pool_max_age_seconds"),
                    format!("{v} is outside 1..={max} (at most 30 and half of assertion_lifetime_seconds)"),
                ));
            }
            Duration::from_secs(v)
        }
    };
    Ok(ClientSettings {
        client_id,
        auth_method,
        signing_keys,
        request_object_key,
        transport_cert: resolve(&transport.cert_path),
        transport_key: resolve(&transport.key_path),
        // FAPI 1.0 Adv / Message Signing: exp - nbf <= 3600; 300 s is the usual recommendation.
        request_object_lifetime: secs(
            &ck("request_object_lifetime_seconds"),
            c.request_object_lifetime_seconds,
            300,
            10,
            3600,
        )?,
        assertion_lifetime,
        assertion_pool,
        assertion_pool_max_age,
        jarm,
        sender_constraint,
        dpop,
        allowed_authorize_parameters: match &c.allowed_authorize_parameters {
            None => None,
            Some(names) => Some(
                super::validate_login::authorize_parameter_names(names)
                    .map_err(|m| invalid(&ck("allowed_authorize_parameters"), m))?,
            ),
        },
        encryption_keys: super::validate_enc::encryption_keys(c, ck, invalid, resolve)?,
    })
}

fn validate_dpop(
    d: &file::DpopFile,
    ck: &dyn Fn(&str) -> String,
    invalid: &dyn Fn(&str, String) -> ConfigError,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<DpopSettings, ConfigError> {
    let key = d.key.clone().unwrap_or(file::DpopKeyFile { path: None, alg: None });
    let alg = match (&key.alg, &key.path) {
        (Some(a), _) => Alg::parse(a)
            .ok_or_else(|| invalid(&ck("dpop.key.alg"), format!("`{a}` is not one of PS256, ES256, EdDSA")))?,
        (None, Some(_)) => {
            return Err(invalid(
                &ck("dpop.key.alg"),
                "required with `path`: PS256, ES256 or EdDSA".into(),
            ))
        }
        (None, None) => Alg::ES256,
    };
    let token_type_to_app = match d.token_type_to_app.as_deref() {
        None | Some("bearer") => TokenTypeToApp::Bearer,
        Some("dpop") => TokenTypeToApp::Dpop,
        Some(other) => {
            return Err(invalid(
                &ck("dpop.token_type_to_app"),
                format!("`{other}` is not one of bearer, dpop"),
            ))
        }
    };
    Ok(DpopSettings {
        key_path: key.path.as_deref().map(resolve),
        alg,
        token_type_to_app,
    })
}
