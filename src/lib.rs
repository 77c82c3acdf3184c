//! par-sidecar: retrofits FAPI 2.0 (PAR + JAR + mTLS) onto an unmodified OAuth web app.
//!
//! Modules by concern; only `proxy`, `admin`, `background` and `server` know pingora.

#[cfg(feature = "server")]
pub mod admin;
pub mod authorize;
#[cfg(feature = "server")]
pub mod background;
pub mod bounded;
pub mod browser_binding;
pub mod callback;
pub mod config;
pub mod discovery;
pub mod egress;
#[cfg(feature = "server")]
pub mod egress_listener;
pub mod errors;
pub mod http_client;
pub mod id_token;
pub mod jarm;
pub mod jose;
pub mod keys;
pub mod metrics;
pub mod par;
pub mod pkce;
pub mod protocol;
#[cfg(feature = "server")]
pub mod proxy;
pub mod redirect;
pub mod registry;
#[cfg(feature = "server")]
pub mod reload;
pub mod request_object;
pub mod sealed_state;
#[cfg(feature = "server")]
pub mod server;
pub mod state;
pub mod token_check;
