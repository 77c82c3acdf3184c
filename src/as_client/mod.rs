//! Talking to authorization servers: one [`registry::AsClient`] per configured AS, with its
//! discovery, PAR, request object, client authentication, JARM and ID token checks, keys,
//! and the HTTP seam.

pub mod as_runtime;
pub mod assertion_pool;
pub mod claim_values;
pub mod client_auth;
pub mod discovery;
pub mod dpop;
pub mod endpoint_conflict;
pub mod http_client;
pub mod id_token;
pub mod jarm;
pub mod jose;
pub mod jwe;
pub mod jwks;
pub mod jws;
pub mod keys;
pub mod mtls_alias;
pub mod oauth_error;
pub mod par;
pub mod registry;
pub mod request_object;
pub mod send;
pub mod signing;
pub mod signing_pool;
pub mod token_check;
pub mod userinfo_jwt;
