//! One effective (merged) `client` block and its `dpop` block, apart from `validate.rs` to
//! keep that module in size.

use std::time::Duration;

use super::file::Choice;
use super::validate_ctx::Ctx;
use super::*;

/// Pre-signed client assertions kept per AS (`client.assertion_pool`) when the signing key
/// is PS256 (0 otherwise); see benches/results/separate-runs.md for the measurement behind it.
pub const DEFAULT_ASSERTION_POOL: usize = 4;
/// Upper bound of `client.assertion_pool`: each pooled assertion is signed whether or not
/// it is used, and goes stale after the max age.
pub const MAX_ASSERTION_POOL: usize = 16;
/// Default `client.assertion_pool_max_age_seconds` (capped at half the assertion lifetime).
pub const DEFAULT_ASSERTION_POOL_MAX_AGE: u64 = 10;

/// Names a client key where the user can fix it (`client.x` or `authorization_servers[i].client.x`).
pub(super) type KeyName<'a> = dyn Fn(&str) -> String + 'a;

/// Checks one effective (merged) client block; `None` when anything is wrong (recorded).
pub(super) fn validate_client(c: &file::ClientFile, ck: &KeyName, cx: &Ctx) -> Option<ClientSettings> {
    let required = |sub: &str| cx.add(&ck(sub), "required (here or in the shared client block)");
    let client_id = match c.client_id.as_deref() {
        Some(id) => cx.check(&ck("client_id"), ClientId::new(id)),
        None => {
            required("client_id");
            None
        }
    };
    let auth_method = match c.auth_method.as_ref().map(Choice::value) {
        Some(Ok(m)) => Some(m),
        Some(Err(other)) => {
            cx.add(
                &ck("auth_method"),
                format!("`{other}` is not one of private_key_jwt, tls_client_auth"),
            );
            None
        }
        None => {
            required("auth_method");
            None
        }
    };
    let signing_keys = signing_keys(c, ck, cx);
    if c.transport.is_none() {
        required("transport");
    }
    let jarm = match c.response_mode.as_ref().map(Choice::value) {
        None => Some(false),
        Some(Ok(file::ResponseMode::Jwt)) => Some(true),
        Some(Err(other)) => {
            cx.add(
                &ck("response_mode"),
                format!("`{other}` is not supported: use jwt (query.jwt), or leave it out"),
            );
            None
        }
    };
    let constraint = sender_constraint(c, ck, cx);
    // RFC 7523 / UAE: short-lived, at most 5 minutes.
    let assertion_lifetime = cx.secs(
        &ck("assertion_lifetime_seconds"),
        c.assertion_lifetime_seconds,
        60,
        10,
        300,
    );
    let pool = assertion_pool(c, signing_keys.as_ref(), assertion_lifetime, ck, cx);
    let allowed_authorize_parameters = match &c.allowed_authorize_parameters {
        None => Some(None),
        Some(names) => cx
            .check(
                &ck("allowed_authorize_parameters"),
                super::validate_login::authorize_parameter_names(names),
            )
            .map(Some),
    };
    let encryption_keys = cx.take(super::validate_enc::encryption_keys(
        c,
        ck,
        &|k, m| cx.invalid(k, m),
        &|p| cx.resolve(p),
    ));
    let id_token_handover = cx.take(super::validate_enc::id_token_handover(c, ck, &|k, m| cx.invalid(k, m)));
    // FAPI 1.0 Adv / Message Signing: exp - nbf <= 3600; 300 s is the usual recommendation.
    let request_object_lifetime = cx.secs(
        &ck("request_object_lifetime_seconds"),
        c.request_object_lifetime_seconds,
        300,
        10,
        3600,
    );
    let transport = c.transport.as_ref()?;
    let (signing_keys, request_object_key) = signing_keys?;
    let (assertion_pool, assertion_pool_max_age) = pool?;
    let (sender_constraint, dpop) = constraint?;
    Some(ClientSettings {
        client_id: client_id?,
        auth_method: auth_method?,
        signing_keys,
        request_object_key,
        transport_cert: cx.resolve(&transport.cert_path),
        transport_key: cx.resolve(&transport.key_path),
        request_object_lifetime: request_object_lifetime?,
        assertion_lifetime: assertion_lifetime?,
        assertion_pool,
        assertion_pool_max_age,
        jarm: jarm?,
        sender_constraint,
        dpop,
        allowed_authorize_parameters: allowed_authorize_parameters?,
        encryption_keys: encryption_keys?,
        id_token_handover: id_token_handover?,
    })
}

type SigningKeys = (Vec<SigningKeyRef>, Option<SigningKeyRef>);

/// `signing_key` first, then `signing_keys`; and `request_object_signing_key`.
fn signing_keys(c: &file::ClientFile, ck: &KeyName, cx: &Ctx) -> Option<SigningKeys> {
    let key = |k: &file::SigningKeyFile, key: &str| {
        let alg = Alg::parse(&k.alg);
        if alg.is_none() {
            cx.add(
                &ck(key),
                format!("`{}` is not one of PS256, ES256, ES384, ES512, EdDSA", k.alg),
            );
        }
        Some(SigningKeyRef {
            path: cx.resolve(&k.path),
            alg: alg?,
            kid: k.kid.clone(),
        })
    };
    let mut key_files = c.signing_keys.clone().unwrap_or_default();
    if let Some(k) = c.signing_key.clone() {
        key_files.insert(0, k);
    }
    if key_files.is_empty() {
        cx.add(
            &ck("signing_key"),
            "a signing key is required: it signs the request object (and the client assertion for private_key_jwt)",
        );
    }
    let signing: Vec<Option<SigningKeyRef>> = key_files
        .iter()
        .enumerate()
        .map(|(i, k)| key(k, &format!("signing_keys[{i}].alg")))
        .collect();
    let request_object_key = match &c.request_object_signing_key {
        Some(k) => Some(key(k, "request_object_signing_key.alg")?),
        None => None,
    };
    let signing = signing.into_iter().collect::<Option<Vec<_>>>()?;
    (!signing.is_empty()).then_some((signing, request_object_key))
}

/// `sender_constraint` and, for DPoP, the `dpop` block.
fn sender_constraint(c: &file::ClientFile, ck: &KeyName, cx: &Ctx) -> Option<(SenderConstraint, Option<DpopSettings>)> {
    let sender_constraint = match c.sender_constraint.as_ref().map(Choice::value) {
        None => SenderConstraint::Mtls,
        Some(Ok(s)) => s,
        Some(Err(other)) => {
            cx.add(&ck("sender_constraint"), format!("`{other}` is not one of mtls, dpop"));
            return None;
        }
    };
    if c.sender_constraint.is_none() && c.dpop.is_some() {
        // A `dpop` block with nothing choosing DPoP is almost certainly a forgotten line.
        cx.add(
            &ck("sender_constraint"),
            "a `dpop` block is set: choose `sender_constraint: dpop` (or `mtls` explicitly to ignore it)",
        );
        return None;
    }
    let dpop = match sender_constraint {
        SenderConstraint::Mtls => None,
        SenderConstraint::Dpop => Some(validate_dpop(&c.dpop.clone().unwrap_or_default(), ck, cx)?),
    };
    Some((sender_constraint, dpop))
}

/// `assertion_pool` and `assertion_pool_max_age_seconds`, whose defaults follow the first
/// signing key's alg and the assertion lifetime.
fn assertion_pool(
    c: &file::ClientFile,
    signing: Option<&SigningKeys>,
    assertion_lifetime: Option<Duration>,
    ck: &KeyName,
    cx: &Ctx,
) -> Option<(usize, Duration)> {
    // On by default only where a signature is slow enough to be worth taking off the login's
    // path: RSA (PS256, ~400 us here), ES384/ES512 (P-384/P-521, as slow or slower). An
    // ES256/EdDSA signature (~15-25 us) costs less than handing work to another thread
    // (measured: benches/results/separate-runs.md).
    let default_pool = match signing {
        Some((keys, _)) if keys[0].alg.signs_slowly() => DEFAULT_ASSERTION_POOL,
        _ => 0,
    };
    let pool = match c.assertion_pool.unwrap_or(default_pool) {
        n @ 0..=MAX_ASSERTION_POOL => Some(n),
        n => {
            cx.add(
                &ck("assertion_pool"),
                format!("{n} is outside 0..={MAX_ASSERTION_POOL} (0 turns the pool off)"),
            );
            None
        }
    };
    // A pooled assertion keeps at least half its lifetime: the default age bound shrinks
    // with a short lifetime; an explicit one must fit.
    let half_lifetime = assertion_lifetime?.as_secs() / 2;
    let max_age = match c.assertion_pool_max_age_seconds {
        None => Duration::from_secs(DEFAULT_ASSERTION_POOL_MAX_AGE.min(half_lifetime)),
        Some(v) => {
            let max = half_lifetime.min(30);
            if v == 0 || v > max {
                cx.add(
                    &ck("assertion_pool_max_age_seconds"),
                    format!("{v} is outside 1..={max} (at most 30 and half of assertion_lifetime_seconds)"),
                );
                return None;
            }
            Duration::from_secs(v)
        }
    };
    Some((pool?, max_age))
}

fn validate_dpop(d: &file::DpopFile, ck: &KeyName, cx: &Ctx) -> Option<DpopSettings> {
    let key = d.key.clone().unwrap_or(file::DpopKeyFile { path: None, alg: None });
    let alg = match (&key.alg, &key.path) {
        (Some(a), _) => {
            let alg = Alg::parse(a);
            if alg.is_none() {
                cx.add(
                    &ck("dpop.key.alg"),
                    format!("`{a}` is not one of PS256, ES256, ES384, ES512, EdDSA"),
                );
            }
            alg
        }
        (None, Some(_)) => {
            cx.add(
                &ck("dpop.key.alg"),
                "required with `path`: PS256, ES256, ES384, ES512 or EdDSA",
            );
            None
        }
        (None, None) => Some(Alg::ES256),
    };
    let token_type_to_app = match d.token_type_to_app.as_ref().map(Choice::value) {
        None => Some(TokenTypeToApp::Bearer),
        Some(Ok(t)) => Some(t),
        Some(Err(other)) => {
            cx.add(
                &ck("dpop.token_type_to_app"),
                format!("`{other}` is not one of bearer, dpop"),
            );
            None
        }
    };
    Some(DpopSettings {
        key_path: key.path.as_deref().map(|p| cx.resolve(p)),
        alg: alg?,
        token_type_to_app: token_type_to_app?,
    })
}
