//! The response phase of the public listener: decide what happens to one upstream redirect.
//! Pure protocol logic plus metrics and logs; the pingora glue lives in `proxy`.

use std::time::Instant;

use tracing::{info, warn};

use serde_json::Value;

use crate::authorize::{detect, AuthorizeError, AuthorizeRedirect, Detection};
use crate::browser_binding;
use crate::errors::BrowserError;
use crate::jose::random_token;
use crate::par::{self, ParContext};
use crate::pkce::{self, PkceAction};
use crate::protocol::{redact, InteractionId};
use crate::request_object::now_secs;
use crate::sealed_state::TransactionState;
use crate::state::SidecarState;

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

/// Classifies the app's `Location` and, if it is our authorize redirect, performs the PAR.
pub async fn decide(state: &SidecarState, location: &[u8]) -> RedirectDecision {
    let m = &state.metrics;
    let Some(metadata) = state.discovery.get() else {
        // Without metadata we cannot tell our redirects from others. Only a Location that
        // names the issuer's host is held back; everything else is the app's business.
        let issuer_host = url::Url::parse(state.settings.issuer.as_str())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let names_as = !issuer_host.is_empty()
            && location
                .windows(issuer_host.len())
                .any(|w| w.eq_ignore_ascii_case(issuer_host.as_bytes()));
        if names_as && state.settings.par_required {
            return fail(state, 503, "not_ready", InteractionId::new());
        }
        m.redirect_passed.inc();
        return RedirectDecision::PassThrough;
    };
    let endpoint = &metadata.authorization_endpoint;
    let redirect = match detect(
        location,
        &endpoint,
        &state.settings.client_id,
        state.settings.max_location_bytes,
    ) {
        Detection::NotOurs => {
            m.redirect_passed.inc();
            return RedirectDecision::PassThrough;
        }
        Detection::Rejected(e) => {
            let id = InteractionId::new();
            warn!(interaction_id = %id, error = %e, code = e.code(), "refused the app's authorize redirect");
            return fail(state, 502, e.code(), id);
        }
        Detection::Ours(r) => r,
    };
    let (redirect, set_cookie) = match prepare(state, redirect) {
        Ok(r) => r,
        Err(e) => {
            let id = InteractionId::new();
            warn!(interaction_id = %id, error = %e, code = e.code(), "refused the app's authorize redirect");
            return fail(state, 502, e.code(), id);
        }
    };

    let interaction_id = InteractionId::new();
    let keys = state.keys.load();
    let http = state.http.load();
    let cx = ParContext {
        settings: &state.settings,
        metadata: &metadata,
        key: keys.active().clone(),
        http: http.as_ref().as_ref(),
        metrics: m.clone(),
        permits: &state.as_permits,
    };
    let started = Instant::now();
    let result = par::push(&cx, &redirect, interaction_id, state.settings.par_timeout).await;
    let elapsed = started.elapsed();
    match result {
        Ok(pushed) => {
            m.par_requests.with_label_values(&["success", ""]).inc();
            m.par_duration
                .with_label_values(&["success"])
                .observe(elapsed.as_secs_f64());
            m.par_expires_in.observe(pushed.expires_in as f64);
            m.redirect_rewritten.inc();
            if pushed.expires_in >= 600 {
                warn!(interaction_id = %interaction_id, expires_in = pushed.expires_in, "AS issued a request_uri living 600 s or more (FAPI 2.0 wants less)");
            }
            info!(
                interaction_id = %interaction_id,
                as_interaction_id = pushed.echoed_interaction_id.as_deref().unwrap_or(""),
                outcome = "success",
                as_status = pushed.as_status,
                latency_ms = elapsed.as_millis() as u64,
                expires_in = pushed.expires_in,
                request_uri = %redact(&pushed.request_uri),
                kid = keys.active().kid(),
                "PAR accepted; redirect rewritten"
            );
            RedirectDecision::Rewrite {
                location: endpoint.rewritten_location(&state.settings.client_id, &pushed.request_uri),
                interaction_id,
                set_cookie,
            }
        }
        Err(e) => {
            let code = e.code();
            m.par_requests.with_label_values(&[code, e.as_error_label()]).inc();
            m.par_duration.with_label_values(&[code]).observe(elapsed.as_secs_f64());
            let (as_status, description) = match &e {
                par::ParError::Rejected {
                    status, description, ..
                } => (*status, description.clone()),
                _ => (0, None),
            };
            warn!(
                interaction_id = %interaction_id,
                outcome = code,
                as_status,
                as_error = e.as_error_label(),
                as_error_description = description.as_deref().unwrap_or(""),
                latency_ms = elapsed.as_millis() as u64,
                error = %e,
                "PAR failed"
            );
            if !state.settings.par_required {
                warn!(interaction_id = %interaction_id, "par.required is false: forwarding the app's plain redirect");
                m.redirect_passed.inc();
                return RedirectDecision::PassThrough;
            }
            fail(state, 502, code, interaction_id)
        }
    }
}

/// Applies the sidecar's policy to what will be pushed: PKCE S256, JARM when configured,
/// and the app's `state` replaced by a sealed one carrying what the callback needs.
fn prepare(
    state: &SidecarState,
    mut redirect: AuthorizeRedirect,
) -> Result<(AuthorizeRedirect, Option<String>), AuthorizeError> {
    // The callback is checked on GET query parameters; a form_post response would arrive as
    // a POST the sidecar does not open. Refuse it clearly rather than break at the callback.
    if let Some(mode) = redirect.get_str("response_mode") {
        if !matches!(mode, "query" | "jwt" | "query.jwt") {
            return Err(AuthorizeError::UnsupportedResponseMode(mode.chars().take(40).collect()));
        }
    }
    let pkce = pkce::apply(&mut redirect)?;
    state.metrics.pkce.with_label_values(&[pkce.label()]).inc();
    if state.settings.jarm {
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
        state.learn_callback_path(&path);
    }
    let nonce = random_token();
    let binding = state
        .settings
        .browser_binding
        .then(|| browser_binding::new_binding(&nonce));
    let tx = TransactionState {
        app_state: redirect.get_str("state").map(str::to_string),
        verifier: match pkce {
            PkceAction::Injected(v) => Some(v),
            _ => None,
        },
        redirect_uri,
        issued_at: now_secs(),
        nonce,
        jarm: state.settings.jarm,
        binding: binding.as_ref().map(|b| b.hash.clone()),
    };
    redirect
        .params
        .insert("state".into(), Value::String(state.sealer.seal(&tx)));
    let cookie = binding
        .map(|b| browser_binding::set_cookie(&b, state.settings.state_max_age.as_secs(), state.settings.cookie_secure));
    Ok((redirect, cookie))
}

fn fail(state: &SidecarState, status: u16, code: &'static str, id: InteractionId) -> RedirectDecision {
    state.metrics.redirects.with_label_values(&["failed"]).inc();
    state.metrics.browser_errors.with_label_values(&[code]).inc();
    RedirectDecision::Fail(BrowserError::new(status, code, id))
}
