//! The request phase on the app's redirect_uri: check the authorization response before the
//! app sees it (CB-1..10). JARM is verified, RFC 9207 `iss` compared, the sealed `state`
//! opened and replay-checked; the app then gets plain `code` and its own `state`.

use crate::errors::FailureCode;
use serde_json::Value;
use tracing::{info, warn};

use crate::as_client::registry::AsClient;
use crate::as_client::request_object::now_secs;
use crate::front::authorize::parse_query;
use crate::front::browser_binding;
use crate::front::sealed_state::PREFIX as SEALED_PREFIX;
use crate::protocol::{redact, InteractionId};
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
        /// Logged with this check: the proxy's own error line for this request quotes it.
        interaction_id: InteractionId,
    },
    /// Never forwarded: an error page with this code.
    Reject {
        code: FailureCode,
        interaction_id: InteractionId,
        /// The AS the login started at, when the sealed state could be opened.
        as_name: Option<String>,
    },
}

/// Response parameters handed to the app, in this order (CB-10).
/// Longest authorization code accepted (they are opaque tokens of tens of bytes).
const MAX_CODE_LEN: usize = 1024;

const HANDED_TO_APP: &[&str] = &["code", "state", "error", "error_description", "error_uri", "iss"];

/// What the hot path learns from a query string, without allocating. Parameter names (and
/// the sealed-state prefix) are compared percent-decoded, so `%63ode=` is `code=` here as it
/// is in the app; `;` counts as a separator too, as some app frameworks treat it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct QueryScan {
    /// `code`, `error` or `state`: an authorization response on a callback path.
    response_param: bool,
    /// `response`: a JARM response (only when JARM is configured for some AS).
    jarm_param: bool,
    /// `state=ps1.…`: a state this sidecar sealed, on whatever path it arrives.
    sealed_state: bool,
}

fn scan(query: &str) -> QueryScan {
    let mut out = QueryScan::default();
    for seg in query.split(['&', ';']) {
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        if decoded_eq(k, "state") {
            out.response_param = true;
            out.sealed_state |= decoded_starts_with(v, SEALED_PREFIX);
        } else if decoded_eq(k, "code") || decoded_eq(k, "error") {
            out.response_param = true;
        } else if decoded_eq(k, "response") {
            out.jarm_param = true;
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The bytes of a query component, percent-decoded on the fly (`+` is a space).
fn decoded(raw: &str) -> impl Iterator<Item = u8> + '_ {
    let b = raw.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if c == b'%' {
            if let (Some(h), Some(l)) = (b.get(i + 1).and_then(|x| hex(*x)), b.get(i + 2).and_then(|x| hex(*x))) {
                i += 3;
                return Some(h << 4 | l);
            }
        }
        i += 1;
        Some(if c == b'+' { b' ' } else { c })
    })
}

/// Case-insensitive: some app frameworks (ASP.NET) read `Code=` as `code=`, so a case
/// variant must be looked at, never waved through.
fn decoded_eq(raw: &str, name: &str) -> bool {
    decoded(raw).map(|b| b.to_ascii_lowercase()).eq(name.bytes())
}

fn decoded_starts_with(raw: &str, prefix: &str) -> bool {
    let mut d = decoded(raw);
    prefix.bytes().all(|p| d.next() == Some(p))
}

/// Cheap pre-check for the proxy's hot path: no allocation, no lock. A request is looked at
/// when it carries a state this sidecar sealed (any path: learned callback paths are lost at
/// a restart), a `response` parameter while JARM is configured for some AS (any path, for
/// the same reason), or `code`/`error`/`state` on a callback path. Anything else on a
/// callback path (`/callback?logout`, no query at all) is the app's business.
pub fn is_candidate(state: &SidecarState, path: &str, query: Option<&str>) -> bool {
    let Some(q) = query else { return false };
    candidate(state, path, scan(q))
}

/// Whether a query carries authorization-response parameters (`code`, `error`, `state`,
/// `response`), wherever it is: such a query is never written to a log.
pub fn looks_like_response(query: &str) -> bool {
    scan(query) != QueryScan::default()
}

fn candidate(state: &SidecarState, path: &str, scan: QueryScan) -> bool {
    let jarm = scan.jarm_param && state.jarm_configured();
    scan.sealed_state || jarm || scan.response_param && state.is_callback_path(path)
}

/// Off a callback path, a `response` parameter is a JARM response to check only when its
/// (unverified) payload carries a state this sidecar sealed; anything else there is the
/// app's own parameter.
fn jarm_carries_sealed_state(query: &str) -> bool {
    query.split('&').any(|seg| {
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        decoded_eq(k, "response")
            && url::form_urlencoded::parse(format!("x={v}").as_bytes()).any(|(_, jwt)| {
                unverified_claims(&jwt)
                    .and_then(|c| {
                        c.get("state")
                            .and_then(Value::as_str)
                            .map(|s| s.starts_with(SEALED_PREFIX))
                    })
                    .unwrap_or(false)
            })
    })
}

pub async fn check(state: &SidecarState, path: &str, query: Option<&str>, cookies: &[&[u8]]) -> CallbackOutcome {
    let Some(q) = query else {
        return CallbackOutcome::NotCallback;
    };
    let sc = scan(q);
    if !candidate(state, path, sc) {
        return CallbackOutcome::NotCallback;
    }
    if !sc.sealed_state && !state.is_callback_path(path) && !jarm_carries_sealed_state(q) {
        return CallbackOutcome::NotCallback;
    }
    let id = InteractionId::new();
    let mut as_name: Option<String> = None;
    match check_inner(state, q, cookies, &mut as_name).await {
        Ok((query, outcome, clear_cookie)) => {
            let name = as_name.as_deref().unwrap_or("");
            state.metrics.callback_checks.with_label_values(&[name, outcome]).inc();
            info!(interaction_id = %id, r#as = name, outcome, path, "authorization response checked; handed to the app");
            CallbackOutcome::Forward {
                query,
                clear_cookie,
                interaction_id: id,
            }
        }
        Err((code, detail)) => {
            let name = as_name.as_deref().unwrap_or("");
            state
                .metrics
                .callback_checks
                .with_label_values(&[name, code.as_str()])
                .inc();
            state.metrics.browser_errors.with_label_values(&[code.as_str()]).inc();
            warn!(interaction_id = %id, r#as = name, outcome = code.as_str(), detail = %detail, path, "authorization response rejected");
            CallbackOutcome::Reject {
                code,
                interaction_id: id,
                as_name,
            }
        }
    }
}

type Rejection = (FailureCode, String);

/// The unverified claims of a compact JWS: only used to find the sealed `state` (itself
/// authenticated by its AEAD) and so the AS whose JWKS must then verify the JWT.
fn unverified_claims(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// RFC 9207 §2.4: `iss` must be the issuer of the AS the login started at, byte for byte.
/// Another configured AS's issuer is the mix-up attack and gets its own code.
fn check_iss(state: &SidecarState, client: &AsClient, iss: &str) -> Result<(), Rejection> {
    if iss == client.settings.issuer.as_str() {
        return Ok(());
    }
    let other = state
        .registry
        .clients
        .iter()
        .find(|c| c.index != client.index && c.settings.issuer.as_str() == iss);
    match other {
        Some(o) => Err((
            FailureCode::IssMixup,
            format!(
                "the login started at `{}` but the response claims the issuer of `{}` (RFC 9207 mix-up)",
                client.name(),
                o.name()
            ),
        )),
        None => Err((FailureCode::IssMismatch, "iss differs from the issuer".into())),
    }
}

async fn check_inner(
    state: &SidecarState,
    q: &str,
    cookies: &[&[u8]],
    as_name: &mut Option<String>,
) -> Result<(String, &'static str, Option<String>), Rejection> {
    let s = &state.settings;
    let pairs = parse_query(q).map_err(|e| (FailureCode::CallbackMalformed, e.to_string()))?;
    // A response parameter in another letter case (`Code=`) is what an attacker adds to
    // smuggle a second value past the check to a case-insensitive app: refused.
    if pairs.iter().any(|(k, _)| {
        let lower = k.to_ascii_lowercase();
        lower != *k && (HANDED_TO_APP.contains(&lower.as_str()) || lower == "response")
    }) {
        return Err((
            FailureCode::CallbackMalformed,
            "a response parameter in another letter case".into(),
        ));
    }
    // Codes are short opaque strings; a huge one would sit in the code map for minutes.
    if pairs
        .iter()
        .any(|(k, v)| k == "code" && (v.is_empty() || v.len() > MAX_CODE_LEN))
    {
        return Err((
            FailureCode::CallbackMalformed,
            format!("code is empty or longer than {MAX_CODE_LEN} bytes"),
        ));
    }
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // `response` is JARM only while some AS is configured for it; otherwise it is just one
    // of the app's parameters and never makes the sidecar fetch a JWKS.
    let jarm_configured = state.jarm_configured();
    let jarm_jwt = if jarm_configured { get("response") } else { None };

    // 1. The sealed state names the AS the login started at; everything after is checked
    // against that AS alone. In a JARM response the state is inside the JWT.
    let sealed = match &jarm_jwt {
        Some(jwt) => unverified_claims(jwt)
            .and_then(|c| c.get("state").and_then(Value::as_str).map(str::to_string))
            .ok_or((
                FailureCode::JarmInvalid,
                "response JWT without a readable state".to_string(),
            ))?,
        None => get("state").ok_or((FailureCode::StateMissing, "no state in the response".to_string()))?,
    };
    let tx = state
        .sealer
        .open(&sealed, now_secs(), s.state_max_age.as_secs())
        .map_err(|e| (e.failure(), e.to_string()))?;
    let client = state.registry.for_state(tx.as_name.as_deref()).ok_or((
        FailureCode::StateForeign,
        "the state names an AS that is not configured".to_string(),
    ))?;
    *as_name = Some(client.name().to_string());
    let md = client
        .metadata()
        .ok_or((FailureCode::NotReady, "AS metadata not loaded".to_string()))?;
    let issuer = client.settings.issuer.as_str();
    let client_id = client.settings.client.client_id.as_str();
    if jarm_jwt.is_some() && !tx.jarm {
        // Only a login that asked for JARM gets one: no JWKS fetch for the others.
        return Err((
            FailureCode::JarmInvalid,
            "a JARM response to a login that did not request JARM".into(),
        ));
    }

    // 2. Establish the response parameters: from the JARM JWT verified with that AS's JWKS,
    // or the query with RFC 9207 `iss` compared byte for byte (CB-5, CB-6).
    let (params, jarm_used): (Vec<(String, String)>, bool) = match jarm_jwt {
        Some(jwt) => {
            // An outer iss next to JARM must agree with the inner one (CB-7).
            if let Some(outer) = get("iss") {
                check_iss(state, client, &outer)?;
            }
            // The inner iss first, so a mix-up is named as such rather than as a bad JWT.
            if let Some(inner) =
                unverified_claims(&jwt).and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string))
            {
                check_iss(state, client, &inner)?;
            }
            let http = client.http.load();
            let claims = client
                .jwks
                .verify(
                    &jwt,
                    http.as_ref().as_ref(),
                    md.jwks_uri.as_ref(),
                    issuer,
                    client_id,
                    s.discovery_timeout,
                    &state.metrics,
                )
                .await
                .map_err(|e| (e.failure(), e.to_string()))?;
            if claims.get("state").and_then(Value::as_str) != Some(sealed.as_str()) {
                return Err((
                    FailureCode::JarmInvalid,
                    "the verified JWT carries another state".into(),
                ));
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
            match get("iss") {
                Some(iss) => check_iss(state, client, &iss)?,
                None if s.require_iss || md.iss_parameter_supported => {
                    return Err((FailureCode::IssMissing, "response without iss".into()))
                }
                None => {}
            }
            (pairs.clone(), false)
        }
    };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());

    // 3. The sealed state: ours, intact, fresh (above), for this response mode, this browser,
    // first use.
    if tx.jarm && !jarm_used {
        return Err((
            FailureCode::JarmMissing,
            "JARM was requested but a plain response arrived (CB-4)".into(),
        ));
    }
    // Checked before the replay cache, so a wrong browser cannot burn the response.
    let cookie_name = browser_binding::cookie_name(&tx.nonce, s.cookie_secure);
    if let Some(hash) = &tx.binding {
        if !browser_binding::holds(cookies, &cookie_name, hash) {
            return Err((
                FailureCode::BrowserMismatch,
                "the response arrived in a browser that did not start this login".into(),
            ));
        }
    }
    if !state.replay.insert_new(tx.nonce.clone(), ()) {
        return Err((
            FailureCode::CallbackReplayed,
            "this authorization response was already used".into(),
        ));
    }

    // 4. Hand over: the app's own state back, plain code, errors as they are. Parameters
    // that belong to the app's redirect_uri itself (`/cb?tenant=x`) are kept.
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        let response_param = HANDED_TO_APP.contains(&k.as_str()) || jarm_used && k == "response";
        if !response_param {
            out.append_pair(k, v);
        }
    }
    let outcome = if let Some(code) = param("code") {
        if param("error").is_some() {
            return Err((FailureCode::CallbackMalformed, "both code and error".into()));
        }
        let fresh = state.codes.insert_new(
            code.clone(),
            CodeRecord {
                as_index: client.index,
                verifier: tx.verifier.clone(),
                redirect_uri: tx.redirect_uri.clone(),
                nonce: tx.oidc_nonce.clone(),
                max_age: tx.max_age,
            },
        );
        if !fresh {
            // A code already awaiting its token call: never re-bound to another login.
            return Err((
                FailureCode::CallbackReplayed,
                "this authorization code was already delivered".into(),
            ));
        }
        info!(r#as = client.name(), code = %redact(&code), pkce_injected = tx.verifier.is_some(), "authorization code received");
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
        return Err((FailureCode::CallbackMalformed, "neither code nor error".into()));
    };
    if let Some(app_state) = &tx.app_state {
        out.append_pair("state", app_state);
    }
    out.append_pair("iss", issuer);
    let clear = tx
        .binding
        .as_ref()
        .map(|_| browser_binding::clear_cookie(&cookie_name, s.cookie_secure));
    Ok((out.finish(), outcome, clear))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_decodes_names_and_the_sealed_prefix() {
        let none = QueryScan::default();
        for q in ["", "login", "v=3", "codes=1", "xcode=1", "responses=1", "state_x=ps1.a"] {
            assert_eq!(scan(q), none, "{q}");
        }
        let resp = QueryScan {
            response_param: true,
            ..none
        };
        for q in [
            "code=1",
            "%63ode=1",
            "c%6Fde=1",
            "a=1;error=x",
            "state=plain",
            "%73tate=x",
        ] {
            assert_eq!(scan(q), resp, "{q}");
        }
        let sealed = QueryScan {
            response_param: true,
            sealed_state: true,
            ..none
        };
        for q in ["state=ps1.abc", "%73tate=ps1%2Eabc", "x=1&state=%70s1.abc"] {
            assert_eq!(scan(q), sealed, "{q}");
        }
        assert!(scan("response=a.b.c").jarm_param);
        assert!(scan("re%73ponse=x").jarm_param);
        // Malformed escapes are compared as they are, never panic.
        assert_eq!(scan("%=1&%6=2&code%"), none);
        assert!(looks_like_response("x=1&code=2"));
        assert!(!looks_like_response("login"));
    }
}
