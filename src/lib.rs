//! par-sidecar: retrofits FAPI 2.0 (PAR + JAR + mTLS) onto an unmodified OAuth web app.
//!
//! Folders by concern: `front` (browser side: login start, callback), `as_client` (each
//! authorization server), `egress` (the app's back-channel calls), `ops` (metrics, admin,
//! reload, wiring). Only `proxy`, `egress::listener` and parts of `ops` know pingora.

pub mod as_client;
pub mod bounded;
pub mod config;
pub mod egress;
pub mod errors;
pub mod front;
pub mod handoff;
pub mod metrics;
pub mod ops;
pub mod protocol;
#[cfg(feature = "server")]
pub mod proxy;
pub mod sidecar;
