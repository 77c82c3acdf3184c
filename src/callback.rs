//! The request phase on the app's redirect_uri: check the authorization response before the
//! app sees it (CB-1..10). JARM is verified, RFC 9207 `iss` compared, the sealed `state`
//! opened and replay-checked; the app then gets plain `code` and its own `state`.

use serde_json::Value;
use tracing::{info, warn};

use crate::authorize::parse_query;
use crate::browser_binding;
use crate::protocol::{redact, InteractionId};
use crate::request_object::now_secs;
use crate::state::{CodeRecord, SidecarState};

#[derive(Debug)]
pub enum CallbackOutcome {
    /// Not the app's redirect_uri: proxy untouched.
    NotCallback,
    /// Proxy to the app with this query string instead.
    Forward {
        query: String,
        /// Clears the browser-binding cookie on the app's response.
        clear_cookie: Option<String>,
    },
    /// Never forwarded: an error page with this code.
    Reject {
        code: &'static str,
        interaction_id: InteractionId,
    },
}

/// Response parameters handed to the app, in this order (CB-10).
const HANDED_TO_APP: &[&str] = &["code", "state", "error", "error_description", "error_uri", "iss"];

/// Cheap pre-check for the proxy's hot path: no allocation, no lock.
pub fn is_candidate(state: &SidecarState, path: &str, query: Option<&str>) -> bool {
    state.is_callback_path(path) || query.is_some_and(looks_like_ours)
}

fn looks_like_ours(query: &str) -> bool {
    // A sealed state outside a known callback path (e.g. learned paths lost at restart).
    query.split('&').any(|kv| kv.starts_with("state=ps1."))
}

pub async fn check(state: &SidecarState, path: &str, query: Option<&str>, cookies: Option<&str>) -> CallbackOutcome {
    let q = query.unwrap_or("");
    if !is_candidate(state, path, query) {
        return CallbackOutcome::NotCallback;
    }
    let id = InteractionId::new();
    match check_inner(state, q, cookies).await {
        Ok((query, outcome, clear_cookie)) => {
            state.metrics.callback_checks.with_label_values(&[outcome]).inc();
            info!(interaction_id = %id, outcome, path, "authorization response checked; handed to the app");
            CallbackOutcome::Forward { query, clear_cookie }
        }
        Err((code, detail)) => {
            state.metrics.callback_checks.with_label_values(&[code]).inc();
            state.metrics.browser_errors.with_label_values(&[code]).inc();
            warn!(interaction_id = %id, outcome = code, detail = %detail, path, "authorization response rejected");
            CallbackOutcome::Reject {
                code,
                interaction_id: id,
            }
        }
    }
}

type Rejection = (&'static str, String);

async fn check_inner(
    state: &SidecarState,
    q: &str,
    cookies: Option<&str>,
) -> Result<(String, &'static str, Option<String>), Rejection> {
    let s = &state.settings;
    let md = state
        .discovery
        .get()
        .ok_or(("not_ready", "AS metadata not loaded".to_string()))?;
    let pairs = parse_query(q).map_err(|e| ("callback_malformed", e.to_string()))?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());

    // 1. Establish the response parameters: from the verified JARM JWT, or the query.
    let (params, jarm_used): (Vec<(String, String)>, bool) = match get("response") {
        Some(jwt) => {
            let http = state.http.load();
            let claims = state
                .jwks
                .verify(
                    &jwt,
                    http.as_ref().as_ref(),
                    md.jwks_uri.as_ref(),
                    s.issuer.as_str(),
                    s.client_id.as_str(),
                    s.discovery_timeout,
                    &state.metrics,
                )
                .await
                .map_err(|e| (e.code(), e.to_string()))?;
            // An outer iss next to JARM must agree with the inner one (CB-7).
            if let Some(outer) = get("iss") {
                if outer != s.issuer.as_str() {
                    return Err(("iss_mismatch", "outer iss differs from the issuer".into()));
                }
            }
            let params = claims
                .into_iter()
                .filter(|(k, _)| HANDED_TO_APP.contains(&k.as_str()))
                .filter_map(|(k, v)| match v {
                    Value::String(v) => Some((k, v)),
                    _ => None,
                })
                .collect();
            (params, true)
        }
        None => {
            // RFC 9207: compare iss byte for byte; required under FAPI 2.0 (CB-5, CB-6).
            match get("iss") {
                Some(iss) if iss == s.issuer.as_str() => {}
                Some(_) => return Err(("iss_mismatch", "iss differs from the issuer".into())),
                None if s.require_iss || md.iss_parameter_supported => {
                    return Err(("iss_missing", "response without iss".into()))
                }
                None => {}
            }
            (pairs.clone(), false)
        }
    };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());

    // 2. The sealed state: ours, intact, fresh, first use.
    let sealed = param("state").ok_or(("state_missing", "no state in the response".to_string()))?;
    let tx = state
        .sealer
        .open(&sealed, now_secs(), s.state_max_age.as_secs())
        .map_err(|e| (e.code(), e.to_string()))?;
    if tx.jarm && !jarm_used {
        return Err((
            "jarm_missing",
            "JARM was requested but a plain response arrived (CB-4)".into(),
        ));
    }
    // Checked before the replay cache, so a wrong browser cannot burn the response.
    let cookie_name = browser_binding::cookie_name(&tx.nonce);
    if let Some(hash) = &tx.binding {
        if !browser_binding::holds(cookies, &cookie_name, hash) {
            return Err((
                "browser_mismatch",
                "the response arrived in a browser that did not start this login".into(),
            ));
        }
    }
    if !state.replay.insert_new(tx.nonce.clone(), ()) {
        return Err((
            "callback_replayed",
            "this authorization response was already used".into(),
        ));
    }

    // 3. Hand over: the app's own state back, plain code, errors as they are. Parameters
    // that belong to the app's redirect_uri itself (`/cb?tenant=x`) are kept.
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        if k != "response" && !HANDED_TO_APP.contains(&k.as_str()) {
            out.append_pair(k, v);
        }
    }
    let outcome = if let Some(code) = param("code") {
        if param("error").is_some() {
            return Err(("callback_malformed", "both code and error".into()));
        }
        state.codes.insert_new(
            code.clone(),
            CodeRecord {
                verifier: tx.verifier.clone(),
                redirect_uri: tx.redirect_uri.clone(),
            },
        );
        info!(code = %redact(&code), pkce_injected = tx.verifier.is_some(), "authorization code received");
        out.append_pair("code", &code);
        "success"
    } else if let Some(error) = param("error") {
        out.append_pair("error", &error);
        for k in ["error_description", "error_uri"] {
            if let Some(v) = param(k) {
                out.append_pair(k, &v);
            }
        }
        "as_error"
    } else {
        return Err(("callback_malformed", "neither code nor error".into()));
    };
    if let Some(app_state) = &tx.app_state {
        out.append_pair("state", app_state);
    }
    out.append_pair("iss", s.issuer.as_str());
    let clear = tx
        .binding
        .as_ref()
        .map(|_| browser_binding::clear_cookie(&cookie_name, s.cookie_secure));
    Ok((out.finish(), outcome, clear))
}
