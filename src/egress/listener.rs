//! The egress listener (loopback): pingora glue around [`crate::egress`].

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::egress::{handle, EgressRequest};
use crate::sidecar::Sidecar;

pub struct EgressApp {
    pub state: Arc<Sidecar>,
}

fn simple(status: u16, msg: &str) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(&serde_json::json!({"error": "invalid_request", "error_description": msg}))
        .unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .expect("valid response")
}

#[async_trait]
impl ServeHttp for EgressApp {
    /// Brackets the request for the connection guard (header deadline and size cap between
    /// requests only; a slow AS call is bounded by the AS timeouts instead).
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        crate::conn::connections::mark_headers_read();
        let resp = self.serve(session).await;
        crate::conn::connections::mark_request_done();
        resp
    }
}

impl EgressApp {
    async fn serve(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let limit = self.state.settings.egress_max_body;
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return simple(413, "request body too large");
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return simple(400, "could not read the request body"),
            }
        }
        let h = session.req_header();
        let req = EgressRequest {
            method: h.method.clone(),
            path: h.uri.path().to_string(),
            query: h.uri.query().map(str::to_string),
            headers: h.headers.clone(),
            body: body.into(),
        };
        let resp = handle(&self.state, req).await;
        let mut b = Response::builder().status(resp.status);
        for (k, v) in &resp.headers {
            b = b.header(k, v);
        }
        b.header("content-length", resp.body.len())
            .body(resp.body.to_vec())
            .unwrap_or_else(|_| simple(502, "unrepresentable upstream response"))
    }
}
