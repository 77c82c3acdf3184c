//! DPoP (RFC 9449) on behalf of an unmodified app: proofs signed with the sidecar's DPoP key
//! (DP-1, DP-2), and the latest server nonce per origin (DP-4). A proof is a credential for
//! one request: it is never logged, and a fresh one (new `jti`) is signed for every attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};
use url::Url;

use crate::as_client::jose::{s256, KeyError, SigningKey};
use crate::metrics::Metrics;

/// RFC 9449 §4.2 explicit typing.
pub const DPOP_TYP: &str = "dpop+jwt";
/// The OAuth error a server uses to hand out a nonce (RFC 9449 §8, §9).
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";
/// Longer nonces are ignored: a server nonce is an opaque, short value.
const MAX_NONCE_LEN: usize = 512;
/// Origins remembered per AS (the AS itself and its resource servers); the least recently
/// updated is dropped beyond this.
const MAX_ORIGINS: usize = 64;

/// `htu`: the target URI without query and fragment (DP-2). `url` already lowercases scheme
/// and host and drops a default port, so the value is what the server computes for itself.
pub fn htu(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// `ath`: base64url SHA-256 of the access token's ASCII (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    s256(access_token)
}

/// The proof's header: `typ`, the key's `alg` and its bare public `jwk` (no `kid`).
pub fn proof_header(key: &SigningKey) -> Value {
    json!({ "typ": DPOP_TYP, "alg": key.alg().as_str(), "jwk": key.bare_public_jwk() })
}

/// The proof's claims: a fresh `jti`, `htm`, `htu`, `iat`, and `nonce` / `ath` when given.
pub fn proof_claims(
    method: &http::Method,
    url: &Url,
    nonce: Option<&str>,
    access_token: Option<&str>,
    now: u64,
) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("jti".into(), crate::protocol::random_uuid().to_string().into());
    c.insert("htm".into(), method.as_str().into());
    c.insert("htu".into(), htu(url).into());
    c.insert("iat".into(), now.into());
    if let Some(n) = nonce {
        c.insert("nonce".into(), n.into());
    }
    if let Some(t) = access_token {
        c.insert("ath".into(), ath(t).into());
    }
    c
}

/// Signs one proof for `method url`. RSA signing runs on the low-priority signing threads,
/// like the PAR's JWTs; EC and Ed25519 sign inline.
pub async fn sign_proof(
    key: &Arc<SigningKey>,
    method: &http::Method,
    url: &Url,
    nonce: Option<&str>,
    access_token: Option<&str>,
    metrics: &Metrics,
) -> Result<String, KeyError> {
    let claims = proof_claims(
        method,
        url,
        nonce,
        access_token,
        crate::as_client::request_object::now_secs(),
    );
    let header = proof_header(key);
    let started = Instant::now();
    let proof = if key.alg().signs_slowly() {
        let k = key.clone();
        crate::as_client::signing_pool::run(move || k.sign_with_header(&header, &claims))
            .await
            .ok_or(KeyError::Sign)??
    } else {
        key.sign_with_header(&header, &claims)?
    };
    metrics
        .signing_duration
        .with_label_values(&[key.alg().as_str(), "dpop_proof"])
        .observe(started.elapsed().as_secs_f64());
    Ok(proof)
}

/// RFC 9449 §8: `nonce = 1*NQCHAR` (visible ASCII without `"` and `\`).
fn valid_nonce(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NONCE_LEN
        && n.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// The latest `DPoP-Nonce` each origin sent, bounded. Keyed by origin (scheme, host, port):
/// an AS and its resource servers hand out their own nonces.
#[derive(Default)]
pub struct NonceCache {
    inner: Mutex<Nonces>,
}

#[derive(Default)]
struct Nonces {
    seq: u64,
    by_origin: HashMap<String, (u64, String)>,
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl NonceCache {
    /// The nonce to put in the next proof for this URL's origin, if one is known.
    pub fn get(&self, url: &Url) -> Option<String> {
        let g = self.inner.lock().ok()?;
        g.by_origin.get(&origin(url)).map(|(_, n)| n.clone())
    }

    /// Remembers the `DPoP-Nonce` of a response from `url` (any status: a 200 may carry the
    /// next nonce). Returns the nonce when the response had a usable one.
    pub fn remember(&self, url: &Url, headers: &http::HeaderMap) -> Option<String> {
        let nonce = headers.get("dpop-nonce")?.to_str().ok()?.trim();
        if !valid_nonce(nonce) {
            return None;
        }
        self.set(url, nonce);
        Some(nonce.to_string())
    }

    fn set(&self, url: &Url, nonce: &str) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let key = origin(url);
        if !g.by_origin.contains_key(&key) && g.by_origin.len() >= MAX_ORIGINS {
            if let Some(oldest) = g.by_origin.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| k.clone()) {
                g.by_origin.remove(&oldest);
            }
        }
        g.seq += 1;
        let seq = g.seq;
        g.by_origin.insert(key, (seq, nonce.to_string()));
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.by_origin.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One `WWW-Authenticate` challenge: lower-cased scheme and parameter names.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

/// Parses `WWW-Authenticate` values into challenges, leniently (RFC 9110 §11.6.1): schemes
/// and parameter names compare case-insensitively (conformance `…AuthSchemeCaseInsensitivity`).
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    let b = value.as_bytes();
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    let is_sep = |c: u8| c == b',' || c.is_ascii_whitespace();
    while i < b.len() {
        while i < b.len() && is_sep(b[i]) {
            i += 1;
        }
        let start = i;
        while i < b.len() && !is_sep(b[i]) && b[i] != b'=' {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let token = value[start..i].to_ascii_lowercase();
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            // A parameter of the current challenge.
            j += 1;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let mut v = String::new();
            if j < b.len() && b[j] == b'"' {
                j += 1;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                    }
                    v.push(b[j] as char);
                    j += 1;
                }
                j += 1;
            } else {
                let vs = j;
                while j < b.len() && !is_sep(b[j]) {
                    j += 1;
                }
                v.push_str(&value[vs..j]);
            }
            if let Some(c) = out.last_mut() {
                c.params.push((token, v));
            }
            i = j;
        } else {
            out.push(Challenge {
                scheme: token,
                params: Vec::new(),
            });
        }
    }
    out
}

/// The `error` of the DPoP challenge in a response's `WWW-Authenticate`, if any.
pub fn dpop_challenge_error(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .find(|c| c.scheme == "dpop")
        .and_then(|c| c.params.into_iter().find(|(k, _)| k == "error").map(|(_, v)| v))
}

/// The OAuth `error` of a JSON error body (AS endpoints answer `use_dpop_nonce` there).
pub fn body_error(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_string)
}

/// A nonce challenge: an AS's `400 {"error":"use_dpop_nonce"}` (token endpoint) or a
/// resource server's `401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
pub fn is_nonce_challenge(status: u16, headers: &http::HeaderMap, body: &[u8]) -> bool {
    match status {
        400 => body_error(body).as_deref() == Some(USE_DPOP_NONCE),
        401 => {
            dpop_challenge_error(headers).as_deref() == Some(USE_DPOP_NONCE)
                || body_error(body).as_deref() == Some(USE_DPOP_NONCE)
        }
        _ => false,
    }
}

/// The access token in the app's `Authorization` header: `Bearer` (what a legacy app
/// sends) or `DPoP` (an app told `token_type: DPoP`), scheme case-insensitive.
pub fn app_access_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop"))
        && !token.is_empty()
        && !token.contains(' ')
    {
        Some(token)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jose::Alg;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn part(jwt: &str, i: usize) -> Value {
        serde_json::from_slice(&B64.decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn htu_drops_query_fragment_and_default_port_and_lowercases() {
        let u = Url::parse("HTTPS://AS.Example.COM:443/Token/Path?code=x&y=1#frag").unwrap();
        assert_eq!(htu(&u), "https://as.example.com/Token/Path");
        let u = Url::parse("https://as.example.com:8443/me?x").unwrap();
        assert_eq!(htu(&u), "https://as.example.com:8443/me");
        let u = Url::parse("http://Localhost:80/a#b").unwrap();
        assert_eq!(htu(&u), "http://localhost/a");
    }

    #[test]
    fn ath_is_base64url_sha256_of_the_token() {
        // RFC 9449 §7.1 example: the access token and its ath.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[tokio::test]
    async fn proof_has_the_rfc_9449_header_and_claims() {
        let metrics = Metrics::new();
        for alg in [Alg::ES256, Alg::EdDSA, Alg::PS256] {
            let key = Arc::new(SigningKey::generate(alg).unwrap());
            let url = Url::parse("https://as.example.com/token?x=1#f").unwrap();
            let a = sign_proof(&key, &http::Method::POST, &url, Some("n-1"), Some("tok"), &metrics)
                .await
                .unwrap();
            let b = sign_proof(&key, &http::Method::POST, &url, None, None, &metrics)
                .await
                .unwrap();
            let h = part(&a, 0);
            assert_eq!(h["typ"], "dpop+jwt");
            assert_eq!(h["alg"], alg.as_str());
            assert!(h.get("kid").is_none());
            let jwk = h["jwk"].as_object().unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(!jwk.contains_key(private), "{alg:?}: no private member {private}");
            }
            assert!(!jwk.contains_key("kid") && !jwk.contains_key("use"));
            assert_eq!(crate::as_client::jose::jwk_thumbprint(&h["jwk"]), key.thumbprint());
            let c = part(&a, 1);
            assert_eq!(c["htm"], "POST");
            assert_eq!(c["htu"], "https://as.example.com/token");
            assert_eq!(c["nonce"], "n-1");
            assert_eq!(c["ath"], ath("tok"));
            assert!(c["iat"].as_u64().unwrap() > 1_700_000_000);
            let d = part(&b, 1);
            assert!(d.get("nonce").is_none() && d.get("ath").is_none());
            assert_ne!(c["jti"], d["jti"], "a fresh jti per proof");
            assert!(uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).is_ok());
        }
    }

    #[tokio::test]
    async fn es256_proof_verifies_with_its_embedded_jwk() {
        let metrics = Metrics::new();
        let key = Arc::new(SigningKey::generate(Alg::ES256).unwrap());
        let url = Url::parse("https://rs.example.com/accounts").unwrap();
        let proof = sign_proof(&key, &http::Method::GET, &url, None, Some("at"), &metrics)
            .await
            .unwrap();
        let h = part(&proof, 0);
        let dk = jsonwebtoken::DecodingKey::from_ec_components(
            h["jwk"]["x"].as_str().unwrap(),
            h["jwk"]["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let d = jsonwebtoken::decode::<Value>(&proof, &dk, &v).unwrap();
        assert_eq!(d.claims["htm"], "GET");
    }

    #[test]
    fn nonce_cache_keeps_the_latest_per_origin_and_is_bounded() {
        let c = NonceCache::default();
        let as_token = Url::parse("https://as.example.com/token").unwrap();
        let as_me = Url::parse("https://AS.example.com:443/me?x=1").unwrap();
        let rs = Url::parse("https://rs.example.com/a").unwrap();
        let mut h = http::HeaderMap::new();
        assert_eq!(c.remember(&as_token, &h), None);
        h.insert("dpop-nonce", "n1".parse().unwrap());
        assert_eq!(c.remember(&as_token, &h).as_deref(), Some("n1"));
        assert_eq!(c.get(&as_me).as_deref(), Some("n1"), "same origin");
        assert_eq!(c.get(&rs), None, "another origin has its own");
        h.insert("dpop-nonce", "n2".parse().unwrap());
        c.remember(&as_me, &h);
        assert_eq!(c.get(&as_token).as_deref(), Some("n2"), "the latest wins");
        h.insert("dpop-nonce", "bad\"nonce".parse().unwrap());
        assert_eq!(c.remember(&as_token, &h), None, "not NQCHAR");
        assert_eq!(c.get(&as_token).as_deref(), Some("n2"));
        h.insert("dpop-nonce", "x".repeat(600).parse().unwrap());
        assert_eq!(c.remember(&as_token, &h), None, "too long");
        h.insert("dpop-nonce", "r".parse().unwrap());
        for i in 0..(MAX_ORIGINS + 10) {
            c.remember(&Url::parse(&format!("https://rs{i}.example.com/")).unwrap(), &h);
        }
        assert_eq!(c.len(), MAX_ORIGINS);
        assert_eq!(c.get(&as_token), None, "the least recently updated went first");
        assert_eq!(
            c.get(&Url::parse(&format!("https://rs{}.example.com/", MAX_ORIGINS + 9)).unwrap())
                .as_deref(),
            Some("r")
        );
    }

    #[test]
    fn www_authenticate_challenges() {
        let v = r#"Bearer realm="x", DPoP realm="https://as", error="use_dpop_nonce", error_description="nonce is required, \"really\"", algs="ES256 EdDSA""#;
        let c = parse_challenges(v);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[1].params[1], ("error".into(), "use_dpop_nonce".into()));
        assert_eq!(c[1].params[2].1, r#"nonce is required, "really""#);
        assert_eq!(c[1].params[3].1, "ES256 EdDSA");
        let mut h = http::HeaderMap::new();
        h.insert("www-authenticate", "dpop ERROR=use_dpop_nonce".parse().unwrap());
        assert_eq!(dpop_challenge_error(&h).as_deref(), Some("use_dpop_nonce"));
        assert!(is_nonce_challenge(401, &h, b""));
        assert!(!is_nonce_challenge(403, &h, b""));
        h.insert("www-authenticate", r#"Bearer error="use_dpop_nonce""#.parse().unwrap());
        assert!(!is_nonce_challenge(401, &h, b""), "only the DPoP challenge counts");
        assert!(is_nonce_challenge(
            400,
            &http::HeaderMap::new(),
            br#"{"error":"use_dpop_nonce"}"#
        ));
        assert!(!is_nonce_challenge(
            400,
            &http::HeaderMap::new(),
            br#"{"error":"invalid_grant"}"#
        ));
    }

    #[test]
    fn app_tokens_in_either_scheme() {
        assert_eq!(app_access_token("Bearer abc"), Some("abc"));
        assert_eq!(app_access_token("bearer abc"), Some("abc"));
        assert_eq!(app_access_token("DPoP abc"), Some("abc"));
        assert_eq!(app_access_token("Basic abc"), None);
        assert_eq!(app_access_token("Bearer"), None);
        assert_eq!(app_access_token("Bearer a b"), None);
    }
}
