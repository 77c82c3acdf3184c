//! Operating the sidecar: metrics (one place for names), the admin listener, key reload,
//! background refreshers and the server wiring.

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod background;
pub mod client_connections;
#[cfg(feature = "server")]
pub mod conn_registry;
#[cfg(feature = "server")]
pub mod connections;
#[cfg(feature = "server")]
pub mod header_limit;
#[cfg(feature = "server")]
pub mod memory;
#[cfg(feature = "server")]
pub mod reload;
#[cfg(feature = "server")]
pub mod server;
