//! The PAR call (RFC 9126): sign the request object and client assertion, POST them over
//! mTLS, parse the 201 or the OAuth error. No pingora here; the HTTP client is a seam.

use crate::errors::FailureCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

use crate::as_client::assertion_pool::AssertionPool;
use crate::as_client::discovery::ProviderMetadata;
use crate::as_client::http_client::{AsHttp, AsRequest, TransportError};
use crate::as_client::jose::SigningKey;
use crate::as_client::registry::AsClient;
use crate::as_client::request_object::{now_secs, request_object_claims, CLIENT_ASSERTION_TYPE, REQUEST_OBJECT_TYP};
use crate::config::{AsSettings, AuthMethod};
use crate::metrics::Metrics;
use crate::protocol::authorize::AuthorizeRedirect;
use crate::protocol::InteractionId;

#[derive(Debug, Error)]
pub enum ParError {
    #[error("AS unreachable: {0}")]
    Transport(TransportError),
    #[error("AS rejected the PAR with HTTP {status}: {error}")]
    Rejected {
        status: u16,
        /// OAuth `error` code, sanitised for use as a metric label.
        error: String,
        /// Logged, never shown to the browser.
        description: Option<String>,
    },
    #[error("AS failed with HTTP {status} ({error})")]
    ServerError { status: u16, error: String },
    #[error("AS rate-limited the PAR (HTTP 429)")]
    RateLimited { retry_after: Option<Duration> },
    #[error("too many concurrent calls to the AS")]
    Overloaded,
    #[error("AS answered the PAR with an unusable response: {0}")]
    BadResponse(String),
    #[error("signing failed")]
    Signing,
}

impl ParError {
    /// Stable error code for the browser page and the `outcome` metric label.
    /// The browser-facing failure this error becomes.
    pub fn failure(&self) -> FailureCode {
        match self {
            ParError::Transport(TransportError::Timeout) => FailureCode::AsTimeout,
            ParError::Transport(TransportError::Tls(_)) => FailureCode::AsTlsFailure,
            ParError::Transport(TransportError::TooLarge(_)) => FailureCode::AsBadResponse,
            ParError::Transport(_) => FailureCode::AsUnavailable,
            ParError::Rejected { .. } => FailureCode::ParRejected,
            ParError::ServerError { .. } => FailureCode::AsServerError,
            ParError::RateLimited { .. } => FailureCode::AsRateLimited,
            ParError::Overloaded => FailureCode::AsOverloaded,
            ParError::BadResponse(_) => FailureCode::AsBadResponse,
            ParError::Signing => FailureCode::SigningFailed,
        }
    }

    /// The stable code (metric label).
    pub fn code(&self) -> &'static str {
        self.failure().as_str()
    }

    pub fn as_error_label(&self) -> &str {
        match self {
            ParError::Rejected { error, .. } | ParError::ServerError { error, .. } => error,
            _ => "",
        }
    }

    /// Safe to retry with a fresh assertion: nothing reached the AS, or it said "later".
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ParError::Transport(TransportError::Connect(_))
                | ParError::ServerError { .. }
                | ParError::RateLimited { .. }
        )
    }
}

/// What the AS gave back for one pushed request.
#[derive(Debug, Clone)]
pub struct PushedRequest {
    pub request_uri: String,
    pub expires_in: u64,
    pub as_status: u16,
    /// `x-fapi-interaction-id` the AS echoed, if any.
    pub echoed_interaction_id: Option<String>,
}

#[derive(Deserialize)]
struct ParSuccess {
    request_uri: Option<serde_json::Value>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

/// Restricts an AS-provided error code to a safe label: `[a-z_]{1,40}` or `unknown`.
pub fn sanitize_error_code(s: &str) -> String {
    if KNOWN_ERROR_CODES.contains(&s) {
        s.to_string()
    } else if !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        // Well-formed but not registered: one label, so an AS cannot grow the series count.
        "other".into()
    } else {
        "unknown".into()
    }
}

/// The OAuth error codes an AS may send (RFC 6749 §4.1.2.1/§5.2, RFC 6750, RFC 7009,
/// RFC 9101, RFC 9126, RFC 9449, OIDC Core §3.1.2.6): the only ones that become labels.
const KNOWN_ERROR_CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "invalid_token",
    "insufficient_scope",
    "unsupported_token_type",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "invalid_redirect_uri",
    "invalid_authorization_details",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "interaction_required",
    "login_required",
    "consent_required",
    "account_selection_required",
    "registration_not_supported",
    "slow_down",
];

/// One JWT to sign: its `typ` header, the metric `purpose` label, its claims.
struct JwtToSign {
    key: Arc<SigningKey>,
    typ: Option<&'static str>,
    purpose: &'static str,
    claims: serde_json::Map<String, serde_json::Value>,
}

/// Signs JWTs (each with its own key), timing each. RSA and P-384/P-521 signing (~0.3 ms
/// and more each) runs on the low-priority signing threads so it never stalls or starves
/// the proxy; ES256 and Ed25519 (~15 us) sign inline.
async fn sign_all(jwts: Vec<JwtToSign>, metrics: Arc<Metrics>) -> Result<Vec<String>, ParError> {
    let slow = jwts.iter().any(|j| j.key.alg().signs_slowly());
    let work = move || -> Result<Vec<String>, ParError> {
        jwts.into_iter()
            .map(|j| {
                let t = Instant::now();
                let jwt = j.key.sign_jwt(j.typ, &j.claims).map_err(|_| ParError::Signing)?;
                metrics
                    .signing_duration
                    .with_label_values(&[j.key.alg().as_str(), j.purpose])
                    .observe(t.elapsed().as_secs_f64());
                Ok(jwt)
            })
            .collect()
    };
    if slow {
        super::signing_pool::run(work).await.ok_or(ParError::Signing)?
    } else {
        work()
    }
}

/// Where one call's client assertion comes from.
enum NextAssertion {
    /// Pre-signed, taken from the pool (used once).
    Pooled(String),
    /// To sign now, with the rest of the call's JWTs.
    Sign(JwtToSign),
}

/// The one place a `private_key_jwt` assertion is chosen for a back-channel call (PAR,
/// token, revocation, DPoP nonce retries): a fresh pooled one signed with `key` when there
/// is one, else new claims to sign inline. Either way a new `jti` (CA-2), and the pool's
/// background refill is started (never waited for).
fn next_assertion(
    pool: &Arc<AssertionPool>,
    key: Arc<SigningKey>,
    metrics: &Arc<Metrics>,
    as_name: &str,
) -> NextAssertion {
    let (pooled, discarded) = pool.take(&key);
    if discarded.stale > 0 {
        metrics
            .assertion_pool_discarded
            .with_label_values(&[as_name, "stale"])
            .inc_by(discarded.stale as u64);
    }
    if discarded.rotated > 0 {
        metrics
            .assertion_pool_discarded
            .with_label_values(&[as_name, "rotated"])
            .inc_by(discarded.rotated as u64);
    }
    pool.refill_in_background(key.clone(), metrics.clone());
    match pooled {
        Some(jwt) => {
            metrics.client_assertions.with_label_values(&[as_name, "pooled"]).inc();
            NextAssertion::Pooled(jwt)
        }
        None => {
            metrics.client_assertions.with_label_values(&[as_name, "inline"]).inc();
            NextAssertion::Sign(JwtToSign {
                key,
                typ: None,
                purpose: "client_assertion",
                claims: pool.claims(now_secs()),
            })
        }
    }
}

/// A fresh `private_key_jwt` assertion (new `jti`) for one back-channel call, or `None`
/// for `tls_client_auth`.
pub async fn fresh_client_assertion(
    client: &AsClient,
    key: Arc<SigningKey>,
    metrics: Arc<Metrics>,
) -> Result<Option<String>, ParError> {
    let c = &client.settings.client;
    if c.auth_method != AuthMethod::PrivateKeyJwt {
        return Ok(None);
    }
    match next_assertion(&client.assertions, key, &metrics, client.name()) {
        NextAssertion::Pooled(jwt) => Ok(Some(jwt)),
        NextAssertion::Sign(jwt) => Ok(sign_all(vec![jwt], metrics).await?.pop()),
    }
}

/// The client authentication form parameters for one back-channel call to this AS: its
/// client_id and, for private_key_jwt, a fresh assertion (CA-1: exactly one mechanism).
pub async fn client_auth_form(
    client: &AsClient,
    key: Arc<SigningKey>,
    metrics: Arc<Metrics>,
) -> Result<Vec<(String, String)>, ParError> {
    let mut form = vec![(
        "client_id".to_string(),
        client.settings.client.client_id.as_str().to_string(),
    )];
    if let Some(a) = fresh_client_assertion(client, key, metrics).await? {
        form.push(("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()));
        form.push(("client_assertion".into(), a));
    }
    Ok(form)
}

/// Everything the PAR call needs, borrowed from the running state.
pub struct ParContext<'a> {
    pub settings: &'a AsSettings,
    pub metadata: &'a ProviderMetadata,
    /// Signs the client assertion.
    pub key: Arc<SigningKey>,
    /// Signs the request object (the same key unless one per purpose is configured).
    pub request_object_key: Arc<SigningKey>,
    pub http: &'a dyn AsHttp,
    pub metrics: Arc<Metrics>,
    /// Bounds concurrent calls to the AS.
    pub permits: &'a tokio::sync::Semaphore,
    /// Pre-signed client assertions of this AS.
    pub assertions: &'a Arc<AssertionPool>,
    /// The DPoP key's RFC 7638 thumbprint when tokens are DPoP-bound: binds the code to the
    /// key (RFC 9449 §10, DP-5).
    pub dpop_jkt: Option<String>,
}

const MAX_ATTEMPTS: u32 = 3;
/// An attempt needs at least this much of the deadline left to be worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(200);

/// Full-jitter exponential backoff: 100 ms, 200 ms, ... scaled by a random 50..100 %.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.saturating_sub(1).min(6);
    let jitter = 50 + (rand::random::<u8>() as u64 % 51);
    Duration::from_millis(base * jitter / 100)
}

/// Pushes one authorization request within `deadline` (the browser request's budget).
/// Connect errors, 5xx and 429 are retried with backoff; every attempt is signed afresh, so
/// no assertion `jti` is ever sent twice (CA-2).
pub async fn push(
    cx: &ParContext<'_>,
    redirect: &AuthorizeRedirect,
    interaction_id: InteractionId,
    deadline: Duration,
) -> Result<PushedRequest, ParError> {
    let start = Instant::now();
    let _permit = tokio::time::timeout(deadline, cx.permits.acquire())
        .await
        .map_err(|_| ParError::Overloaded)?
        .map_err(|_| ParError::Overloaded)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_sub(start.elapsed());
        let result = push_once(cx, redirect, interaction_id, remaining).await;
        if let Err(e) = &result {
            if e.retryable() && attempt < MAX_ATTEMPTS {
                let wait = match e {
                    // Never longer than the deadline: an AS's `Retry-After` is its input.
                    ParError::RateLimited { retry_after: Some(d) } => (*d).min(deadline),
                    _ => backoff(attempt),
                };
                if fits_deadline(start.elapsed(), wait, deadline) {
                    cx.metrics
                        .par_retries
                        .with_label_values(&[cx.settings.name.as_str(), e.code()])
                        .inc();
                    tracing::info!(interaction_id = %interaction_id, attempt, reason = e.code(), wait_ms = wait.as_millis() as u64, "retrying PAR");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
        }
        return result;
    }
}

/// Whether a retry after `wait` still leaves an attempt's worth of the deadline. Saturating:
/// `elapsed + wait` of an AS's `Retry-After: 18446744073709551615` would overflow a
/// `Duration` (a panic in the login start).
fn fits_deadline(elapsed: Duration, wait: Duration, deadline: Duration) -> bool {
    elapsed.saturating_add(wait).saturating_add(MIN_ATTEMPT) < deadline
}

/// `Retry-After` in delay-seconds (RFC 9110 §10.2.3); digits beyond `u64` saturate. The
/// HTTP-date form and anything else is `None` (the caller backs off on its own).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)))
}

async fn push_once(
    cx: &ParContext<'_>,
    redirect: &AuthorizeRedirect,
    interaction_id: InteractionId,
    timeout: Duration,
) -> Result<PushedRequest, ParError> {
    if timeout.is_zero() {
        return Err(ParError::Transport(TransportError::Timeout));
    }
    let s = cx.settings;
    let c = &s.client;
    let now = now_secs();
    // JAR unless configured off, and always when the AS requires signed request objects.
    let use_jar = s.request_object || cx.metadata.require_signed_request_object;
    // Taken first: a pooled assertion leaves only the request object to sign.
    let mut pooled = None;
    let mut assertion = None;
    if c.auth_method == AuthMethod::PrivateKeyJwt {
        match next_assertion(cx.assertions, cx.key.clone(), &cx.metrics, s.name.as_str()) {
            NextAssertion::Pooled(jwt) => pooled = Some(jwt),
            NextAssertion::Sign(jwt) => assertion = Some(jwt),
        }
    }
    let mut jwts = Vec::new();
    if use_jar {
        let mut claims = request_object_claims(redirect, &c.client_id, &s.issuer, c.request_object_lifetime, now);
        if let Some(jkt) = &cx.dpop_jkt {
            // Inside the object: an AS drops form fields sent next to `request` (§16-12).
            claims.insert("dpop_jkt".into(), jkt.clone().into());
        }
        jwts.push(JwtToSign {
            key: cx.request_object_key.clone(),
            typ: Some(REQUEST_OBJECT_TYP),
            purpose: "request_object",
            claims,
        });
    }
    jwts.extend(assertion);
    let mut signed = if jwts.is_empty() {
        Vec::new().into_iter()
    } else {
        sign_all(jwts, cx.metrics.clone()).await?.into_iter()
    };
    let mut form = vec![("client_id".to_string(), c.client_id.as_str().to_string())];
    if use_jar {
        // With JAR, nothing but client_id, request and client authentication goes outside
        // the object (JAR-1/JAR-2, node strip_outside_jar_params).
        form.push(("request".to_string(), signed.next().ok_or(ParError::Signing)?));
    } else {
        // PAR-5 without JAR: the parameters themselves, JSON values serialised.
        for (k, v) in &redirect.params {
            if k != "client_id" && !(k == "dpop_jkt" && cx.dpop_jkt.is_some()) {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                form.push((k.clone(), v));
            }
        }
        if let Some(jkt) = &cx.dpop_jkt {
            form.push(("dpop_jkt".into(), jkt.clone()));
        }
    }
    if let Some(a) = pooled.or_else(|| signed.next()) {
        form.push(("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()));
        form.push(("client_assertion".into(), a));
    }
    let resp = cx
        .http
        .send(AsRequest {
            method: http::Method::POST,
            url: cx.metadata.par_endpoint.clone(),
            headers: vec![
                ("accept".into(), "application/json".into()),
                ("x-fapi-interaction-id".into(), interaction_id.to_string()),
                ("content-type".into(), FORM_CONTENT_TYPE.into()),
            ],
            // Encoded here rather than with `form`: the same bytes and content type as
            // reqwest's `.form()` writes, without its byte-by-byte pass over the two JWTs.
            form: None,
            body: Some(bytes::Bytes::from(encode_form(&form))),
            timeout,
        })
        .await
        .map_err(ParError::Transport)?;

    let echoed_interaction_id = resp
        .headers
        .get("x-fapi-interaction-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect());
    if resp.status == 429 {
        let retry_after = retry_after(&resp.headers);
        return Err(ParError::RateLimited { retry_after });
    }
    parse_response(resp.status, &resp.body).map(|(request_uri, expires_in)| PushedRequest {
        request_uri,
        expires_in,
        as_status: resp.status,
        echoed_interaction_id,
    })
}

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Whether `application/x-www-form-urlencoded` leaves this byte as it is (the URL
/// standard's set, as `form_urlencoded::byte_serialize` has it): ASCII letters, digits,
/// `*`, `-`, `.` and `_`.
fn form_unchanged(b: u8) -> bool {
    b.is_ascii_alphanumeric() | (b == b'*') | (b == b'-') | (b == b'.') | (b == b'_')
}

/// Appends one name or value, form-encoded. A JWT (base64url and dots) needs no escaping:
/// it is checked 32 bytes at a time without an early exit (which the compiler vectorises)
/// and copied; anything else goes through `form_urlencoded`.
fn append_form_part(out: &mut String, s: &str) {
    if s.as_bytes()
        .chunks(32)
        .all(|c| c.iter().fold(true, |ok, &b| ok & form_unchanged(b)))
    {
        out.push_str(s);
    } else {
        out.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
    }
}

/// The form body, byte for byte what `form_urlencoded::Serializer` (and so reqwest's
/// `.form()`) writes for these pairs.
pub fn encode_form(pairs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() + 64);
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        append_form_part(&mut out, k);
        out.push('=');
        append_form_part(&mut out, v);
    }
    out
}

/// 201 `{request_uri, expires_in}` (PAR-8); another 2xx with a valid body is tolerated.
pub fn parse_response(status: u16, body: &[u8]) -> Result<(String, u64), ParError> {
    if (200..300).contains(&status) {
        let ok: ParSuccess = serde_json::from_slice(body)
            .map_err(|_| ParError::BadResponse(format!("HTTP {status} with a body that is not JSON")))?;
        let request_uri = match ok.request_uri {
            Some(serde_json::Value::String(u))
                if !u.is_empty() && u.len() <= 2048 && !u.chars().any(char::is_control) =>
            {
                u
            }
            _ => return Err(ParError::BadResponse("no usable request_uri".into())),
        };
        // A missing expires_in is tolerated: assume it is short (PAR-8 note).
        let expires_in = match ok.expires_in {
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ParError::BadResponse("expires_in is not a positive integer".into()))?,
            None => 0,
            Some(_) => return Err(ParError::BadResponse("expires_in is not a number".into())),
        };
        return Ok((request_uri, expires_in));
    }
    let err: Option<OAuthError> = serde_json::from_slice(body).ok();
    let oauth = err.and_then(|e| e.error.map(|c| (c, e.error_description)));
    if status >= 500 {
        return Err(ParError::ServerError {
            status,
            error: oauth.map(|(c, _)| sanitize_error_code(&c)).unwrap_or_default(),
        });
    }
    match oauth {
        Some((code, description)) => Err(ParError::Rejected {
            status,
            error: sanitize_error_code(&code),
            description: description.map(|d| d.chars().take(300).collect()),
        }),
        None => Err(ParError::BadResponse(format!(
            "HTTP {status} without an OAuth error body"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_saturates_and_never_overflows_the_deadline_sum() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("retry-after", v.parse().unwrap());
            retry_after(&m)
        };
        assert_eq!(h("0"), Some(Duration::ZERO));
        assert_eq!(h(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(h("18446744073709551615"), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(h("99999999999999999999999999"), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(h("-1"), None);
        assert_eq!(h("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after(&http::HeaderMap::new()), None);
        let deadline = Duration::from_millis(1500);
        assert!(!fits_deadline(Duration::from_millis(10), Duration::MAX, deadline));
        assert!(!fits_deadline(Duration::MAX, Duration::MAX, deadline));
        assert!(fits_deadline(Duration::from_millis(10), Duration::ZERO, deadline));
    }

    #[test]
    fn parses_success_and_errors() {
        let (u, e) = parse_response(
            201,
            br#"{"request_uri":"urn:ietf:params:oauth:request_uri:x","expires_in":60}"#,
        )
        .unwrap();
        assert_eq!((u.as_str(), e), ("urn:ietf:params:oauth:request_uri:x", 60));
        assert!(matches!(parse_response(201, b"{}"), Err(ParError::BadResponse(_))));
        assert!(matches!(parse_response(201, b"<html>"), Err(ParError::BadResponse(_))));
        assert!(matches!(
            parse_response(201, br#"{"request_uri":"u","expires_in":-3}"#),
            Err(ParError::BadResponse(_))
        ));
        match parse_response(
            400,
            br#"{"error":"invalid_request_object","error_description":"bad aud"}"#,
        ) {
            Err(ParError::Rejected {
                status: 400,
                error,
                description,
            }) => {
                assert_eq!(error, "invalid_request_object");
                assert_eq!(description.as_deref(), Some("bad aud"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_response(503, b"oops"),
            Err(ParError::ServerError { status: 503, .. })
        ));
        assert!(matches!(parse_response(302, b""), Err(ParError::BadResponse(_))));
        assert!(ParError::ServerError {
            status: 500,
            error: String::new()
        }
        .retryable());
        assert!(!ParError::Transport(TransportError::Timeout).retryable());
        assert!(!ParError::Rejected {
            status: 400,
            error: "x".into(),
            description: None
        }
        .retryable());
    }

    #[test]
    fn form_body_is_what_the_form_serializer_writes() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJhIn0.MEUCIQ-_x".repeat(20);
        let mut cases: Vec<Vec<(String, String)>> = vec![
            vec![],
            vec![("client_id".into(), "bench-app".into())],
            vec![
                ("client_id".into(), "app one/2".into()),
                ("request".into(), jwt.clone()),
                ("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()),
                ("client_assertion".into(), jwt),
                ("claims".into(), r#"{"id_token":{"acr":null}}"#.into()),
                ("empty".into(), String::new()),
                ("x y&z=".into(), "ünï*cödé +%~!'()".into()),
            ],
        ];
        // Every byte value in every position of a long value (the 32-byte blocks).
        let all: String = (0u8..128).map(char::from).chain("é€😀".chars()).collect();
        for i in 0..all.len() {
            if all.is_char_boundary(i) {
                let v = format!("{}{}{}", "a".repeat(i % 40), &all[i..], "Z".repeat(33));
                cases.push(vec![("k".into(), v)]);
            }
        }
        for pairs in cases {
            let want = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter())
                .finish();
            assert_eq!(encode_form(&pairs), want, "{pairs:?}");
        }
    }

    #[test]
    fn hostile_error_codes_do_not_become_labels() {
        assert_eq!(sanitize_error_code("invalid_client"), "invalid_client");
        assert_eq!(sanitize_error_code("made_up_by_the_as"), "other");
        assert_eq!(sanitize_error_code("Bad\"Label}"), "unknown");
        assert_eq!(sanitize_error_code(&"a".repeat(100)), "unknown");
        assert_eq!(sanitize_error_code(""), "unknown");
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(ParError::Transport(TransportError::Timeout).code(), "as_timeout");
        assert_eq!(
            ParError::Transport(TransportError::Connect("x".into())).code(),
            "as_unavailable"
        );
        assert_eq!(ParError::BadResponse("x".into()).code(), "as_bad_response");
    }
}
