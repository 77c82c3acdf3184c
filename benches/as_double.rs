//! A fast local HTTPS AS double for the load benchmark (`benches/load.py` runs it; it is a
//! bench target only so it can use the dev-dependencies). It requires a client certificate
//! from the test CA, answers discovery and PAR with fixed bodies, and counts TLS handshakes
//! and PARs at `/stats` so the benchmark can report new handshakes per PAR after warm-up.
//! Client assertions are checked for `aud`, `exp`, `iat` age and a replayed `jti` (a PAR
//! with a bad one gets 400 `invalid_client`, counted in `/stats`).
//!
//! One process serves any number of issuers: `https://127.0.0.1:PORT` (discovery at
//! `/.well-known/openid-configuration`) and `https://127.0.0.1:PORT/PREFIX` (discovery at
//! `/PREFIX/.well-known/openid-configuration`, endpoints `/PREFIX/authorize`, `/PREFIX/par`),
//! so the benchmark can configure 50 distinct ASs against one double.
//!
//! Usage: as_double PORT PKI_DIR   (`cargo bench --bench as_double` alone just exits)

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

static HANDSHAKES: AtomicU64 = AtomicU64::new(0);
static PARS: AtomicU64 = AtomicU64::new(0);
static PAR_NANOS: AtomicU64 = AtomicU64::new(0);
static ASSERTIONS: AtomicU64 = AtomicU64::new(0);
static ASSERTION_REJECTS: AtomicU64 = AtomicU64::new(0);
/// Every client assertion `jti` seen: a second use is refused like a real AS would.
static SEEN_JTIS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// The checks a real AS makes on a `private_key_jwt` assertion, minus the signature (the
/// e2e tests against node oidc-provider cover that): the `aud` is the issuer, `exp` is in
/// the future, `iat` is not older than the 60 s lifetime nor in the future, and the `jti`
/// was never used before (RFC 7523 §3). No assertion (tls_client_auth) passes.
fn check_assertion(form: &[u8], issuer: &str) -> Result<(), &'static str> {
    use base64::Engine;
    let Some((_, jwt)) = url::form_urlencoded::parse(form).find(|(k, _)| k == "client_assertion") else {
        return Ok(());
    };
    ASSERTIONS.fetch_add(1, Ordering::Relaxed);
    let payload = jwt.split('.').nth(1).ok_or("not a JWS")?;
    let claims: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("payload is not JSON")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let num = |k: &str| claims[k].as_u64().ok_or("iat/exp missing");
    if claims["aud"] != issuer {
        return Err("aud is not the issuer");
    }
    if num("exp")? <= now || num("iat")? > now + 5 || now - num("iat")?.min(now) > 60 {
        return Err("expired or stale assertion");
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?.to_string();
    if !SEEN_JTIS.lock().unwrap().insert(jti) {
        return Err("jti replayed");
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(port) = args.get(1).and_then(|p| p.parse::<u16>().ok()) else {
        return; // invoked by `cargo bench` without arguments
    };
    let pki = std::path::PathBuf::from(&args[2]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(serve(port, pki));
}

async fn serve(port: u16, pki: std::path::PathBuf) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certs = |f: &str| -> Vec<rustls::pki_types::CertificateDer<'static>> {
        rustls_pemfile::certs(&mut std::fs::read(pki.join(f)).unwrap().as_slice())
            .map(|c| c.unwrap())
            .collect()
    };
    let key = rustls_pemfile::private_key(&mut std::fs::read(pki.join("as.key")).unwrap().as_slice())
        .unwrap()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca.crt") {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs("as.crt"), key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let issuer: Arc<str> = format!("https://127.0.0.1:{port}").into();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let issuer = issuer.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            HANDSHAKES.fetch_add(1, Ordering::Relaxed);
            let svc = hyper::service::service_fn(move |req| {
                let issuer = issuer.clone();
                async move { Ok::<_, Infallible>(handle(req, &issuer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn handle(req: Request<hyper::body::Incoming>, issuer: &str) -> Response<Full<Bytes>> {
    let t = std::time::Instant::now();
    let path = req.uri().path().to_string();
    // `/bank-7/...` belongs to the issuer `https://127.0.0.1:PORT/bank-7`.
    let (prefix, rest) = match path.strip_suffix("/.well-known/openid-configuration") {
        Some(p) => (p, "/.well-known/openid-configuration"),
        None => path
            .rsplit_once('/')
            .map(|(p, _)| (p, &path[p.len()..]))
            .unwrap_or(("", "")),
    };
    let body = match rest {
        "/.well-known/openid-configuration" => {
            let issuer = format!("{issuer}{prefix}");
            serde_json::json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "pushed_authorization_request_endpoint": format!("{issuer}/par"),
                "token_endpoint": format!("{issuer}/token"),
                "code_challenge_methods_supported": ["S256"],
            })
            .to_string()
        }
        "/par" => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            if let Err(why) = check_assertion(&body, &format!("{issuer}{prefix}")) {
                ASSERTION_REJECTS.fetch_add(1, Ordering::Relaxed);
                return Response::builder()
                    .status(400)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(format!(
                        r#"{{"error":"invalid_client","error_description":"{why}"}}"#
                    ))))
                    .unwrap();
            }
            PARS.fetch_add(1, Ordering::Relaxed);
            PAR_NANOS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let n = PARS.load(Ordering::Relaxed);
            return Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .body(Full::new(Bytes::from(format!(
                    r#"{{"request_uri":"urn:ietf:params:oauth:request_uri:bench{n}","expires_in":60}}"#
                ))))
                .unwrap();
        }
        "/stats" if prefix.is_empty() => serde_json::json!({
            "handshakes": HANDSHAKES.load(Ordering::Relaxed),
            "pars": PARS.load(Ordering::Relaxed),
            "assertions_checked": ASSERTIONS.load(Ordering::Relaxed),
            "assertion_rejects": ASSERTION_REJECTS.load(Ordering::Relaxed),
            "par_service_us_mean": PAR_NANOS.load(Ordering::Relaxed) as f64 / 1000.0 / PARS.load(Ordering::Relaxed).max(1) as f64,
        })
        .to_string(),
        _ => return Response::builder().status(404).body(Full::new(Bytes::new())).unwrap(),
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
