//! The response phase of the public listener: decide what happens to one upstream redirect.
//! Pure protocol logic plus metrics and logs; the pingora glue lives in `proxy`.

use std::sync::Arc;
use std::time::Instant;

use tracing::{error, info, warn};

use serde_json::Value;

use crate::as_client::jose::random_token;
use crate::as_client::par;
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::now_secs;
use crate::errors::{BrowserError, FailureCode, Rejection};
use crate::front::browser_binding;
use crate::front::location::{browser_target, detect_among, AuthorizeError, Detection};
use crate::front::login_guard::{self, RedirectContext};
use crate::front::pkce::{self, PkceAction};
use crate::front::plane::Front;
use crate::front::sealed_state::TransactionState;
use crate::protocol::authorize::AuthorizeRedirect;
use crate::protocol::secret::Secret;
use crate::protocol::{redact, InteractionId};

#[derive(Debug)]
pub enum RedirectDecision {
    /// Not ours: leave the response untouched.
    PassThrough,
    /// Replace `Location`, drop the body.
    Rewrite {
        location: String,
        interaction_id: InteractionId,
        /// The browser-binding cookie to set with the redirect.
        set_cookie: Option<String>,
    },
    /// Fail closed: serve an error page instead of the app's redirect.
    Fail(BrowserError),
}

/// Whether a status code is a redirect that carries `Location`.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// [`decide_for`] for a redirect answering `GET /login` on `https://app.example`
/// ([`RedirectContext::app_login`]), without a client address (per-client login limits do
/// not apply): for callers without a request, such as integration tests.
pub async fn decide(front: &Arc<Front>, location: &[u8]) -> RedirectDecision {
    decide_for(front, location, &RedirectContext::app_login(), None).await
}

/// Classifies the app's `Location` and, if it is an authorize redirect to one of the
/// configured ASs for its client, performs the PAR at that AS. `cx` describes the request
/// the app answered (origin, path, query: see [`login_guard`]); `client_ip` is the
/// browser's address, for the per-client login-start limit.
pub async fn decide_for(
    front: &Arc<Front>,
    location: &[u8],
    cx: &RedirectContext<'_>,
    client_ip: Option<std::net::IpAddr>,
) -> RedirectDecision {
    let m = &front.metrics;
    let index = front.registry.index();
    let (as_index, detection) = detect_among(
        location,
        &|h| index.candidates(h),
        &|c| index.is_client(c),
        front.settings.max_location_bytes,
    );
    drop(index);
    if matches!(
        detection,
        Detection::NotOurs | Detection::Rejected(AuthorizeError::NearMiss)
    ) {
        // Without an AS's metadata we cannot tell its redirects from others. A Location on
        // its issuer's host, or on the host of the last authorize endpoint it had (or one
        // configured in `authorize_hosts`), is held back; everything else is the app's business.
        if let Some(c) = pending_for(front, location) {
            if front.settings.par_required {
                let id = InteractionId::new();
                warn!(interaction_id = %id, r#as = c.name(), reason = c.not_ready_reason().unwrap_or_default(), "authorize redirect held back: AS not ready");
                return fail(front, FailureCode::NotReady, id, Some(c.name()));
            }
        }
    }
    let client = as_index.and_then(|i| front.registry.get(i));
    let as_name = client.map(|c| c.name());
    let redirect = match detection {
        Detection::NotOurs => {
            m.redirect_passed.inc();
            return RedirectDecision::PassThrough;
        }
        Detection::Rejected(e) => {
            let id = InteractionId::new();
            warn!(interaction_id = %id, r#as = as_name.unwrap_or(""), error = %e, code = e.code(), "refused the app's authorize redirect");
            return fail(front, e.failure(), id, as_name);
        }
        Detection::Ours(r) => r,
    };
    let Some(client) = client else {
        return fail(
            front,
            FailureCode::AuthorizeRedirectRejected,
            InteractionId::new(),
            None,
        );
    };
    let name = client.name();
    let Some(metadata) = client.metadata() else {
        let id = InteractionId::new();
        warn!(interaction_id = %id, r#as = name, reason = client.not_ready_reason().unwrap_or_default(), "authorize redirect held back: AS not ready");
        return fail(front, FailureCode::NotReady, id, Some(name));
    };
    // Refused before any budget is taken or anything signed: an open redirect costs nothing.
    if let Err(Rejection { code, detail }) = screen(front, client, cx, location, &redirect) {
        let id = InteractionId::new();
        let path: String = cx.path.chars().take(200).collect();
        warn!(interaction_id = %id, r#as = name, code = code.as_str(), detail, path, "refused the app's authorize redirect: not the app's own login");
        return fail(front, code, id, Some(name));
    }
    // A login start costs a PAR: limited globally and per client before any signing.
    if let Err(limit) = front.login_limiter.check(client_ip, Instant::now()) {
        let id = InteractionId::new();
        m.login_rate_limited.with_label_values(&[name, limit.label()]).inc();
        warn!(interaction_id = %id, r#as = name, scope = limit.label(), "login start refused by the rate limit");
        return fail(front, FailureCode::TooManyLogins, id, Some(name));
    }
    let (redirect, set_cookie) = match prepare(front, client, redirect) {
        Ok(r) => r,
        Err(e) => {
            let id = InteractionId::new();
            warn!(interaction_id = %id, r#as = name, error = %e, code = e.code(), "refused the app's authorize redirect");
            return fail(front, e.failure(), id, Some(name));
        }
    };

    push_on_as_runtime(front, client, metadata, redirect, set_cookie).await
}

/// The PAR (signatures, client authentication, the call and its checks) runs on the AS
/// client runtime: a burst of logins then queues there, not in front of the proxy's
/// pass-through requests on this event loop. `par_timeout` counts from here, so time spent
/// queued for that runtime is part of it; the outer bound (one second more) only acts if
/// the runtime never gets to the task.
async fn push_on_as_runtime(
    front: &Arc<Front>,
    client: &Arc<AsClient>,
    metadata: Arc<crate::as_client::discovery::ProviderMetadata>,
    redirect: AuthorizeRedirect,
    set_cookie: Option<String>,
) -> RedirectDecision {
    let name = client.name();
    let interaction_id = InteractionId::new();
    let started = Instant::now();
    let par_timeout = client.settings.par_timeout;
    let (task_front, task_client) = (front.clone(), client.clone());
    let pushed = tokio::time::timeout(
        par_timeout + std::time::Duration::from_secs(1),
        crate::as_client::as_runtime::run(async move {
            push_at(
                &task_front,
                &task_client,
                metadata,
                redirect,
                set_cookie,
                interaction_id,
                started,
            )
            .await
        }),
    )
    .await;
    match pushed {
        Ok(Some(decision)) => decision,
        Ok(None) => {
            error!(interaction_id = %interaction_id, r#as = name, "login start failed inside the sidecar");
            fail(front, FailureCode::Internal, interaction_id, Some(name))
        }
        Err(_) => {
            warn!(interaction_id = %interaction_id, r#as = name, "login start not finished within par_timeout: the AS client runtime is overloaded");
            fail(front, FailureCode::AsTimeout, interaction_id, Some(name))
        }
    }
}

/// Pushes one prepared authorize request to `client`'s PAR endpoint and turns the outcome
/// into the browser's redirect (or error), with metrics and the log line. `interaction_id`
/// and `started` are taken before the hop to the AS client runtime, so the deadline, the
/// latency metric and the logs include any queueing there.
async fn push_at(
    front: &Front,
    client: &AsClient,
    metadata: std::sync::Arc<crate::as_client::discovery::ProviderMetadata>,
    redirect: AuthorizeRedirect,
    set_cookie: Option<String>,
    interaction_id: InteractionId,
    started: Instant,
) -> RedirectDecision {
    let m = &front.metrics;
    let name = client.name();
    let left = client.settings.par_timeout.saturating_sub(started.elapsed());
    let result = client.push_par(&metadata, m, &redirect, interaction_id, left).await;
    let elapsed = started.elapsed();
    match result {
        Ok(pushed) => {
            m.par_requests.with_label_values(&[name, "success", ""]).inc();
            m.par_duration
                .with_label_values(&[name, "success"])
                .observe(elapsed.as_secs_f64());
            m.par_expires_in.observe(pushed.expires_in as f64);
            m.redirect_rewritten.inc();
            if pushed.expires_in >= 600 {
                warn!(interaction_id = %interaction_id, r#as = name, expires_in = pushed.expires_in, "AS issued a request_uri living 600 s or more (FAPI 2.0 wants less)");
            }
            info!(
                interaction_id = %interaction_id,
                r#as = name,
                as_interaction_id = pushed.echoed_interaction_id.as_deref().unwrap_or(""),
                outcome = "success",
                as_status = pushed.as_status,
                latency_ms = elapsed.as_millis() as u64,
                expires_in = pushed.expires_in,
                request_uri = %redact(&pushed.request_uri),
                kid = pushed.kid.as_str(),
                "PAR accepted; redirect rewritten"
            );
            RedirectDecision::Rewrite {
                location: metadata
                    .authorization_endpoint
                    .rewritten_location(&client.settings.client.client_id, &pushed.request_uri),
                interaction_id,
                set_cookie,
            }
        }
        Err(e) => {
            let code = e.code();
            m.par_requests
                .with_label_values(&[name, code, e.as_error_label()])
                .inc();
            m.par_duration
                .with_label_values(&[name, code])
                .observe(elapsed.as_secs_f64());
            let (as_status, description) = match &e {
                par::ParError::Rejected {
                    status, description, ..
                } => (*status, description.clone()),
                _ => (0, None),
            };
            warn!(
                interaction_id = %interaction_id,
                r#as = name,
                outcome = code,
                as_status,
                as_error = e.as_error_label(),
                as_error_description = description.as_deref().unwrap_or(""),
                latency_ms = elapsed.as_millis() as u64,
                error = %e,
                "PAR failed"
            );
            if !front.settings.par_required {
                warn!(interaction_id = %interaction_id, "par.required is false: forwarding the app's plain redirect");
                m.redirect_passed.inc();
                return RedirectDecision::PassThrough;
            }
            fail(front, e.failure(), interaction_id, Some(name))
        }
    }
}

/// An AS without usable metadata on whose issuer or authorize host the Location lands (as a
/// browser reads it), if any. Only parsed when some AS is without usable metadata.
fn pending_for<'a>(front: &'a Front, location: &[u8]) -> Option<&'a std::sync::Arc<AsClient>> {
    if !front.registry.has_pending() {
        return None;
    }
    let text = String::from_utf8_lossy(location);
    let target = browser_target(text.trim())?;
    let u = target.url();
    if let Some(c) = front.registry.pending_on(u.host_str()?, u.port_or_known_default()) {
        return Some(c);
    }
    // On another host (an authorize endpoint off the issuer's host, not yet known): a
    // redirect carrying a not-ready AS's client_id is that AS's login; never forwarded plain.
    let ids: Vec<String> = u
        .query_pairs()
        .filter(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
        .collect();
    front
        .registry
        .clients
        .iter()
        .find(|c| !c.is_ready() && ids.iter().any(|id| id == c.settings.client.client_id.as_str()))
}

/// Applies the sidecar's policy to what will be pushed: PKCE S256, JARM when configured,
/// and the app's `state` replaced by a sealed one carrying what the callback needs.
fn prepare(
    front: &Front,
    client: &AsClient,
    mut redirect: AuthorizeRedirect,
) -> Result<(AuthorizeRedirect, Option<String>), AuthorizeError> {
    // The callback is checked on the query of the browser's GET. `form_post` (ASP.NET Core's
    // default) is kept to the AS as the query mode and the checked response is delivered to
    // the app as the POST it asked for (README "form_post"): no response ever arrives as a
    // POST the sidecar would have to trust. A JARM mode the app asks for itself is accepted
    // only at an AS configured for JARM (the sidecar then verifies it): the callback treats
    // `response` as JARM only there.
    let jarm_configured = client.settings.client.jarm;
    let mut form_post = false;
    if let Some(mode) = redirect.get_str("response_mode") {
        let jwt_mode = matches!(mode, "jwt" | "query.jwt" | "form_post.jwt");
        form_post = matches!(mode, "form_post" | "form_post.jwt");
        if !(mode == "query" || mode == "form_post" || jwt_mode && jarm_configured) {
            return Err(AuthorizeError::UnsupportedResponseMode(mode.chars().take(40).collect()));
        }
    }
    if form_post {
        redirect.params.remove("response_mode");
    }
    // FAPI 2.0 §5.3.2.2: only the code flow; the sidecar could not check a fragment response.
    match redirect.get_str("response_type") {
        Some("code") => {}
        other => {
            return Err(AuthorizeError::UnsupportedResponseType(
                other.unwrap_or("(none)").chars().take(40).collect(),
            ))
        }
    }
    let pkce = pkce::apply(&mut redirect)?;
    front.metrics.pkce.with_label_values(&[pkce.label()]).inc();
    let jarm = jarm_configured;
    if jarm {
        redirect
            .params
            .insert("response_mode".into(), Value::String("jwt".into()));
    }
    let redirect_uri = redirect.get_str("redirect_uri").map(str::to_string);
    if let Some(path) = redirect_uri
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.path().to_string())
    {
        front.learn_callback_path(&path);
    }
    // Requested ID token claim values ride in the sealed state to the token call; over the
    // bounds they could not be carried, so the parameter is refused rather than unchecked.
    let claim_values = crate::as_client::claim_values::requested(redirect.params.get("claims"))
        .map_err(|_| AuthorizeError::BadJson("claims".into()))?;
    let nonce = random_token();
    let binding = front
        .settings
        .browser_binding
        .then(|| browser_binding::new_binding(&nonce, front.settings.cookie_secure));
    let tx = TransactionState {
        app_state: redirect.get_str("state").map(str::to_string),
        verifier: match pkce {
            PkceAction::Injected(v) => Some(Secret::new(v)),
            _ => None,
        },
        redirect_uri,
        issued_at: now_secs(),
        nonce,
        jarm,
        binding: binding.as_ref().map(|b| b.hash.clone()),
        as_name: Some(client.name().to_string()),
        oidc_nonce: redirect.get_str("nonce").map(Secret::new),
        max_age: redirect.params.get("max_age").and_then(Value::as_u64),
        form_post,
        claim_values,
    };
    redirect
        .params
        .insert("state".into(), Value::String(front.sealer.seal(&tx)));
    let cookie = binding
        .map(|b| browser_binding::set_cookie(&b, front.settings.state_max_age.as_secs(), front.settings.cookie_secure));
    Ok((redirect, cookie))
}

/// The request-side screen ([`login_guard`]) and the `redirect_uri`'s scheme, in that order:
/// login path, reflection, parameter allowlist, https, then the redirect_uri's origin and
/// path. Returns the failure code and what the log line names (a parameter or a part, never
/// a value).
fn screen(
    front: &Front,
    client: &AsClient,
    cx: &RedirectContext<'_>,
    location: &[u8],
    redirect: &AuthorizeRedirect,
) -> Result<(), Rejection> {
    let refused = |r: login_guard::Refusal| Rejection::new(r.failure(), r.detail());
    // The same reading the detection made (it accepted this Location), kept as strings:
    // the reflection check compares the text the app wrote, JSON values included. The
    // endpoint's own query parameters are not the app's and are left out.
    let loc = std::str::from_utf8(location)
        .unwrap_or_default()
        .trim_matches([' ', '\t']);
    // Cannot fail after the detection accepted it; if it did, nothing would be screened.
    let Some(mut pairs) = browser_target(loc)
        .and_then(|t| t.url().query().map(|q| crate::front::location::parse_query(q).ok()))
        .flatten()
    else {
        return Err(Rejection::new(FailureCode::MalformedAuthorizeRedirect, "query"));
    };
    pairs.retain(|(k, _)| redirect.params.contains_key(k));
    let configured_paths = !front.settings.callback_paths.is_empty();
    let is_callback = |p: &str| front.is_callback_path(p);
    let policy = login_guard::Policy {
        login_paths: &front.settings.login_paths,
        allowed_parameters: client.settings.client.allowed_authorize_parameters.as_deref(),
        redirect_uri_origins: &front.settings.redirect_uri_origins,
        is_callback_path: configured_paths.then_some(&is_callback as &dyn Fn(&str) -> bool),
    };
    login_guard::screen(cx, loc, &pairs, &policy).map_err(refused)?;
    let Some(uri) = redirect.get_str("redirect_uri") else {
        return Ok(());
    };
    if front.settings.require_https_redirect_uri {
        check_redirect_uri(uri).map_err(|e| Rejection::new(e.failure(), "redirect_uri"))?;
    }
    login_guard::check_redirect_uri(cx, uri, &policy).map_err(refused)
}

/// FAPI 2.0 §5.3.2.2 / RFC 8252 §7.3: https, except http on a loopback IP (a native or test
/// client on this machine). `localhost` by name is not loopback for this rule (RFC 8252 §8.3).
pub fn check_redirect_uri(u: &str) -> Result<(), AuthorizeError> {
    let parsed = url::Url::parse(u).map_err(|_| AuthorizeError::InsecureRedirectUri)?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(AuthorizeError::InsecureRedirectUri),
    }
}

fn fail(front: &Front, code: FailureCode, id: InteractionId, as_name: Option<&str>) -> RedirectDecision {
    front.metrics.redirects.with_label_values(&["failed"]).inc();
    let err = BrowserError::counted(code, id, &front.metrics);
    RedirectDecision::Fail(match as_name {
        Some(n) => err.at(n),
        None => err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_must_be_https_or_loopback_http() {
        for ok in ["https://app.example/cb", "http://127.0.0.1:8080/cb", "http://[::1]/cb"] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "http://localhost/cb",
            "http://127.0.0.1.evil.example/cb",
            "ftp://app.example/cb",
            "not a url",
        ] {
            assert_eq!(
                check_redirect_uri(bad),
                Err(AuthorizeError::InsecureRedirectUri),
                "{bad}"
            );
        }
    }
}
