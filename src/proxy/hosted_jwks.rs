//! The client JWKS on the public listener (`public_jwks_path`, off by default), for ASs that
//! fetch a hosted client JWKS (Singpass onboarding, key rotation without re-registering).
//! It is the admin `/jwks.json`: public keys only (signing keys, and encryption keys with
//! `use: enc`), never a private member. Only `GET` and `HEAD` on that exact path are
//! answered here; anything else, other methods on it included, goes to the app as before.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::sidecar::Sidecar;

/// An AS refetches a client JWKS on its own schedule; five minutes keeps a rotation quick
/// while sparing the sidecar a fetch storm from caches.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// Whether this request is the hosted JWKS: `GET`/`HEAD` on exactly `path` (any query).
pub fn is_jwks_request(configured: &str, method: &http::Method, path: &str) -> bool {
    path == configured && (method == http::Method::GET || method == http::Method::HEAD)
}

/// The body served: the JWKS `/jwks.json` and `par-sidecar jwks` print.
pub fn body(state: &Sidecar) -> Vec<u8> {
    serde_json::to_vec(&state.public_jwks()).unwrap_or_default()
}

/// Answers the request when it is the hosted JWKS; `false` (nothing written) otherwise.
pub async fn serve(state: &Sidecar, session: &mut Session) -> bool {
    let Some(configured) = state.settings.public_jwks_path.as_deref() else {
        return false;
    };
    let req = session.req_header();
    if !is_jwks_request(configured, &req.method, req.uri.path()) {
        return false;
    }
    let head = req.method == http::Method::HEAD;
    let body = body(state);
    let written = async {
        let mut h = ResponseHeader::build(200, Some(5))?;
        h.insert_header("content-type", "application/jwk-set+json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("cache-control", CACHE_CONTROL)?;
        h.insert_header("x-content-type-options", "nosniff")?;
        session.write_response_header(Box::new(h), head).await?;
        if !head {
            session.write_response_body(Some(Bytes::from(body)), true).await?;
        }
        Ok::<_, Box<pingora::Error>>(())
    }
    .await;
    if let Err(e) = written {
        tracing::debug!(error = %e, "could not write the hosted JWKS");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_on_the_exact_path() {
        let p = "/.well-known/jwks.json";
        assert!(is_jwks_request(p, &http::Method::GET, p));
        assert!(is_jwks_request(p, &http::Method::HEAD, p));
        assert!(!is_jwks_request(p, &http::Method::POST, p));
        assert!(!is_jwks_request(p, &http::Method::GET, "/.well-known/jwks.json/x"));
        assert!(!is_jwks_request(p, &http::Method::GET, "/.well-known/JWKS.json"));
    }
}
