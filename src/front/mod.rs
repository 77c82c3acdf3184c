//! The browser-facing plane, pure decisions (no pingora): is an upstream redirect a login
//! to push, and is a request to the app an authorization response to check first.

pub mod browser_binding;
pub mod callback;
pub mod location;
pub mod login_guard;
pub mod login_limit;
pub mod login_start;
pub mod pkce;
pub mod plane;
pub mod prefilter;
pub mod sealed_state;
