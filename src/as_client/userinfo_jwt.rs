//! Userinfo responses as JWTs (`application/jwt`, OIDC Core §5.3.2): signed, or signed then
//! encrypted (Singpass Myinfo). A legacy app expects JSON, so the sidecar decrypts (same
//! keys as ID tokens), verifies the JWS on the path ID tokens and JARM take ([`jws`]: algs, `crit`,
//! key selection, refetch) and hands the app the claims as `application/json`.

use serde_json::Value;

use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::jwe::{self, JweError};
use crate::as_client::jws::{self, JwksFetch, JwsError};
use crate::as_client::registry::AsClient;
use crate::as_client::token_check::CheckEnv;

/// The failed check: a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserinfoCheck {
    Jwe(JweError),
    /// Not a compact JWS (after decryption), or claims not a JSON object.
    Malformed,
    /// `alg` not PS256/ES256/EdDSA, or not in `userinfo_signing_alg_values_supported`.
    Alg,
    /// No AS key for the `kid`/`alg`, or the JWKS could not be loaded.
    Key,
    Signature,
    /// A `crit` header (the rule ID tokens and JARM share).
    Crit,
    /// `iss` present and not the issuer, or `aud` present and not naming the client.
    Iss,
    Aud,
}

impl UserinfoCheck {
    pub fn label(self) -> &'static str {
        match self {
            UserinfoCheck::Jwe(e) => e.check(),
            UserinfoCheck::Malformed => "userinfo_malformed",
            UserinfoCheck::Alg => "userinfo_alg",
            UserinfoCheck::Key => "userinfo_key",
            UserinfoCheck::Signature => "userinfo_signature",
            UserinfoCheck::Crit => "userinfo_crit",
            UserinfoCheck::Iss => "userinfo_iss",
            UserinfoCheck::Aud => "userinfo_aud",
        }
    }
}

/// `application/jwt` (parameters ignored), the media type of a JWT userinfo response.
pub fn is_jwt(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/jwt"))
}

/// The verified claims of a JWT userinfo response, serialized as JSON.
pub async fn claims_json(
    env: &CheckEnv<'_>,
    client: &AsClient,
    md: &ProviderMetadata,
    body: &[u8],
) -> Result<Vec<u8>, UserinfoCheck> {
    let text = std::str::from_utf8(body).map_err(|_| UserinfoCheck::Malformed)?.trim();
    let jws = if jwe::is_compact_jwe(text) {
        let keys = client.keys.load().decryption_keys();
        if keys.is_empty() {
            return Err(UserinfoCheck::Jwe(JweError::Key));
        }
        let plain = jwe::decrypt(text, &keys).map_err(UserinfoCheck::Jwe)?;
        String::from_utf8(plain).map_err(|_| UserinfoCheck::Malformed)?
    } else {
        text.to_string()
    };
    // Three parts with a signature: an unsigned inner token (`alg: none`) is no JWS here.
    if jws.split('.').count() != 3 || jws.ends_with('.') {
        return Err(UserinfoCheck::Malformed);
    }
    let listed = jws::advertised(&md.document, "userinfo_signing_alg_values_supported");
    let http = client.http.load();
    let fetch = JwksFetch {
        http: http.as_ref().as_ref(),
        jwks_uri: md.jwks_uri.as_ref(),
        timeout: env.fetch_timeout,
        metrics: env.metrics,
    };
    // Userinfo JWTs carry no exp as a rule: only the signature is required; iss and aud are
    // checked when present (OIDC Core §5.3.2: SHOULD be present, then MUST match).
    let claims = client
        .jwks
        .verify_jws(&jws, listed.as_deref(), &fetch)
        .await
        .map_err(|e| match e {
            JwsError::Malformed(_) => UserinfoCheck::Malformed,
            JwsError::Alg(_) => UserinfoCheck::Alg,
            JwsError::Crit => UserinfoCheck::Crit,
            JwsError::UnknownKid(_) | JwsError::Jwks(_) => UserinfoCheck::Key,
            JwsError::Signature(_) => UserinfoCheck::Signature,
        })?;
    if let Some(iss) = claims.get("iss") {
        if iss.as_str() != Some(client.settings.issuer.as_str()) {
            return Err(UserinfoCheck::Iss);
        }
    }
    let client_id = client.settings.client.client_id.as_str();
    match claims.get("aud") {
        None => {}
        Some(Value::String(a)) if a == client_id => {}
        Some(Value::Array(a)) if a.iter().any(|x| x.as_str() == Some(client_id)) => {}
        Some(_) => return Err(UserinfoCheck::Aud),
    }
    serde_json::to_vec(&claims).map_err(|_| UserinfoCheck::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type() {
        let mut h = http::HeaderMap::new();
        assert!(!is_jwt(&h));
        h.insert("content-type", "application/jwt; charset=utf-8".parse().unwrap());
        assert!(is_jwt(&h));
        h.insert("content-type", "application/json".parse().unwrap());
        assert!(!is_jwt(&h));
    }
}
