//! The AS's token response, checked before the app sees any token (FAPI 2.0 Message
//! Signing client rules): the response's shape, and the ID token (signature with the AS's
//! JWKS, alg, iss, aud/azp, sub, exp/iat/nbf, nonce of that login, auth_time for max_age),
//! present on an OpenID login's code response, and on a refresh naming the `sub` the refresh
//! token was issued for. A refused response never reaches the app; the tokens in it are
//! revoked at the AS, best effort.

use std::sync::Arc;

use serde_json::Value;
use tracing::{info, warn};

use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::http_client::AsRequest;
use crate::as_client::id_token::{self, IdTokenError, IdTokenExpectations};
use crate::as_client::jwe::{self, JweError};
use crate::as_client::jws::{JwksFetch, JwsError};
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::now_secs;
use crate::config::IdTokenHandover;
use crate::handoff::{CodeRecord, RefreshSubjects};
use crate::metrics::Metrics;
use crate::protocol::secret::Secret;
use crate::protocol::AsIndex;

/// Which grant produced the response: what the ID token must match.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// The login's nonce and max_age apply.
    Code(&'a CodeRecord),
    /// An ID token is optional and carries no nonce requirement; when present, its `sub`
    /// must be the one the presented refresh token was issued for.
    Refresh(Option<&'a str>),
    /// Consent creation (UK, Brazil, KSA): no user, so no ID token is expected; the
    /// response's shape is checked (and an ID token, should the AS send one, verified).
    ClientCredentials,
    Other,
}

impl Grant<'_> {
    pub fn label(&self) -> &'static str {
        match self {
            Grant::Code(_) => "authorization_code",
            Grant::Refresh(_) => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::Other => "other",
        }
    }
}

#[derive(Debug)]
pub enum TokenResponseError {
    NotJson,
    AccessTokenMissing,
    TokenType(String),
    /// DPoP was required (`sender_constraint: dpop`) and the AS issued another type (TOK-6).
    NotDpopBound(String),
    IdToken(IdTokenError),
    Jwks(String),
    /// An OpenID login's code response without an `id_token` (OIDC Core §3.1.3.3).
    IdTokenMissing,
    /// A refresh response's ID token names another user than the refresh token was issued to.
    SubMismatch,
    /// The ID token lacks a claim value the login requested in `claims` (the claim's name).
    ClaimValue(String),
    /// An encrypted ID token (JWE) that could not be decrypted: which rule it broke.
    Jwe(JweError),
    /// The decrypted ID token is not a compact JWS (a nested JWT must be signed).
    JweInner,
    /// A plain ID token from an AS whose profile says it encrypts them (Singpass, Corppass).
    JweRequired,
}

impl TokenResponseError {
    /// Bounded metric label: the failed check.
    pub fn label(&self) -> &'static str {
        match self {
            TokenResponseError::NotJson => "not_json",
            TokenResponseError::AccessTokenMissing => "access_token_missing",
            TokenResponseError::TokenType(_) => "token_type",
            TokenResponseError::NotDpopBound(_) => "token_not_dpop_bound",
            TokenResponseError::IdToken(e) => e.check.label(),
            TokenResponseError::Jwks(_) => "jwks_unavailable",
            TokenResponseError::IdTokenMissing => "id_token_missing",
            TokenResponseError::SubMismatch => "sub_mismatch",
            TokenResponseError::ClaimValue(_) => "claim_value",
            TokenResponseError::Jwe(e) => e.check(),
            TokenResponseError::JweInner => "jwe_inner",
            TokenResponseError::JweRequired => "jwe_required",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            TokenResponseError::NotJson => "the token response is not a JSON object".into(),
            TokenResponseError::AccessTokenMissing => "the token response has no access_token".into(),
            TokenResponseError::TokenType(t) => format!("token_type `{t}` is not Bearer or DPoP"),
            TokenResponseError::NotDpopBound(t) => {
                format!("DPoP is required for this AS but the token_type is `{t}`: the token is not DPoP-bound")
            }
            TokenResponseError::IdToken(e) => format!("ID token refused: {e}"),
            TokenResponseError::Jwks(e) => format!("the AS key set is unavailable: {e}"),
            TokenResponseError::IdTokenMissing => {
                "the login was an OpenID one (scope openid or a nonce) but the code response has no id_token".into()
            }
            TokenResponseError::SubMismatch => {
                "the refresh response's ID token names another sub than the one the refresh token was issued for".into()
            }
            TokenResponseError::ClaimValue(name) => {
                format!("the ID token does not carry the value requested in claims for {name}")
            }
            TokenResponseError::Jwe(e) => match e {
                JweError::Malformed => "the encrypted ID token is not a well-formed compact JWE".into(),
                JweError::Alg => "the encrypted ID token's alg/enc is not allowed, or it has zip or crit".into(),
                JweError::Key => "no configured encryption key matches the encrypted ID token's kid and alg".into(),
                JweError::Decrypt => "the encrypted ID token does not decrypt with the configured key".into(),
            },
            TokenResponseError::JweInner => "the decrypted ID token is not a signed JWT (compact JWS)".into(),
            TokenResponseError::JweRequired => {
                "the ID token is not encrypted, but this AS's profile says its ID tokens are (a JWS in a JWE)".into()
            }
        }
    }
}

/// RFC 6749 §5.1: an access token and its type (compared case-insensitively, §7.1); a
/// missing `expires_in` is fine.
/// With `expect_dpop`, only `DPoP` is accepted: a `Bearer` answer to a DPoP token request
/// is a token without the binding FAPI requires (RFC 9449 §5, TOK-6).
fn check_shape(doc: &serde_json::Map<String, Value>, expect_dpop: bool) -> Result<(), TokenResponseError> {
    if doc
        .get("access_token")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(TokenResponseError::AccessTokenMissing);
    }
    let token_type = doc.get("token_type").and_then(Value::as_str).unwrap_or("");
    if !token_type.eq_ignore_ascii_case("bearer") && !token_type.eq_ignore_ascii_case("dpop") {
        return Err(TokenResponseError::TokenType(token_type.chars().take(20).collect()));
    }
    if expect_dpop && !token_type.eq_ignore_ascii_case("dpop") {
        return Err(TokenResponseError::NotDpopBound(token_type.chars().take(20).collect()));
    }
    Ok(())
}

/// What a token-response check reads from the sidecar beyond the AS client: lent by the
/// composition root (`Sidecar::check_env`), so this plane never imports it.
pub struct CheckEnv<'a> {
    pub metrics: &'a Metrics,
    /// Bound on a JWKS fetch made during the check.
    pub fetch_timeout: std::time::Duration,
    /// Clock skew allowed on `exp`/`iat`/`nbf`/`auth_time`, seconds.
    pub clock_skew: u64,
    pub refresh_subjects: &'a RefreshSubjects,
}

/// A refused token response: the failed check, and the tokens it carried (to revoke).
pub type Refused = (TokenResponseError, Vec<(String, &'static str)>);

impl AsClient {
    /// Checks one 200 token response of this AS. On success, returns the body the app must
    /// get instead when it differs (an encrypted ID token replaced by its verified inner
    /// JWS). On failure, also returns the tokens it carried, for
    /// [`AsClient::revoke_in_background`].
    pub async fn check_token_response(
        &self,
        env: &CheckEnv<'_>,
        md: &ProviderMetadata,
        grant: Grant<'_>,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, Refused> {
        check(env, self, md, grant, body).await
    }

    /// Revokes the tokens of a refused response at this AS (RFC 7009), in the background:
    /// the app already has its error; failures are logged and counted, never retried.
    pub fn revoke_in_background(
        self: &Arc<Self>,
        md: &ProviderMetadata,
        metrics: Arc<Metrics>,
        tokens: Vec<(String, &'static str)>,
        interaction_id: String,
    ) {
        revoke_in_background(self.clone(), md, metrics, tokens, interaction_id)
    }
}

/// [`AsClient::check_token_response`].
async fn check(
    env: &CheckEnv<'_>,
    client: &AsClient,
    md: &ProviderMetadata,
    grant: Grant<'_>,
    body: &[u8],
) -> Result<Option<Vec<u8>>, Refused> {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return Err((TokenResponseError::NotJson, Vec::new()));
    };
    let text = |k: &str| doc.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let mut issued = Vec::new();
    if let Some(t) = text("access_token") {
        issued.push((t.to_string(), "access_token"));
    }
    if let Some(t) = text("refresh_token") {
        issued.push((t.to_string(), "refresh_token"));
    }
    let fail = |e| Err((e, issued.clone()));
    if let Err(e) = check_shape(&doc, client.settings.client.dpop.is_some()) {
        return fail(e);
    }
    // Present but not a JWT string (`123`, `{}`, `""`): refused, never handed on.
    let mut inner = None;
    let sub = match doc.get("id_token") {
        None if matches!(grant, Grant::Code(rec) if openid_login(rec, &doc)) => {
            return fail(TokenResponseError::IdTokenMissing)
        }
        None => None,
        Some(Value::String(s)) if !s.is_empty() => {
            inner = match decrypted_id_token(client, md, s) {
                Ok(inner) => inner,
                Err(e) => return fail(e),
            };
            match verified_sub(env, client, md, grant, inner.as_deref().unwrap_or(s)).await {
                Ok(sub) => Some(sub),
                Err(e) => return fail(e),
            }
        }
        Some(_) => {
            return fail(TokenResponseError::IdToken(id_token::IdTokenError {
                check: id_token::IdTokenCheck::Malformed,
                detail: "id_token is not a JWS string".into(),
            }))
        }
    };
    match track_subject(
        env.refresh_subjects,
        client.index,
        grant,
        text("refresh_token"),
        sub.as_deref(),
    ) {
        // `original`: the app decrypts the JWE itself; it was checked all the same.
        Ok(()) if client.settings.client.id_token_handover == IdTokenHandover::Original => Ok(None),
        Ok(()) => Ok(inner.map(|jws| with_id_token(doc, jws))),
        Err(e) => fail(e),
    }
}

/// An ID token that is a JWE (five parts) when this AS has encryption keys: decrypted with
/// the key its `kid` names, and the inner JWS returned for the usual checks. `None`: not
/// encrypted, or no key configured (then a JWE fails the JWS checks as `malformed`).
/// An AS whose metadata lists `id_token_encryption_{alg,enc}_values_supported` must have used
/// one of those (`jwe_alg`); metadata without the lists does not restrict.
fn decrypted_id_token(
    client: &AsClient,
    md: &ProviderMetadata,
    token: &str,
) -> Result<Option<String>, TokenResponseError> {
    if !jwe::is_compact_jwe(token) {
        // A profile that says the AS encrypts refuses the plain token: accepting it would let
        // a downgrade (or a misconfigured AS) put a cleartext ID token through the browser's
        // app unnoticed.
        if client.settings.id_token_encrypted {
            return Err(TokenResponseError::JweRequired);
        }
        return Ok(None);
    }
    let keys = client.keys.load().decryption_keys();
    if keys.is_empty() {
        return Ok(None);
    }
    let (alg, enc) = jwe::peek_algs(token).map_err(TokenResponseError::Jwe)?;
    let listed = |field: &str, value: &str| match md.document.get(field) {
        Some(Value::Array(v)) => v.iter().any(|x| x.as_str() == Some(value)),
        _ => true,
    };
    if !listed("id_token_encryption_alg_values_supported", alg.as_str())
        || !listed("id_token_encryption_enc_values_supported", enc.as_str())
    {
        return Err(TokenResponseError::Jwe(JweError::Alg));
    }
    let plaintext = jwe::decrypt(token, &keys).map_err(TokenResponseError::Jwe)?;
    let inner = jwe::nested_jws(plaintext).ok_or(TokenResponseError::JweInner)?;
    Ok(Some(inner))
}

/// The token response with `id_token` replaced: a legacy app knows no JWE.
fn with_id_token(mut doc: serde_json::Map<String, Value>, jws: String) -> Vec<u8> {
    doc.insert("id_token".into(), Value::String(jws));
    serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
}

/// An OpenID login: the token response grants `openid`, or the login pushed a `nonce` (an
/// OpenID Connect parameter, OAuth 2.0 has none). Its code response must carry an ID token,
/// else a legacy app would take the user's identity from elsewhere (userinfo) unchecked.
fn openid_login(rec: &CodeRecord, doc: &serde_json::Map<String, Value>) -> bool {
    let scope = doc.get("scope").and_then(Value::as_str).unwrap_or("");
    rec.nonce.is_some() || scope.split(' ').any(|s| s == "openid")
}

/// Verifies the ID token on the shared JWS path (the AS's JWKS, refetched once should the AS
/// have replaced a key under the same kid), then its claim rules; returns its `sub`.
async fn verified_sub(
    env: &CheckEnv<'_>,
    client: &AsClient,
    md: &ProviderMetadata,
    grant: Grant<'_>,
    jwt: &str,
) -> Result<String, TokenResponseError> {
    let (nonce, max_age) = match grant {
        Grant::Code(rec) => (rec.nonce.as_ref().map(Secret::expose), rec.max_age),
        _ => (None, None),
    };
    let expect = IdTokenExpectations {
        issuer: client.settings.issuer.as_str(),
        client_id: client.settings.client.client_id.as_str(),
        advertised_algs: md.id_token_signing_alg_values_supported.as_deref(),
        nonce,
        max_age,
        skew: env.clock_skew,
        now: now_secs(),
    };
    let http = client.http.load();
    let fetch = JwksFetch {
        http: http.as_ref().as_ref(),
        jwks_uri: md.jwks_uri.as_ref(),
        timeout: env.fetch_timeout,
        metrics: env.metrics,
    };
    let claims = match client.jwks.verify_jws(jwt, expect.advertised_algs, &fetch).await {
        Ok(c) => c,
        Err(JwsError::Jwks(e)) => return Err(TokenResponseError::Jwks(e)),
        Err(e) => return Err(TokenResponseError::IdToken(id_token::refused(e))),
    };
    id_token::check_claims(&claims, &expect).map_err(TokenResponseError::IdToken)?;
    if let Grant::Code(rec) = grant {
        check_claim_values(rec, &claims)?;
    }
    // validate() refuses a token without a non-empty string sub.
    Ok(claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string())
}

/// OIDC Core §5.5.1: a claim requested with a `value` must come back with that value
/// (`claim_values`; the intent id of UK, Brazil and KSA consents).
fn check_claim_values(rec: &CodeRecord, claims: &serde_json::Map<String, Value>) -> Result<(), TokenResponseError> {
    let Some(requested) = &rec.claim_values else {
        return Ok(());
    };
    match crate::as_client::claim_values::mismatch(requested, claims) {
        // The name comes from the app's own request, bounded to 64 bytes; escaped for the log.
        Some(name) => Err(TokenResponseError::ClaimValue(format!("{name:?}"))),
        None => Ok(()),
    }
}

fn sha256(s: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// OIDC Core §12.2: a refresh response's ID token has the original `sub`. The sidecar saw
/// the response that issued the refresh token, so it remembers that token's `sub` and
/// compares; the subject is carried over to a rotated refresh token (or kept for a reused
/// one). A refresh token it never saw (restart, evicted) cannot be checked and passes.
fn track_subject(
    subjects: &RefreshSubjects,
    as_index: AsIndex,
    grant: Grant<'_>,
    issued_refresh_token: Option<&str>,
    sub: Option<&str>,
) -> Result<(), TokenResponseError> {
    let presented = match grant {
        Grant::Refresh(p) => p.filter(|p| !p.is_empty()),
        Grant::Code(_) => None,
        Grant::ClientCredentials | Grant::Other => return Ok(()),
    };
    let original = presented.and_then(|p| subjects.take(&(as_index, sha256(p))));
    let sub = sub.map(sha256);
    if let (Some(o), Some(s)) = (original, sub) {
        if aws_lc_rs::constant_time::verify_slices_are_equal(&o, &s).is_err() {
            return Err(TokenResponseError::SubMismatch);
        }
    }
    if let (Some(subject), Some(rt)) = (original.or(sub), issued_refresh_token.or(presented)) {
        subjects.insert_new((as_index, sha256(rt)), subject);
    }
    Ok(())
}

/// [`AsClient::revoke_in_background`].
fn revoke_in_background(
    client: Arc<AsClient>,
    md: &ProviderMetadata,
    metrics: Arc<Metrics>,
    tokens: Vec<(String, &'static str)>,
    interaction_id: String,
) {
    let Some(url) = md.revocation_endpoint.clone() else {
        return;
    };
    tokio::spawn(async move {
        for (token, hint) in tokens {
            // Like every egress call: the permit first, then the assertion is signed.
            let permit = tokio::time::timeout(client.settings.par_timeout, client.egress_permits.acquire()).await;
            let Ok(Ok(_permit)) = permit else {
                metrics
                    .token_revocations
                    .with_label_values(&[client.name(), "overloaded"])
                    .inc();
                warn!(interaction_id = %interaction_id, r#as = client.name(), token_type_hint = hint, "could not revoke a token from a refused token response: too many calls to the AS");
                continue;
            };
            let outcome = match client.client_auth(&metrics).await {
                Err(_) => "signing_failed",
                Ok(mut form) => {
                    form.push(("token".into(), token));
                    form.push(("token_type_hint".into(), hint.into()));
                    let req = AsRequest {
                        method: http::Method::POST,
                        url: url.clone(),
                        headers: vec![
                            ("accept".into(), "application/json".into()),
                            ("x-fapi-interaction-id".into(), interaction_id.clone()),
                        ],
                        form: Some(form),
                        body: None,
                        timeout: client.settings.par_timeout,
                    };
                    match client.http.load().send(req).await {
                        Ok(r) if r.status == 200 => "success",
                        Ok(_) => "as_error",
                        Err(e) => e.label(),
                    }
                }
            };
            metrics
                .token_revocations
                .with_label_values(&[client.name(), outcome])
                .inc();
            if outcome == "success" {
                info!(interaction_id = %interaction_id, r#as = client.name(), token_type_hint = hint, "revoked a token from a refused token response");
            } else {
                warn!(interaction_id = %interaction_id, r#as = client.name(), token_type_hint = hint, outcome, "could not revoke a token from a refused token response");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::{refresh_subjects, REFRESH_SUBJECTS};

    fn shape(v: Value) -> Result<(), &'static str> {
        check_shape(v.as_object().unwrap(), false).map_err(|e| e.label())
    }

    #[test]
    fn token_response_shape() {
        use serde_json::json;
        assert_eq!(
            shape(json!({"access_token": "a", "token_type": "Bearer", "expires_in": 60})),
            Ok(())
        );
        // Conformance TokenTypeCaseInsensitivity and TokenEndpointResponseWithoutExpiresIn.
        assert_eq!(shape(json!({"access_token": "a", "token_type": "bEaReR"})), Ok(()));
        assert_eq!(shape(json!({"access_token": "a", "token_type": "DPoP"})), Ok(()));
        assert_eq!(shape(json!({"token_type": "Bearer"})), Err("access_token_missing"));
        assert_eq!(
            shape(json!({"access_token": "", "token_type": "Bearer"})),
            Err("access_token_missing")
        );
        assert_eq!(
            shape(json!({"access_token": 7, "token_type": "Bearer"})),
            Err("access_token_missing")
        );
        assert_eq!(shape(json!({"access_token": "a"})), Err("token_type"));
        assert_eq!(
            shape(json!({"access_token": "a", "token_type": "mac"})),
            Err("token_type")
        );
    }

    fn record(nonce: Option<&str>) -> CodeRecord {
        CodeRecord {
            as_index: AsIndex::new(0),
            verifier: None,
            redirect_uri: None,
            nonce: nonce.map(Secret::new),
            max_age: None,
            claim_values: None,
        }
    }

    #[test]
    fn an_openid_login_needs_an_id_token() {
        use serde_json::json;
        let doc = |v: Value| v.as_object().unwrap().clone();
        let plain = doc(json!({"access_token": "a", "token_type": "Bearer"}));
        assert!(!openid_login(&record(None), &plain));
        assert!(openid_login(&record(Some("n-1")), &plain));
        let scoped = doc(json!({"access_token": "a", "token_type": "Bearer", "scope": "accounts openid"}));
        assert!(openid_login(&record(None), &scoped));
        let other = doc(json!({"access_token": "a", "token_type": "Bearer", "scope": "openidx accounts"}));
        assert!(!openid_login(&record(None), &other));
    }

    #[test]
    fn a_refresh_keeps_the_sub_the_refresh_token_was_issued_for() {
        let m = refresh_subjects();
        let rec = record(Some("n"));
        // The code response issued rt-1 for u1.
        assert!(track_subject(&m, AsIndex::new(0), Grant::Code(&rec), Some("rt-1"), Some("u1")).is_ok());
        // Another AS's refresh token of the same value is another entry.
        assert!(track_subject(&m, AsIndex::new(1), Grant::Refresh(Some("rt-1")), None, Some("u9")).is_ok());
        // Same sub, rotated to rt-2: the subject moves with it.
        assert!(track_subject(
            &m,
            AsIndex::new(0),
            Grant::Refresh(Some("rt-1")),
            Some("rt-2"),
            Some("u1")
        )
        .is_ok());
        // No ID token in this refresh response: rt-2 keeps u1, now as rt-3.
        assert!(track_subject(&m, AsIndex::new(0), Grant::Refresh(Some("rt-2")), Some("rt-3"), None).is_ok());
        // rt-3 answered with another user's ID token: refused.
        assert!(matches!(
            track_subject(
                &m,
                AsIndex::new(0),
                Grant::Refresh(Some("rt-3")),
                Some("rt-4"),
                Some("u2")
            ),
            Err(TokenResponseError::SubMismatch)
        ));
        // A non-rotating AS: the presented token keeps its subject.
        assert!(track_subject(&m, AsIndex::new(0), Grant::Code(&rec), Some("rt-x"), Some("u5")).is_ok());
        assert!(track_subject(&m, AsIndex::new(0), Grant::Refresh(Some("rt-x")), None, Some("u5")).is_ok());
        assert!(matches!(
            track_subject(&m, AsIndex::new(0), Grant::Refresh(Some("rt-x")), None, Some("u6")),
            Err(TokenResponseError::SubMismatch)
        ));
        // A refresh token never seen (before a restart): nothing to compare.
        assert!(track_subject(&m, AsIndex::new(0), Grant::Refresh(Some("unknown")), None, Some("u7")).is_ok());
        assert!(track_subject(&m, AsIndex::new(0), Grant::Other, Some("rt-o"), Some("u8")).is_ok());
    }

    #[test]
    fn the_subject_map_is_bounded() {
        let m = refresh_subjects();
        let rec = record(None);
        for i in 0..REFRESH_SUBJECTS + 100 {
            let rt = format!("rt-{i}");
            track_subject(&m, AsIndex::new(0), Grant::Code(&rec), Some(&rt), Some("u")).unwrap();
        }
        assert!(m.len() <= REFRESH_SUBJECTS);
    }

    #[test]
    fn dpop_required_refuses_a_bearer_token() {
        use serde_json::json;
        let dpop = |v: Value| check_shape(v.as_object().unwrap(), true).map_err(|e| e.label());
        assert_eq!(dpop(json!({"access_token": "a", "token_type": "dpop"})), Ok(()));
        assert_eq!(
            dpop(json!({"access_token": "a", "token_type": "Bearer"})),
            Err("token_not_dpop_bound")
        );
    }
}
