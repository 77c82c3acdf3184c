//! The AS's token response, checked before the app sees any token (FAPI 2.0 Message
//! Signing client rules): the response's shape, and the ID token (signature with the AS's
//! JWKS, alg, iss, aud/azp, exp/iat, nonce of that login, auth_time for max_age). A refused
//! response never reaches the app; the tokens in it are revoked at the AS, best effort.

use std::sync::Arc;

use serde_json::Value;
use tracing::{info, warn};

use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::http_client::AsRequest;
use crate::as_client::id_token::{self, IdTokenError, IdTokenExpectations};
use crate::as_client::par::client_auth_form;
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::now_secs;
use crate::ops::metrics::Metrics;
use crate::state::{CodeRecord, SidecarState};

/// Which grant produced the response: what the ID token must match.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// The login's nonce and max_age apply.
    Code(&'a CodeRecord),
    /// An ID token is optional and carries no nonce requirement.
    Refresh,
    Other,
}

impl Grant<'_> {
    pub fn label(&self) -> &'static str {
        match self {
            Grant::Code(_) => "authorization_code",
            Grant::Refresh => "refresh_token",
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

/// Checks one 200 token response. On failure, also returns the tokens it carried so the
/// caller can have them revoked.
pub async fn check(
    state: &SidecarState,
    client: &AsClient,
    md: &ProviderMetadata,
    grant: Grant<'_>,
    body: &[u8],
) -> Result<(), (TokenResponseError, Vec<(String, &'static str)>)> {
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
    let jwt = match doc.get("id_token") {
        None => return Ok(()),
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        Some(_) => {
            return fail(TokenResponseError::IdToken(id_token::IdTokenError {
                check: id_token::IdTokenCheck::Malformed,
                detail: "id_token is not a JWS string".into(),
            }))
        }
    };
    let kid = match id_token::header_kid(jwt) {
        Ok(k) => k,
        Err(e) => return fail(TokenResponseError::IdToken(e)),
    };
    let http = client.http.load();
    let jwks = match client
        .jwks
        .key_set(
            kid.as_deref(),
            http.as_ref().as_ref(),
            md.jwks_uri.as_ref(),
            state.settings.discovery_timeout,
            &state.metrics,
        )
        .await
    {
        Ok(j) => j,
        Err(e) => return fail(TokenResponseError::Jwks(e.to_string())),
    };
    let (nonce, max_age) = match grant {
        Grant::Code(rec) => (rec.nonce.as_deref(), rec.max_age),
        _ => (None, None),
    };
    let expect = IdTokenExpectations {
        issuer: client.settings.issuer.as_str(),
        client_id: client.settings.client.client_id.as_str(),
        advertised_algs: md.id_token_signing_alg_values_supported.as_deref(),
        nonce,
        max_age,
        skew: state.settings.clock_skew,
        now: now_secs(),
    };
    match id_token::validate(jwt, &jwks, &expect) {
        Ok(_) => Ok(()),
        // The AS may have replaced its key under the same kid: verify once more if a
        // (rate-limited) refetch brings a new set.
        Err(e) if e.check == id_token::IdTokenCheck::Signature => {
            let fresh = client
                .jwks
                .refetched_since(
                    &jwks,
                    http.as_ref().as_ref(),
                    md.jwks_uri.as_ref(),
                    state.settings.discovery_timeout,
                    &state.metrics,
                )
                .await;
            match fresh.map(|set| id_token::validate(jwt, &set, &expect)) {
                Some(Ok(_)) => Ok(()),
                Some(Err(e2)) => fail(TokenResponseError::IdToken(e2)),
                None => fail(TokenResponseError::IdToken(e)),
            }
        }
        Err(e) => fail(TokenResponseError::IdToken(e)),
    }
}

/// Revokes the tokens of a refused response at the AS (RFC 7009), in the background: the
/// app already has its error; failures are logged and counted, never retried.
pub fn revoke_in_background(
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
            let key = client.keys.load().active().clone();
            let outcome = match client_auth_form(&client, key, metrics.clone()).await {
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
