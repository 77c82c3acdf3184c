//! Operating the sidecar: the admin listener, key reload, background refreshers and the
//! allocator trimmer.

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod background;
#[cfg(feature = "server")]
pub mod memory;
#[cfg(feature = "server")]
pub mod reload;
