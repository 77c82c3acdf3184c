//! Userinfo responses as JWTs (`application/jwt`, OIDC Core §5.3.2): signed, or signed then
//! encrypted (Singpass Myinfo). A legacy app expects JSON, so the sidecar decrypts (same
//! keys as ID tokens), verifies the JWS with the AS's JWKS (the key selection rule ID tokens
//! and JARM use) and hands the app the claims as `application/json`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::jose::select_verification_key;
use crate::as_client::jwe::{self, JweError};
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
    if jws.split('.').count() != 3 {
        return Err(UserinfoCheck::Malformed);
    }
    let header = jsonwebtoken::decode_header(&jws).map_err(|_| UserinfoCheck::Malformed)?;
    if !matches!(header.alg, Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA) {
        return Err(UserinfoCheck::Alg);
    }
    let alg_name = format!("{:?}", header.alg);
    if let Some(Value::Array(listed)) = md.document.get("userinfo_signing_alg_values_supported") {
        if !listed.iter().any(|a| a.as_str() == Some(alg_name.as_str())) {
            return Err(UserinfoCheck::Alg);
        }
    }
    let http = client.http.load();
    let timeout = env.fetch_timeout;
    let kid = header.kid.as_deref();
    let jwks = client
        .jwks
        .key_set(kid, http.as_ref().as_ref(), md.jwks_uri.as_ref(), timeout, env.metrics)
        .await
        .map_err(|_| UserinfoCheck::Key)?;
    let jwk = select_verification_key(&jwks, kid, header.alg).map_err(|_| UserinfoCheck::Key)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| UserinfoCheck::Key)?;
    // Userinfo JWTs carry no exp as a rule: only the signature is required; iss and aud are
    // checked when present (OIDC Core §5.3.2: SHOULD be present, then MUST match).
    let mut v = Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(&jws, &key, &v)
        .map_err(|_| UserinfoCheck::Signature)?
        .claims;
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
