//! Claim sets for the two JWTs in a PAR (PAR-7): the request object (JAR, RFC 9101) and the
//! `private_key_jwt` client assertion (RFC 7523). Kept apart so their claims never mix:
//! the request object has no `sub`, the assertion carries no authorization parameters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::protocol::authorize::AuthorizeRedirect;
use crate::protocol::{random_uuid, ClientId, IssuerUrl};

/// JAR §4 media type, recommended explicit typing (JAR §10.8).
pub const REQUEST_OBJECT_TYP: &str = "oauth-authz-req+jwt";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Every authorization parameter the app sent, plus `iss`, `aud` (the issuer, as a string),
/// `client_id`, `iat`, `nbf` = `iat`, `exp`, `jti` (JAR-1, RFC 9101 §4).
pub fn request_object_claims(
    redirect: &AuthorizeRedirect,
    client_id: &ClientId,
    issuer: &IssuerUrl,
    lifetime: Duration,
    now: u64,
) -> Map<String, Value> {
    let mut c = redirect.params.clone();
    c.insert("client_id".into(), client_id.as_str().into());
    c.insert("iss".into(), client_id.as_str().into());
    c.insert("aud".into(), issuer.as_str().into());
    c.insert("iat".into(), now.into());
    c.insert("nbf".into(), now.into());
    c.insert("exp".into(), (now + lifetime.as_secs()).into());
    c.insert("jti".into(), random_uuid().to_string().into());
    c
}

/// `iss` = `sub` = client_id, `aud` = issuer string (never an endpoint URL, never an
/// array: FAPI 2.0 §5.3.3.1-5), a fresh `jti` for every HTTP request (CA-2).
pub fn client_assertion_claims(
    client_id: &ClientId,
    issuer: &IssuerUrl,
    lifetime: Duration,
    now: u64,
) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("iss".into(), client_id.as_str().into());
    c.insert("sub".into(), client_id.as_str().into());
    c.insert("aud".into(), issuer.as_str().into());
    c.insert("iat".into(), now.into());
    c.insert("exp".into(), (now + lifetime.as_secs()).into());
    c.insert("jti".into(), random_uuid().to_string().into());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> AuthorizeRedirect {
        let mut params = Map::new();
        params.insert("client_id".into(), "legacy-app".into());
        params.insert("response_type".into(), "code".into());
        params.insert("claims".into(), serde_json::json!({"id_token": {"acr": null}}));
        AuthorizeRedirect { params }
    }

    #[test]
    fn request_object_has_required_claims_and_no_sub() {
        let cid = ClientId::new("legacy-app").unwrap();
        let iss = IssuerUrl::new("https://as.example.com/").unwrap();
        let c = request_object_claims(&redirect(), &cid, &iss, Duration::from_secs(300), 1000);
        assert_eq!(c["aud"], "https://as.example.com/", "aud is the issuer byte for byte");
        assert!(c["aud"].is_string());
        assert_eq!(c["iss"], "legacy-app");
        assert_eq!(c["client_id"], "legacy-app");
        assert_eq!(c["nbf"], 1000);
        assert_eq!(c["exp"], 1300);
        assert!(c.get("sub").is_none(), "JAR §10.8: no sub");
        assert!(c["claims"].is_object(), "claims stays JSON");
        assert_eq!(c["response_type"], "code");
    }

    #[test]
    fn assertion_jti_is_fresh_each_time() {
        let cid = ClientId::new("legacy-app").unwrap();
        let iss = IssuerUrl::new("https://as.example.com").unwrap();
        let a = client_assertion_claims(&cid, &iss, Duration::from_secs(60), 1000);
        let b = client_assertion_claims(&cid, &iss, Duration::from_secs(60), 1000);
        assert_ne!(a["jti"], b["jti"]);
        assert_eq!(a["sub"], "legacy-app");
        assert_eq!(a["aud"], "https://as.example.com");
        assert_eq!(a["exp"], 1060);
    }
}
