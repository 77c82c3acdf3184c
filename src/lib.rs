//! par-sidecar: retrofits FAPI 2.0 (PAR + JAR + mTLS) onto an unmodified OAuth web app.
//!
//! Imports run downhill (README "Code map and request flow"):
//! - ground vocabulary: `protocol`, `metrics`, `config`, `errors`, `bounded`, `handoff`;
//! - planes: `as_client` (each authorization server), `front` (browser side: login start,
//!   callback), `conn` (connection bounds), `egress` (the app's back-channel calls), `ops`
//!   (admin, reload, refreshers);
//! - wiring: `sidecar` (the composition root), `proxy`, `server`, `main`.
//!
//! Only `proxy`, `server`, `egress::listener`, `conn` and parts of `ops` know pingora.

pub mod as_client;
pub mod bounded;
pub mod config;
pub mod conn;
pub mod egress;
pub mod errors;
pub mod front;
pub mod handoff;
pub mod metrics;
pub mod ops;
pub mod protocol;
#[cfg(feature = "server")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod server;
pub mod sidecar;
