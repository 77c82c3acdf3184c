//! Bounds on every connection of the three listeners: the header deadline and size, the
//! global cap with idle eviction, and the per-client share (issue 18 items M1/M2).

pub mod client_connections;
#[cfg(feature = "server")]
pub mod conn_registry;
#[cfg(feature = "server")]
pub mod connections;
#[cfg(feature = "server")]
pub mod guard_core;
#[cfg(feature = "server")]
pub mod header_limit;
