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
use crate::front::login_guard::RedirectContext;
use crate::front::login_limit::client_ip;
use crate::front::login_start::{decide_for, is_redirect, RedirectDecision};
use crate::metrics::CallbackLabels;
use crate::sidecar::Sidecar;

mod hosted_jwks;

pub struct PublicProxy {
    pub state: Arc<Sidecar>,
    /// Resolved once: `HttpPeer::new` would resolve the address on every request.
    upstream: HttpPeer,
}

impl PublicProxy {
    pub fn new(state: Arc<Sidecar>) -> Self {
        let upstream = HttpPeer::new(state.settings.upstream, false, String::new());
        PublicProxy { state, upstream }
    }

    /// Reads a request body to a callback path whole (bounded in size and time) into
    /// pingora's replay buffer, which the proxy then sends upstream, and scans it: Spring,
    /// PHP, Rails, Django and ASP.NET read form, multipart (and some JSON) fields as request
    /// parameters, so a posted `code` would reach the app unchecked.
    async fn read_callback_body(&self, session: &mut Session) -> std::result::Result<(), String> {
        use crate::front::prefilter::{check_body, MAX_CALLBACK_BODY};
        let declared = session
            .req_header()
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_CALLBACK_BODY as u64) {
            return Err(format!("the body is over {MAX_CALLBACK_BODY} bytes"));
        }
        // A bound on bodies buffered at once, whatever the connection count.
        let Some(_slot) = BodySlot::take() else {
            return Err("too many callback bodies in flight".into());
        };
        if session
            .req_header()
            .headers
            .get("expect")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        {
            session.write_continue_response().await.map_err(|e| e.to_string())?;
        }
        session.as_mut().enable_retry_buffering();
        let read = async {
            let mut total = 0usize;
            while let Some(chunk) = session.read_request_body().await.map_err(|e| e.to_string())? {
                total += chunk.len();
                if total > MAX_CALLBACK_BODY {
                    return Err(format!("the body is over {MAX_CALLBACK_BODY} bytes"));
                }
            }
            Ok(())
        };
        tokio::time::timeout(CALLBACK_BODY_TIMEOUT, read)
            .await
            .map_err(|_| "the body did not arrive in time".to_string())??;
        let body = session.as_ref().get_retry_buffer().unwrap_or_default();
        let h = &session.req_header().headers;
        check_body(
            h.get("content-type").map(|v| v.as_bytes()),
            h.get("content-encoding").map(|v| v.as_bytes()),
            &body,
        )
        .map_err(|e| e.to_string())
    }

    /// A browser error decided here, counted once (see [`BrowserError::counted`]).
    fn error(&self, code: FailureCode, id: crate::protocol::InteractionId) -> BrowserError {
        BrowserError::counted(code, id, &self.state.metrics)
    }

    /// A refusal at the request phase: counted, logged with its interaction id and `why`,
    /// answered with the error page naming `code`.
    async fn refuse(&self, session: &mut Session, code: FailureCode, why: &str, msg: &'static str) -> Result<bool> {
        let id = crate::protocol::InteractionId::new();
        let path = session.req_header().uri.path();
        tracing::warn!(interaction_id = %id, path, detail = why, "{msg}");
        write_error_page(session, &self.error(code, id)).await;
        Ok(true)
    }

    /// A checked callback goes to the app: the rebuilt query (or, for `form_post`, a POST
    /// body prepared for `upstream_request_filter` and `request_body_filter`).
    async fn hand_over(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        path: &str,
        has_body: bool,
        outcome: CallbackOutcome,
    ) -> Result<bool> {
        let CallbackOutcome::Forward {
            query,
            clear_cookie,
            interaction_id,
            code,
            as_name,
            form_post,
        } = outcome
        else {
            return Ok(false);
        };
        ctx.clear_cookie = clear_cookie;
        ctx.callback_checked = Some(interaction_id);
        ctx.checked_code = code.map(|c| (c, as_name.clone()));
        let new_uri = match form_post {
            // A request that brought a body of its own is not what the AS's redirect sends.
            Some(_) if has_body => {
                self.withdraw_code(ctx, "a form_post delivery for a request with a body");
                let mut err = self.error(FailureCode::CallbackMalformed, interaction_id);
                err.as_name = Some(as_name);
                ctx.callback_checked = None;
                write_error_page(session, &err).await;
                return Ok(true);
            }
            Some(form) => {
                ctx.form_post_body = Some(Bytes::from(form));
                if query.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{query}")
                }
            }
            None => format!("{path}?{query}"),
        };
        let new_uri = new_uri
            .parse::<http::Uri>()
            .map_err(|e| Error::because(InternalError, "rebuilding the callback URI", e))?;
        session.req_header_mut().set_uri(new_uri);
        Ok(false)
    }

    /// Withdraws the code of a checked callback the app did not take (see `checked_code`).
    fn withdraw_code(&self, ctx: &mut RequestCtx, why: &str) {
        if let Some((code, as_name)) = ctx.checked_code.take() {
            if self.state.codes.take(&code).is_some() {
                self.state.metrics.callback_check(CallbackLabels {
                    as_name: as_name.as_str(),
                    outcome: "code_withdrawn",
                });
                tracing::warn!(
                    r#as = as_name.as_str(),
                    why,
                    "the app did not take a checked callback: its code was withdrawn"
                );
            }
        }
    }
}

/// Callback bodies being read at once, bounded (each up to `MAX_CALLBACK_BODY`, held in
/// pingora's replay buffer): a flood of them cannot grow the process.
static CALLBACK_BODIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_CALLBACK_BODIES: usize = 64;

struct BodySlot;

impl BodySlot {
    fn take() -> Option<BodySlot> {
        use std::sync::atomic::Ordering;
        let prev = CALLBACK_BODIES.fetch_add(1, Ordering::AcqRel);
        if prev >= MAX_CALLBACK_BODIES {
            CALLBACK_BODIES.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(BodySlot)
    }
}

impl Drop for BodySlot {
    fn drop(&mut self) {
        CALLBACK_BODIES.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// How long a callback path's request body may take to arrive.
const CALLBACK_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
    client_slot: Option<crate::conn::client_connections::ClientSlot>,
    /// Set when the forwarded client already holds its share: answered 429 and closed.
    over_client_cap: bool,
    /// The code a checked callback handed to the app, and its AS: withdrawn from the code
    /// map when the app refuses the callback (>= 400) or cannot be reached, so a code the
    /// app never redeemed cannot be planted for another request (issue 18 H1).
    checked_code: Option<(String, String)>,
    /// A checked response for an app that asked for `form_post`: sent upstream as the body
    /// of a POST to its redirect_uri.
    form_post_body: Option<Bytes>,
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
        crate::conn::connections::mark_headers_read();
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

    /// pingora's last phase of every request (served, answered by a filter, or failed): the
    /// connection is idle again, so its next request gets its own header deadline and size cap.
    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, _ctx: &mut RequestCtx) {
        crate::conn::connections::mark_request_done();
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
            tracing::warn!(interaction_id = %id, "client address over limits.max_connections_per_client");
            session.set_keepalive(None);
            write_error_page(session, &self.error(FailureCode::TooManyConnections, id)).await;
            return Ok(true);
        }
        // `public_jwks_path` (off: one None check): the client JWKS, nothing else.
        if self.state.settings.public_jwks_path.is_some() && hosted_jwks::serve(&self.state, session).await {
            return Ok(true);
        }
        // An h2c upgrade would turn the connection into a tunnel the checks never see.
        if session
            .req_header()
            .headers
            .get("upgrade")
            .is_some_and(|v| v.as_bytes().to_ascii_lowercase().windows(3).any(|w| w == b"h2c"))
        {
            let h = session.req_header_mut();
            h.remove_header("upgrade");
            h.remove_header("http2-settings");
        }
        // The app's redirect_uri: the authorization response is checked before the app sees
        // it. A request with no response-shaped parameter and no body leaves here without an
        // allocation or a lock.
        let scan = session
            .req_header()
            .uri
            .query()
            .map(crate::front::prefilter::scan_query)
            .unwrap_or_default();
        let has_body = !session.as_mut().is_body_empty();
        // A cookie an app could read as a response parameter (PHP `$_REQUEST`, ASP.NET).
        let cookie_param = session
            .req_header()
            .headers
            .get_all("cookie")
            .iter()
            .find_map(|v| crate::front::prefilter::cookie_response_name(v.as_bytes()));
        if !scan.any() && !has_body && cookie_param.is_none() {
            return Ok(false);
        }
        let on_callback = callback::on_callback_path(&self.state.front, session.req_header().uri.path());
        if let (Some(name), true) = (cookie_param, on_callback) {
            let why = format!("cookie `{name}`");
            let msg = "a cookie named like a response parameter on a callback path refused";
            return self.refuse(session, FailureCode::CallbackMalformed, &why, msg).await;
        }
        if has_body && on_callback {
            if let Err(why) = self.read_callback_body(session).await {
                session.set_keepalive(None);
                let msg = "request body to a callback path refused";
                return self.refuse(session, FailureCode::CallbackBodyRefused, &why, msg).await;
            }
        }
        if !callback::candidate(&self.state.front, on_callback, scan) {
            return Ok(false);
        }
        let uri = &session.req_header().uri;
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
        match callback::check(&self.state.front, &path, uri.query(), &cookies).await {
            CallbackOutcome::NotCallback => Ok(false),
            outcome @ CallbackOutcome::Forward { .. } => self.hand_over(session, ctx, &path, has_body, outcome).await,
            CallbackOutcome::Reject {
                code,
                interaction_id,
                as_name,
            } => {
                let mut err = self.error(code, interaction_id);
                err.as_name = as_name;
                write_error_page(session, &err).await;
                Ok(true)
            }
        }
    }

    /// A checked `form_post` response goes to the app as a form POST (see `form_post_body`).
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(body) = &ctx.form_post_body {
            upstream_request.set_method(http::Method::POST);
            upstream_request.insert_header("content-type", "application/x-www-form-urlencoded")?;
            upstream_request.insert_header("content-length", body.len().to_string())?;
            upstream_request.remove_header("transfer-encoding");
        }
        Ok(())
    }

    /// The browser's GET has no body: the checked `form_post` response is the body sent.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(form) = &ctx.form_post_body {
            if end_of_stream && body.as_ref().is_none_or(|b| b.is_empty()) {
                *body = Some(form.clone());
            }
        }
        Ok(())
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
        if resp.status.as_u16() >= 400 {
            self.withdraw_code(ctx, "the app answered the callback with an error status");
        } else if self.state.settings.app_redeems_before_answering {
            // Server-side stacks redeem the code before they answer (Spring, ASP.NET,
            // passport, omniauth): one still in the map was not taken, e.g. answered with a
            // `302 /login?error` for a missing session. Withdrawn so it cannot be planted.
            self.withdraw_code(ctx, "the app answered the callback without redeeming its code");
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
        // What the app answered: its origin, path and query (open-redirect screen).
        let req = session.req_header();
        let trust_forwarded = self.state.settings.client_address_header.is_some();
        let cx = RedirectContext::from_request(&req.uri, &req.headers, trust_forwarded);
        match decide_for(&self.state.front, &location, &cx, client_ip).await {
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
        self.withdraw_code(ctx, "proxying the callback to the app failed");
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
                self.error(code, id).with_status(status)
            }
        };
        write_error_page(session, &err).await;
        FailToProxy {
            error_code: err.status,
            can_reuse_downstream: false,
        }
    }
}
