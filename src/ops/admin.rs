//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/jwks.json`. It never shares a
//! port with browser traffic (config validation refuses that).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::sidecar::Sidecar;

pub struct AdminApp {
    pub state: Arc<Sidecar>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .expect("static response parts are valid")
}

/// Routes one admin request; separate from the trait so it is testable without a socket.
pub fn route(state: &Sidecar, method: &http::Method, path: &str) -> Response<Vec<u8>> {
    if method != http::Method::GET && method != http::Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"method not allowed\n".to_vec(),
        );
    }
    match path {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", state.metrics.render()),
        "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        "/readyz" => readyz(state),
        "/jwks.json" => reply(
            StatusCode::OK,
            "application/jwk-set+json",
            serde_json::to_vec(&state.public_jwks()).unwrap_or_default(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    }
}

/// 200 while at least one AS can serve logins (one bank down must not take the pod out of
/// service for every other bank); the body lists each AS's state for humans.
fn readyz(state: &Sidecar) -> Response<Vec<u8>> {
    use std::fmt::Write;
    let ready = state.is_ready();
    let mut body = String::from(if ready {
        "ready\n"
    } else {
        "not ready: no authorization server has metadata loaded\n"
    });
    for c in &state.registry.clients {
        let _ = match c.not_ready_reason() {
            None => writeln!(body, "{}: ready", c.name()),
            Some(r) => writeln!(body, "{}: not ready: {r}", c.name()),
        };
        // Which URL each back-channel call uses (RFC 8705 §5 aliases or top level).
        if let Some(md) = c.discovery.get() {
            for line in crate::as_client::mtls_alias::report(&md.endpoints) {
                let _ = writeln!(body, "{}:   {line}", c.name());
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply(status, "text/plain", body.into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    /// Brackets the request for the connection guard: its header deadline and size cap apply
    /// between requests only. The response is written right after this returns.
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        crate::conn::connections::mark_headers_read();
        let req = session.req_header();
        let resp = route(&self.state, &req.method, req.uri.path());
        crate::conn::connections::mark_request_done();
        resp
    }
}
