//! The public listener's `ProxyHttp`: thin and phase-shaped. Each phase hands its concern to
//! a module that knows nothing about pingora (`redirect`, `errors`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::errors::{wants_json, BrowserError, FailureCode};
use crate::front::browser_binding;
use crate::front::callback::{self, CallbackOutcome};
use crate::front::login_limit::client_ip;
use crate::front::redirect::{decide_for, is_redirect, RedirectDecision};
use crate::state::SidecarState;

pub struct PublicProxy {
    pub state: Arc<SidecarState>,
    /// Resolved once: `HttpPeer::new` would resolve the address on every request.
    upstream: HttpPeer,
}

impl PublicProxy {
    pub fn new(state: Arc<SidecarState>) -> Self {
        let upstream = HttpPeer::new(state.settings.upstream, false, String::new());
        PublicProxy { state, upstream }
    }
}

/// Per-request context.
#[derive(Default)]
pub struct RequestCtx {
    /// Set on a checked callback: the binding cookie is cleared on the app's response.
    clear_cookie: Option<String>,
    /// Set when the upstream response was rewritten: its body is dropped.
    drop_body: bool,
    /// Set when we fail closed: `fail_to_proxy` renders it.
    failure: Option<BrowserError>,
    /// Set on a checked callback (the app's page still has the code in its URL): the id of
    /// that check, quoted by our own log line should the app then fail.
    callback_checked: Option<crate::protocol::InteractionId>,
    /// Behind an ingress: this request's slot under `limits.max_connections_per_client`,
    /// given back when the request ends.
    client_slot: Option<crate::ops::client_connections::ClientSlot>,
    /// Set when the forwarded client already holds its share: answered 429 and closed.
    over_client_cap: bool,
}

/// Headers every sidecar-authored response carries (TLS-4, AZ-3). HSTS is ignored by
/// browsers on plain http, and the browser side of the sidecar is HTTPS in production.
fn apply_security_headers(h: &mut ResponseHeader) -> Result<()> {
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("strict-transport-security", "max-age=31536000")?;
    h.insert_header("referrer-policy", "no-referrer")?;
    h.insert_header("x-content-type-options", "nosniff")?;
    Ok(())
}

/// Writes a sidecar-owned error page (the one place browser errors become HTTP), as JSON
/// when the browser asked for JSON.
async fn write_error_page(session: &mut Session, err: &BrowserError) {
    let json = wants_json(session.req_header().headers.get("accept").map(|v| v.as_bytes()));
    let (content_type, body) = err.render(json);
    let written = async {
        let mut h = ResponseHeader::build(err.status, Some(6))?;
        h.insert_header("content-type", content_type)?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("x-fapi-interaction-id", err.interaction_id.to_string())?;
        if err.status == 429 {
            h.insert_header("retry-after", "5")?;
        }
        apply_security_headers(&mut h)?;
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(Bytes::from(body)), true).await
    }
    .await;
    if let Err(we) = written {
        tracing::debug!(error = %we, "could not write the error page");
    }
}

#[async_trait]
impl ProxyHttp for PublicProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// No downstream modules: pingora's default adds a (disabled) compression module that
    /// still runs on every request. The sidecar never compresses the app's responses.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// The first hook after a request's headers are parsed: lifts the connection's
    /// first-request deadline (`timeouts.first_request_headers_ms`) and, behind an ingress,
    /// counts the request against its client's share (`limits.max_connections_per_client`).
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        crate::ops::connections::mark_headers_read();
        let clients = &self.state.client_connections;
        if let (Some(h), true) = (self.state.settings.client_address_header.as_deref(), clients.enabled()) {
            // No (or no parseable) header: not the ingress's request; the global cap applies.
            let forwarded = session.req_header().headers.get(h).map(|v| v.as_bytes());
            if let Some(ip) = client_ip(None, forwarded) {
                ctx.client_slot = clients.acquire(ip);
                ctx.over_client_cap = ctx.client_slot.is_none();
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.upstream.clone()))
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if ctx.over_client_cap {
            let id = crate::protocol::InteractionId::new();
            self.state
                .metrics
                .client_connections_refused
                .with_label_values(&["request"])
                .inc();
            self.state
                .metrics
                .browser_errors
                .with_label_values(&[FailureCode::TooManyConnections.as_str()])
                .inc();
            tracing::warn!(interaction_id = %id, "client address over limits.max_connections_per_client");
            session.set_keepalive(None);
            write_error_page(session, &BrowserError::new(FailureCode::TooManyConnections, id)).await;
            return Ok(true);
        }
        // The app's redirect_uri: the authorization response is checked before the app sees
        // it. Every other request leaves here without an allocation or a lock.
        let req = session.req_header();
        // A form POST to the redirect_uri: responses are only ever delivered as a query (the
        // sidecar refuses form_post at login start), but many frameworks read form fields as
        // request parameters, so a posted `code` would reach the app unchecked.
        if req.method == http::Method::POST
            && req.headers.get("content-type").is_some_and(|v| {
                v.as_bytes()
                    .to_ascii_lowercase()
                    .starts_with(b"application/x-www-form-urlencoded")
            })
            && self.state.is_callback_path(req.uri.path())
        {
            let id = crate::protocol::InteractionId::new();
            self.state
                .metrics
                .browser_errors
                .with_label_values(&[FailureCode::CallbackMalformed.as_str()])
                .inc();
            tracing::warn!(interaction_id = %id, path = req.uri.path(), "form POST to the redirect_uri refused");
            write_error_page(session, &BrowserError::new(FailureCode::CallbackMalformed, id)).await;
            return Ok(true);
        }
        let uri = &session.req_header().uri;
        if !callback::is_candidate(&self.state, uri.path(), uri.query()) {
            return Ok(false);
        }
        let path = uri.path().to_string();
        // Every Cookie header (h2 may send several), as bytes: another app's non-ASCII cookie
        // must not hide the binding cookie.
        let cookies: Vec<&[u8]> = session
            .req_header()
            .headers
            .get_all("cookie")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        match callback::check(&self.state, &path, uri.query(), &cookies).await {
            CallbackOutcome::NotCallback => Ok(false),
            CallbackOutcome::Forward {
                query,
                clear_cookie,
                interaction_id,
            } => {
                ctx.clear_cookie = clear_cookie;
                ctx.callback_checked = Some(interaction_id);
                let new_uri = format!("{path}?{query}")
                    .parse::<http::Uri>()
                    .map_err(|e| Error::because(InternalError, "rebuilding the callback URI", e))?;
                session.req_header_mut().set_uri(new_uri);
                Ok(false)
            }
            CallbackOutcome::Reject {
                code,
                interaction_id,
                as_name,
            } => {
                let mut err = BrowserError::new(code, interaction_id);
                err.as_name = as_name;
                write_error_page(session, &err).await;
                Ok(true)
            }
        }
    }

    /// Only here, on the *upstream* response, can a PAR start: a browser request cannot.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(c) = ctx.clear_cookie.take() {
            resp.append_header("set-cookie", c)?;
        }
        if ctx.callback_checked.is_some() {
            // The page's URL carries the code: keep it out of Referer headers and caches,
            // unless the app chose its own policy.
            if !resp.headers.contains_key("referrer-policy") {
                resp.insert_header("referrer-policy", "no-referrer")?;
            }
            if !resp.headers.contains_key("cache-control") {
                resp.insert_header("cache-control", "no-store")?;
            }
        }
        if !is_redirect(resp.status.as_u16()) {
            return Ok(());
        }
        let Some(location) = resp.headers.get("location").map(|v| v.as_bytes().to_vec()) else {
            return Ok(());
        };
        let client_ip = client_ip(
            session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
            self.state
                .settings
                .client_address_header
                .as_deref()
                .and_then(|h| session.req_header().headers.get(h))
                .map(|v| v.as_bytes()),
        );
        match decide_for(&self.state, &location, client_ip).await {
            RedirectDecision::PassThrough => Ok(()),
            RedirectDecision::Rewrite {
                location,
                interaction_id,
                set_cookie,
            } => {
                if let Some(c) = set_cookie {
                    // Appended: the app's own Set-Cookie headers stay.
                    resp.append_header("set-cookie", c)?;
                    // The browser's oldest binding cookies go, so they never pile up.
                    let secure = self.state.settings.cookie_secure;
                    let cookies: Vec<&[u8]> = session
                        .req_header()
                        .headers
                        .get_all("cookie")
                        .iter()
                        .map(|v| v.as_bytes())
                        .collect();
                    for name in browser_binding::stale_bindings(&cookies, secure) {
                        resp.append_header("set-cookie", browser_binding::clear_cookie(&name, secure))?;
                    }
                }
                resp.insert_header("location", location)?;
                // The browser must not re-POST the app's form to the AS (307/308 keep the
                // method and body): the pushed request is a plain GET to the AS.
                if matches!(resp.status.as_u16(), 307 | 308) {
                    resp.set_status(303)?;
                }
                resp.insert_header("x-fapi-interaction-id", interaction_id.to_string())?;
                resp.remove_header("transfer-encoding");
                resp.remove_header("content-type");
                resp.insert_header("content-length", "0")?;
                apply_security_headers(resp)?;
                ctx.drop_body = true;
                Ok(())
            }
            RedirectDecision::Fail(err) => {
                let status = err.status;
                ctx.failure = Some(err);
                Error::e_explain(HTTPStatus(status), "authorize redirect failed closed")
            }
        }
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if ctx.drop_body {
            *body = None;
        }
        Ok(None)
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Our own fail-closed decisions are already logged with their interaction id; a
        // failure behind a checked callback is logged by `fail_to_proxy`, path only: pingora's
        // line would quote the request line, with the code and the app's state.
        ctx.failure.is_some() || ctx.callback_checked.is_some()
    }

    /// What pingora's own log lines (errors, retry warnings) say about a request: never the
    /// query of a callback, which carries the code and the app's state.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        if ctx.callback_checked.is_some() || req.uri.query().is_some_and(callback::looks_like_response) {
            let host = req.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
            format!("{} {} (query withheld), Host: {host}", req.method, req.uri.path())
        } else {
            session.as_ref().request_summary()
        }
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let err = match ctx.failure.clone() {
            Some(err) => err,
            None => {
                // Upstream app down or broken: a plain gateway error, with an id to quote.
                let status = match e.etype() {
                    HTTPStatus(code) => *code,
                    _ if e.esource() == &ErrorSource::Downstream => 400,
                    _ => 502,
                };
                let code = if status == 400 {
                    FailureCode::BadRequest
                } else {
                    FailureCode::UpstreamUnavailable
                };
                self.state
                    .metrics
                    .browser_errors
                    .with_label_values(&[code.as_str()])
                    .inc();
                let id = match ctx.callback_checked {
                    Some(id) => {
                        // The path only: the query handed to the app holds the code.
                        let path = session.req_header().uri.path();
                        tracing::warn!(interaction_id = %id, path, error_type = e.etype().as_str(), status, "proxying a checked callback to the app failed");
                        id
                    }
                    None => {
                        let id = crate::protocol::InteractionId::new();
                        tracing::warn!(interaction_id = %id, error = %e, status, "proxying to the app failed");
                        id
                    }
                };
                BrowserError::new(code, id).with_status(status)
            }
        };
        write_error_page(session, &err).await;
        FailToProxy {
            error_code: err.status,
            can_reuse_downstream: false,
        }
    }
}
