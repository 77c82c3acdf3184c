//! An in-process HTTPS AS double with real crypto and real TLS: it requires a client
//! certificate chaining to the test CA and verifies both JWT signatures with public keys
//! that openssl derived from the private key files (not with the sidecar's own JWKS).
#![allow(dead_code)]

pub mod jwe;
pub mod token_as;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Generates the test PKI with the same openssl script the e2e suite uses.
pub fn pki() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("par-sidecar-it-{}-{}", std::process::id(), rand_suffix()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = Command::new("bash")
        .arg(root.join("tests/e2e/pki.sh"))
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run pki.sh");
    assert!(st.success(), "pki.sh failed");
    dir
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

/// `openssl pkey -pubout`: an independent derivation of the public key.
pub fn public_pem(private: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(private)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[derive(Clone, Debug)]
pub enum Fault {
    None,
    Status(u16, &'static str),
    Delay(Duration),
    Redirect,
    Huge,
    /// Answer `status` with `body` (and `Retry-After: 0` for 429) this many times, then succeed.
    Flaky(u32, u16, &'static str),
    /// Answer 429 with this `Retry-After` value this many times, then succeed.
    RetryAfter(u32, &'static str),
}

#[derive(Debug, Clone)]
pub struct SeenPar {
    pub form: HashMap<String, String>,
    pub request_claims: serde_json::Value,
    pub assertion_claims: Option<serde_json::Value>,
    pub client_cert_present: bool,
    pub interaction_id: Option<String>,
    pub verify_error: Option<String>,
}

pub struct AsDouble {
    pub addr: SocketAddr,
    pub issuer: String,
    pub fault: Arc<Mutex<Fault>>,
    pub seen: Arc<Mutex<Vec<SeenPar>>>,
    pub discovery_hits: Arc<Mutex<u32>>,
    /// Every PAR form received, faults included.
    pub attempts: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// Every request received: `METHOD path` (egress tests: what reached the AS at all).
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Fields merged over the discovery document served (e.g. another `authorization_endpoint`).
    pub metadata_overrides: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
    /// Canned answers by path (status, headers, body), e.g. for `/token`; the request's
    /// form is recorded in `attempts`.
    pub replies: Arc<Mutex<HashMap<String, Reply>>>,
}

/// A canned answer: status, headers, body.
pub type Reply = (u16, Vec<(String, String)>, String);

struct Shared {
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    attempts: Arc<Mutex<Vec<HashMap<String, String>>>>,
    issuer: String,
    par_host_port: String,
    verify_key: DecodingKey,
    alg: Algorithm,
    fault: Arc<Mutex<Fault>>,
    seen: Arc<Mutex<Vec<SeenPar>>>,
    discovery_hits: Arc<Mutex<u32>>,
    requests: Arc<Mutex<Vec<String>>>,
    metadata_overrides: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
}

fn load_certs(p: &Path) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut std::fs::read(p).unwrap().as_slice())
        .map(|c| c.unwrap())
        .collect()
}

fn load_key(p: &Path) -> PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut std::fs::read(p).unwrap().as_slice())
        .unwrap()
        .unwrap()
}

impl AsDouble {
    /// Starts the double; `signing_key` is the sidecar's private key file (its public half,
    /// derived by openssl, verifies the JWTs), `alg` the expected JWS algorithm.
    pub async fn start(pki: &Path, signing_key: &Path, alg: Algorithm) -> AsDouble {
        Self::start_with_server_cert(pki, signing_key, alg, "as").await
    }

    /// The same, serving `{name}.crt` / `{name}.key` as the AS's server certificate.
    pub async fn start_with_server_cert(pki: &Path, signing_key: &Path, alg: Algorithm, name: &str) -> AsDouble {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("https://127.0.0.1:{}", addr.port());
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(&pki.join("ca.crt")) {
            roots.add(c).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let cfg = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                load_certs(&pki.join(format!("{name}.crt"))),
                load_key(&pki.join(format!("{name}.key"))),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(cfg));
        let pem = public_pem(signing_key);
        let verify_key = match alg {
            Algorithm::PS256 => DecodingKey::from_rsa_pem(&pem).unwrap(),
            Algorithm::ES256 => DecodingKey::from_ec_pem(&pem).unwrap(),
            _ => DecodingKey::from_ed_pem(&pem).unwrap(),
        };
        let fault = Arc::new(Mutex::new(Fault::None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let discovery_hits = Arc::new(Mutex::new(0));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let metadata_overrides = Arc::new(Mutex::new(serde_json::Map::new()));
        let replies = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::new(Shared {
            metadata_overrides: metadata_overrides.clone(),
            replies: replies.clone(),
            requests: requests.clone(),
            attempts: attempts.clone(),
            issuer: issuer.clone(),
            // The PAR endpoint lives on another host name than the issuer (DISC-1).
            par_host_port: format!("localhost:{}", addr.port()),
            verify_key,
            alg,
            fault: fault.clone(),
            seen: seen.clone(),
            discovery_hits: discovery_hits.clone(),
        });
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    // Handshake fails without a CA-signed client certificate: that is the point.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let cert_present = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req, cert_present).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        AsDouble {
            metadata_overrides,
            replies,
            requests,
            attempts,
            addr,
            issuer,
            fault,
            seen,
            discovery_hits,
        }
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    pub fn seen(&self) -> Vec<SeenPar> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests other than discovery, as `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.ends_with("/.well-known/openid-configuration"))
            .cloned()
            .collect()
    }
}

fn json(status: u16, v: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .unwrap()
}

async fn handle(s: &Shared, req: Request<Incoming>, cert_present: bool) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    s.requests.lock().unwrap().push(format!("{} {path}", req.method()));
    // `/mtls/...` serves the same as `/...`: metadata may list those as mtls_endpoint_aliases.
    let path = path
        .strip_prefix("/mtls")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(&path)
        .to_string();
    if path == "/.well-known/openid-configuration" {
        *s.discovery_hits.lock().unwrap() += 1;
        let mut doc = serde_json::json!({
                "issuer": s.issuer,
                "authorization_endpoint": format!("{}/authorize", s.issuer),
                "pushed_authorization_request_endpoint": format!("https://{}/par", s.par_host_port),
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint": format!("{}/token", s.issuer),
                "jwks_uri": format!("{}/jwks", s.issuer),
                "request_object_signing_alg_values_supported": ["PS256", "ES256", "EdDSA"],
                "token_endpoint_auth_signing_alg_values_supported": ["PS256", "ES256", "EdDSA"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
                "require_pushed_authorization_requests": true,
        });
        let overrides = s.metadata_overrides.lock().unwrap().clone();
        doc.as_object_mut().unwrap().extend(overrides);
        return json(200, doc);
    }
    let canned = s.replies.lock().unwrap().get(&path).cloned();
    if let Some((status, headers, body)) = canned {
        let form = req.into_body().collect().await.unwrap().to_bytes();
        let form: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
        s.attempts.lock().unwrap().push(form);
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        return b.body(Full::new(Bytes::from(body))).unwrap();
    }
    if path != "/par" {
        return json(404, serde_json::json!({"error": "not_found"}));
    }
    let interaction_id = req
        .headers()
        .get("x-fapi-interaction-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    s.attempts.lock().unwrap().push(form.clone());

    let fault = s.fault.lock().unwrap().clone();
    match fault {
        Fault::Status(code, body) => {
            return Response::builder()
                .status(code)
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap()
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Redirect => {
            return Response::builder()
                .status(302)
                .header("location", "https://elsewhere.example/")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        Fault::Huge => {
            return Response::builder()
                .status(201)
                .body(Full::new(Bytes::from(vec![b' '; 2 * 1024 * 1024])))
                .unwrap()
        }
        Fault::Flaky(n, code, body) => {
            if n > 0 {
                *s.fault.lock().unwrap() = Fault::Flaky(n - 1, code, body);
                let mut b = Response::builder().status(code).header("retry-after", "0");
                if body.starts_with('{') {
                    b = b.header("content-type", "application/json");
                }
                return b.body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap();
            }
        }
        Fault::RetryAfter(n, value) => {
            if n > 0 {
                *s.fault.lock().unwrap() = Fault::RetryAfter(n - 1, value);
                return Response::builder()
                    .status(429)
                    .header("retry-after", value)
                    .body(Full::new(Bytes::from_static(b"slow down")))
                    .unwrap();
            }
        }
        Fault::None => {}
    }

    let mut v = Validation::new(s.alg);
    v.set_audience(&[&s.issuer]);
    v.set_required_spec_claims(&["exp", "aud", "iss"]);
    let mut verify_error = None;
    // PAR without JAR (par.request_object: false): the parameters are the form itself.
    let request_claims = match form.get("request") {
        None => serde_json::to_value(&form).unwrap(),
        Some(jwt) => match jsonwebtoken::decode::<serde_json::Value>(jwt, &s.verify_key, &v) {
            Ok(d) => d.claims,
            Err(e) => {
                verify_error = Some(format!("request: {e}"));
                serde_json::Value::Null
            }
        },
    };
    let assertion_claims =
        form.get("client_assertion").map(
            |a| match jsonwebtoken::decode::<serde_json::Value>(a, &s.verify_key, &v) {
                Ok(d) => d.claims,
                Err(e) => {
                    verify_error = Some(format!("assertion: {e}"));
                    serde_json::Value::Null
                }
            },
        );
    s.seen.lock().unwrap().push(SeenPar {
        form: form.clone(),
        request_claims,
        assertion_claims,
        client_cert_present: cert_present,
        interaction_id: interaction_id.clone(),
        verify_error: verify_error.clone(),
    });
    if let Some(e) = verify_error {
        return json(
            400,
            serde_json::json!({"error": "invalid_request_object", "error_description": e}),
        );
    }
    let mut resp = json(
        201,
        serde_json::json!({"request_uri": "urn:ietf:params:oauth:request_uri:double-1", "expires_in": 60}),
    );
    if let Some(id) = interaction_id {
        resp.headers_mut().insert("x-fapi-interaction-id", id.parse().unwrap());
    }
    resp
}

/// Sidecar settings pointing at the double.
pub fn settings_yaml(pki: &Path, issuer: &str, key: &str, alg: &str, auth: &str, extra: &str) -> String {
    format!(
        r#"
listen: {{ public: "127.0.0.1:18080", admin: "127.0.0.1:19090" }}
upstream: "127.0.0.1:13000"
authorization_server:
  issuer: "{issuer}"
  ca_file: "{ca}"
client:
  client_id: legacy-app
  auth_method: {auth}
  signing_key: {{ path: "{key}", alg: {alg} }}
  transport: {{ cert_path: "{cert}", key_path: "{tkey}" }}
timeouts: {{ par_total_ms: 1500, connect_ms: 500 }}
{extra}
"#,
        ca = pki.join("ca.crt").display(),
        key = pki.join(key).display(),
        cert = pki.join("transport.crt").display(),
        tkey = pki.join("transport.key").display(),
    )
}

/// Sidecar state from a YAML config with every AS's metadata loaded the way the background
/// refresher loads it (metrics and the host index included).
pub async fn loaded_state(yaml: &str, config_path: &Path) -> Arc<par_sidecar::sidecar::Sidecar> {
    let settings = par_sidecar::config::Settings::from_yaml(yaml, config_path).unwrap();
    let state = par_sidecar::sidecar::Sidecar::load(settings).unwrap();
    for c in &state.registry.clients {
        assert!(
            par_sidecar::ops::background::refresh_once(&state, c).await,
            "metadata of {} must load",
            c.name()
        );
    }
    state
}

/// A form POST to the egress listener, with `client_secret_basic` credentials when given.
pub fn egress_post(path: &str, basic: Option<&str>, body: &str) -> par_sidecar::egress::EgressRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
    if let Some(b) = basic {
        headers.insert(
            "authorization",
            format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
            )
            .parse()
            .unwrap(),
        );
    }
    par_sidecar::egress::EgressRequest {
        method: http::Method::POST,
        path: path.into(),
        query: None,
        headers,
        body: bytes::Bytes::from(body.to_string()),
    }
}
