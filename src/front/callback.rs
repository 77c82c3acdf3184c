//! The request phase on the app's redirect_uri: check the authorization response before the
//! app sees it (CB-1..7, CB-9, CB-10). JARM is verified, RFC 9207 `iss` compared, the sealed `state`
//! opened and replay-checked; the app then gets plain `code` and its own `state`.

use crate::errors::{FailureCode, Rejection};
use serde_json::Value;
use tracing::{info, warn};

use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::jarm::{self, JarmResponse};
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::now_secs;
use crate::front::browser_binding;
use crate::front::location::parse_query;
use crate::front::plane::Front;
use crate::front::prefilter::{is_exact_spelling, response_name, scan_query, QueryScan};
use crate::front::sealed_state::{TransactionState, PREFIX as SEALED_PREFIX};
use crate::handoff::CodeRecord;
use crate::metrics::CallbackLabels;
use crate::protocol::{redact, InteractionId};

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
        /// The code handed to the app, withdrawn from the code map should the app refuse it.
        code: Option<String>,
        /// The AS the login started at.
        as_name: String,
        /// The app asked for `form_post`: these response parameters go to it as a form body
        /// (and `query` keeps only its redirect_uri's own parameters).
        form_post: Option<String>,
    },
    /// Never forwarded: an error page with this code.
    Reject {
        code: FailureCode,
        interaction_id: InteractionId,
        /// The AS the login started at, when the sealed state could be opened.
        as_name: Option<String>,
    },
}

/// Longest authorization code accepted (they are opaque tokens of tens of bytes).
const MAX_CODE_LEN: usize = 1024;

/// The authorization-response parameters: taken out of the app's own query and handed on
/// only after the checks (CB-10).
const HANDED_TO_APP: &[&str] = &["code", "state", "error", "error_description", "error_uri", "iss"];

/// Whether the app could route this path to its redirect_uri handler (or every path is
/// treated so: `callback.check_all_paths`). Normalises the path: call it only for requests
/// that carry a response-shaped parameter or a body.
pub fn on_callback_path(front: &Front, path: &str) -> bool {
    front.settings.check_all_paths || front.is_callback_path(path)
}

/// Whether a query carries authorization-response parameters (`code`, `error`, `state`,
/// `iss`, `response`, in any spelling), wherever it is: such a query is never written to a log.
pub fn looks_like_response(query: &str) -> bool {
    scan_query(query).any()
}

/// A request is checked when it carries a state this sidecar sealed (any path: learned
/// callback paths are lost at a restart), a `response` parameter while JARM is configured
/// for some AS (any path, for the same reason), or any response parameter on a path the app
/// could route to its callback handler. Anything else on a callback path (`/callback?logout`,
/// no query at all) is the app's business.
pub fn candidate(front: &Front, on_callback: bool, scan: QueryScan) -> bool {
    let jarm = scan.jarm_param && front.jarm_configured();
    scan.sealed_state || jarm || (scan.response_param || scan.jarm_param) && on_callback
}

/// Off a callback path, a `response` parameter is a JARM response to check only when its
/// (unverified) payload carries a state this sidecar sealed; anything else there is the
/// app's own parameter.
fn jarm_carries_sealed_state(front: &Front, query: &str) -> bool {
    query.split(['&', ';']).any(|seg| {
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        response_name(k) == Some("response")
            && url::form_urlencoded::parse(format!("x={v}").as_bytes()).any(|(_, jwt)| {
                jarm::encrypted_to_us(&jwt, &front.registry.clients)
                    || unverified_claims(&jwt)
                        .and_then(|c| {
                            c.get("state")
                                .and_then(Value::as_str)
                                .map(|s| s.starts_with(SEALED_PREFIX))
                        })
                        .unwrap_or(false)
            })
    })
}

/// [`candidate`] for a path and query (tests and tools; the proxy scans once itself).
pub fn is_candidate(front: &Front, path: &str, query: Option<&str>) -> bool {
    let Some(scan) = query.map(scan_query).filter(QueryScan::any) else {
        return false;
    };
    candidate(front, on_callback_path(front, path), scan)
}

/// Checks an authorization response before the app sees it, when [`candidate`] says the
/// request carries one.
pub async fn check(front: &Front, path: &str, query: Option<&str>, cookies: &[&[u8]]) -> CallbackOutcome {
    let Some(q) = query else {
        return CallbackOutcome::NotCallback;
    };
    let sc = scan_query(q);
    let on_callback = sc.any() && on_callback_path(front, path);
    if !candidate(front, on_callback, sc) {
        return CallbackOutcome::NotCallback;
    }
    if !sc.sealed_state && !on_callback && !jarm_carries_sealed_state(front, q) {
        return CallbackOutcome::NotCallback;
    }
    let id = InteractionId::new();
    let mut as_name: Option<String> = None;
    match check_inner(front, q, cookies, &mut as_name).await {
        Ok(Checked {
            query,
            outcome,
            clear_cookie,
            code,
            form_post,
        }) => {
            let name = as_name.as_deref().unwrap_or("");
            front.metrics.callback_check(CallbackLabels { as_name: name, outcome });
            info!(interaction_id = %id, r#as = name, outcome, path, "authorization response checked; handed to the app");
            CallbackOutcome::Forward {
                query,
                clear_cookie,
                interaction_id: id,
                code,
                as_name: name.to_string(),
                form_post,
            }
        }
        Err(Rejection { code, detail }) => {
            let name = as_name.as_deref().unwrap_or("");
            front.metrics.callback_check(CallbackLabels {
                as_name: name,
                outcome: code.as_str(),
            });
            warn!(interaction_id = %id, r#as = name, outcome = code.as_str(), detail = %detail, path, "authorization response rejected");
            CallbackOutcome::Reject {
                code,
                interaction_id: id,
                as_name,
            }
        }
    }
}

/// A checked response, ready for the app.
struct Checked {
    /// The query handed to the app (only its own parameters under `form_post`).
    query: String,
    outcome: &'static str,
    clear_cookie: Option<String>,
    code: Option<String>,
    /// The response parameters as a form body, when the app asked for `form_post`.
    form_post: Option<String>,
}

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
fn check_iss(front: &Front, client: &AsClient, iss: &str) -> Result<(), Rejection> {
    if iss == client.settings.issuer.as_str() {
        return Ok(());
    }
    let other = front
        .registry
        .clients
        .iter()
        .find(|c| c.index != client.index && c.settings.issuer.as_str() == iss);
    match other {
        Some(o) => Err(Rejection::new(
            FailureCode::IssMixup,
            format!(
                "the login started at `{}` but the response claims the issuer of `{}` (RFC 9207 mix-up)",
                client.name(),
                o.name()
            ),
        )),
        None => Err(Rejection::new(FailureCode::IssMismatch, "iss differs from the issuer")),
    }
}

/// The four steps of the check, in order; the first refusal ends it.
async fn check_inner(
    front: &Front,
    q: &str,
    cookies: &[&[u8]],
    as_name: &mut Option<String>,
) -> Result<Checked, Rejection> {
    let pairs = parse_response(q)?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // `response` is JARM only while some AS is configured for it; otherwise it is just one
    // of the app's parameters and never makes the sidecar fetch a JWKS.
    // An encrypted one (JARM §2.3) is decrypted first: its state is inside.
    let jarm_jwt = match get("response").filter(|_| front.jarm_configured()) {
        Some(r) => {
            Some(jarm::open(&r, &front.registry.clients).map_err(|e| Rejection::new(e.failure(), e.to_string()))?)
        }
        None => None,
    };
    let opened = open_state(front, jarm_jwt.as_ref().map(|j| j.jws.as_str()), get("state"), as_name)?;
    let (params, jarm_used) = match jarm_jwt {
        Some(jwt) => (verify_jarm(front, &opened, &jwt, get("iss")).await?, true),
        None => {
            check_plain_iss(front, &opened, get("iss"))?;
            (pairs.clone(), false)
        }
    };
    let cookie_name = check_first_use(front, &opened.tx, jarm_used, cookies)?;
    hand_over(front, &opened, &pairs, &params, jarm_used, &cookie_name)
}

/// The query, parsed, with the spellings and sizes no genuine response has refused.
fn parse_response(q: &str) -> Result<Vec<(String, String)>, Rejection> {
    let pairs = parse_query(q).map_err(|e| Rejection::new(FailureCode::CallbackMalformed, e.to_string()))?;
    // A response parameter spelt another way (`Code=`, `%20code=`, `code[]=`, or behind a
    // `;` that some stacks split on) is what an attacker adds to smuggle a second value past
    // the check to a lenient parser: refused.
    let respelt = pairs
        .iter()
        .any(|(k, _)| response_name(k).is_some() && !is_exact_spelling(k))
        || q.split('&')
            .any(|seg| seg.split_once(';').is_some_and(|(_, rest)| scan_query(rest).any()));
    if respelt {
        return Err(Rejection::new(
            FailureCode::CallbackMalformed,
            "a response parameter spelt another way (letter case, escapes, brackets, `;`)",
        ));
    }
    // Codes are short opaque strings; a huge one would sit in the code map for minutes.
    if pairs
        .iter()
        .any(|(k, v)| k == "code" && (v.is_empty() || v.len() > MAX_CODE_LEN))
    {
        return Err(Rejection::new(
            FailureCode::CallbackMalformed,
            format!("code is empty or longer than {MAX_CODE_LEN} bytes"),
        ));
    }
    Ok(pairs)
}

/// The sealed state opened, and the AS it names with that AS's metadata.
struct Opened<'a> {
    sealed: String,
    tx: TransactionState,
    client: &'a AsClient,
    md: std::sync::Arc<ProviderMetadata>,
}

/// Step 1: the sealed state names the AS the login started at; everything after is checked
/// against that AS alone. In a JARM response the state is inside the JWT.
/// `as_name` is set as soon as the AS is known: the refusals after it are counted for that AS.
fn open_state<'a>(
    front: &'a Front,
    jarm_jwt: Option<&str>,
    state: Option<String>,
    as_name: &mut Option<String>,
) -> Result<Opened<'a>, Rejection> {
    let sealed = match jarm_jwt {
        Some(jwt) => unverified_claims(jwt)
            .and_then(|c| c.get("state").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| Rejection::new(FailureCode::JarmInvalid, "response JWT without a readable state"))?,
        None => state.ok_or_else(|| Rejection::new(FailureCode::StateMissing, "no state in the response"))?,
    };
    let tx = front
        .sealer
        .open(&sealed, now_secs(), front.settings.state_max_age.as_secs())
        .map_err(|e| Rejection::new(e.failure(), e.to_string()))?;
    let client = front.registry.for_state(tx.as_name.as_deref()).ok_or_else(|| {
        Rejection::new(
            FailureCode::StateForeign,
            "the state names an AS that is not configured",
        )
    })?;
    *as_name = Some(client.name().to_string());
    let md = client
        .metadata()
        .ok_or_else(|| Rejection::new(FailureCode::NotReady, "AS metadata not loaded"))?;
    if jarm_jwt.is_some() && !tx.jarm {
        // Only a login that asked for JARM gets one: no JWKS fetch for the others.
        return Err(Rejection::new(
            FailureCode::JarmInvalid,
            "a JARM response to a login that did not request JARM",
        ));
    }
    Ok(Opened { sealed, tx, client, md })
}

/// Step 2a: the response parameters from the JARM JWT, verified with that AS's JWKS (CB-5, CB-7).
async fn verify_jarm(
    front: &Front,
    o: &Opened<'_>,
    jwt: &JarmResponse,
    outer_iss: Option<String>,
) -> Result<Vec<(String, String)>, Rejection> {
    let client = o.client;
    // An outer iss next to JARM must agree with the inner one (CB-7).
    if let Some(outer) = outer_iss {
        check_iss(front, client, &outer)?;
    }
    // The inner iss first, so a mix-up is named as such rather than as a bad JWT.
    if let Some(inner) =
        unverified_claims(&jwt.jws).and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string))
    {
        check_iss(front, client, &inner)?;
    }
    let s = &front.settings;
    let claims = jarm::verify(client, &o.md, jwt, s.clock_skew, s.discovery_timeout, &front.metrics)
        .await
        .map_err(|e| Rejection::new(e.failure(), e.to_string()))?;
    if claims.get("state").and_then(Value::as_str) != Some(o.sealed.as_str()) {
        return Err(Rejection::new(
            FailureCode::JarmInvalid,
            "the verified JWT carries another state",
        ));
    }
    Ok(claims
        .into_iter()
        .filter(|(k, _)| HANDED_TO_APP.contains(&k.as_str()))
        .filter_map(|(k, v)| match v {
            Value::String(v) => Some((k, v)),
            _ => None,
        })
        .collect())
}

/// Step 2b: a plain response: RFC 9207 `iss` compared byte for byte, required when configured or
/// advertised (CB-6).
fn check_plain_iss(front: &Front, o: &Opened<'_>, iss: Option<String>) -> Result<(), Rejection> {
    match iss {
        Some(iss) => check_iss(front, o.client, &iss),
        None if front.settings.require_iss || o.md.iss_parameter_supported => {
            Err(Rejection::new(FailureCode::IssMissing, "response without iss"))
        }
        None => Ok(()),
    }
}

/// Step 3: the sealed state: ours, intact, fresh (step 1), for this response mode, this browser,
/// first use. Returns the name of the login's binding cookie.
fn check_first_use(
    front: &Front,
    tx: &TransactionState,
    jarm_used: bool,
    cookies: &[&[u8]],
) -> Result<String, Rejection> {
    if tx.jarm && !jarm_used {
        return Err(Rejection::new(
            FailureCode::JarmMissing,
            "JARM was requested but a plain response arrived (CB-4)",
        ));
    }
    // Checked before the replay cache, so a wrong browser cannot burn the response.
    let cookie_name = browser_binding::cookie_name(&tx.nonce, front.settings.cookie_secure);
    if let Some(hash) = &tx.binding {
        if !browser_binding::holds(cookies, &cookie_name, hash) {
            return Err(Rejection::new(
                FailureCode::BrowserMismatch,
                "the response arrived in a browser that did not start this login",
            ));
        }
    }
    if !front.replay.insert_new(tx.nonce.clone(), ()) {
        return Err(Rejection::new(
            FailureCode::CallbackReplayed,
            "this authorization response was already used",
        ));
    }
    Ok(cookie_name)
}

/// Step 4: hand over: the app's own state back, plain code, errors as they are. Parameters
/// that belong to the app's redirect_uri itself (`/cb?tenant=x`) are kept.
fn hand_over(
    front: &Front,
    o: &Opened<'_>,
    pairs: &[(String, String)],
    params: &[(String, String)],
    jarm_used: bool,
    cookie_name: &str,
) -> Result<Checked, Rejection> {
    let (client, tx, s) = (o.client, &o.tx, &front.settings);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut own = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        let response_param = HANDED_TO_APP.contains(&k.as_str()) || jarm_used && k == "response";
        if !response_param {
            own.append_pair(k, v);
        }
    }
    let own = own.finish();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let code = param("code");
    let outcome = if let Some(code) = &code {
        if param("error").is_some() {
            return Err(Rejection::new(FailureCode::CallbackMalformed, "both code and error"));
        }
        let fresh = front.codes.insert_new(
            code.clone(),
            CodeRecord {
                as_index: client.index,
                verifier: tx.verifier.clone(),
                redirect_uri: tx.redirect_uri.clone(),
                nonce: tx.oidc_nonce.clone(),
                max_age: tx.max_age,
                claim_values: tx.claim_values.clone(),
            },
        );
        if !fresh {
            // A code already awaiting its token call: never re-bound to another login.
            return Err(Rejection::new(
                FailureCode::CallbackReplayed,
                "this authorization code was already delivered",
            ));
        }
        info!(r#as = client.name(), code = %redact(code), pkce_injected = tx.verifier.is_some(), "authorization code received");
        out.append_pair("code", code);
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
        return Err(Rejection::new(FailureCode::CallbackMalformed, "neither code nor error"));
    };
    if let Some(app_state) = &tx.app_state {
        out.append_pair("state", app_state);
    }
    out.append_pair("iss", client.settings.issuer.as_str());
    let clear = tx
        .binding
        .as_ref()
        .map(|_| browser_binding::clear_cookie(cookie_name, s.cookie_secure));
    let response = out.finish();
    let (query, form_post) = if tx.form_post {
        (own, Some(response))
    } else if own.is_empty() {
        (response, None)
    } else {
        (format!("{own}&{response}"), None)
    };
    Ok(Checked {
        query,
        outcome,
        clear_cookie: clear,
        code,
        form_post,
    })
}
