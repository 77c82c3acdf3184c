//! The HTTP seam to the AS. Protocol modules talk to [`AsHttp`]; production uses reqwest
//! over mTLS with the transport certificate, tests can use an in-process fake.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

use crate::as_client::keys::{load_certs, KeyLoadError, TransportIdentity};

/// One HTTP request to the AS: small, fully buffered, form or empty body.
#[derive(Debug, Clone)]
pub struct AsRequest {
    pub method: http::Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub form: Option<Vec<(String, String)>>,
    /// A raw body, sent as is (resource calls through the egress listener).
    pub body: Option<Bytes>,
    pub timeout: Duration,
}

impl AsRequest {
    /// A bodiless request with `accept: application/json` and, like every back-channel
    /// call, a fresh v4 `x-fapi-interaction-id` (XF-1).
    pub fn get(url: url::Url, timeout: Duration) -> AsRequest {
        AsRequest {
            method: http::Method::GET,
            url,
            headers: vec![
                ("accept".into(), "application/json".into()),
                (
                    "x-fapi-interaction-id".into(),
                    crate::protocol::InteractionId::new().to_string(),
                ),
            ],
            form: None,
            body: None,
            timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AsResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Why a call did not produce an HTTP response. Labels are metric-safe.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    pub fn label(&self) -> &'static str {
        match self {
            TransportError::Timeout => "timeout",
            TransportError::Connect(_) => "connect",
            TransportError::Tls(_) => "tls",
            TransportError::TooLarge(_) => "too_large",
            TransportError::Other(_) => "transport",
        }
    }
}

#[async_trait]
pub trait AsHttp: Send + Sync {
    async fn send(&self, req: AsRequest) -> Result<AsResponse, TransportError>;
}

/// reqwest with a rustls config we build ourselves: our roots, our client certificate,
/// aws-lc-rs, TLS 1.2+, h2 when the AS offers it. Connections are pooled and reused so a
/// PAR after warm-up costs no handshake.
pub struct ReqwestAs {
    client: reqwest::Client,
    max_body: usize,
}

impl ReqwestAs {
    pub fn new(
        identity: &TransportIdentity,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        max_body: usize,
    ) -> Result<Self, KeyLoadError> {
        let tls = client_tls_config(identity, ca_file)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            // The AS must answer, not bounce us around: a redirect is an error (fault list).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KeyLoadError::File {
                path: "transport".into(),
                message: format!("cannot build HTTPS client: {e}"),
            })?;
        Ok(ReqwestAs { client, max_body })
    }
}

/// The system's roots, parsed once per process and shared by every AS without a `ca_file`
/// (50 public banks would otherwise parse and hold 50 copies).
fn native_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            Arc::new(roots)
        })
        .clone()
}

pub fn client_tls_config(
    identity: &TransportIdentity,
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, KeyLoadError> {
    let roots = match ca_file {
        Some(p) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(p)? {
                roots.add(c).map_err(|e| KeyLoadError::File {
                    path: p.display().to_string(),
                    message: format!("bad CA certificate: {e}"),
                })?;
            }
            Arc::new(roots)
        }
        None => native_roots(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| KeyLoadError::File {
            path: "tls".into(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain.clone(), identity.key())
        .map_err(|e| KeyLoadError::File {
            path: "transport".into(),
            message: format!("client certificate rejected: {e}"),
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A URL for logs: origin and path only. Queries of resource and userinfo calls are the
/// app's and may carry tokens.
pub fn url_for_log(u: &url::Url) -> String {
    format!("{}{}", u.origin().ascii_serialization(), u.path())
}

fn classify(e: &reqwest::Error) -> TransportError {
    if e.is_timeout() {
        return TransportError::Timeout;
    }
    // Walk the source chain: rustls errors say "certificate", "handshake", "tls".
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    // reqwest names the URL; its query may hold an access token (`userinfo?access_token=`).
    if let Some(u) = e.url() {
        msg = msg.replace(u.as_str(), &url_for_log(u));
    }
    let lower = msg.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        TransportError::Tls(msg)
    } else if e.is_connect() {
        TransportError::Connect(msg)
    } else {
        TransportError::Other(msg)
    }
}

#[async_trait]
impl AsHttp for ReqwestAs {
    /// Runs on the AS client runtime ([`crate::as_client::as_runtime`]), not the caller's.
    async fn send(&self, req: AsRequest) -> Result<AsResponse, TransportError> {
        let client = self.client.clone();
        let max_body = self.max_body;
        crate::as_client::as_runtime::run(send_on(client, max_body, req))
            .await
            .unwrap_or_else(|| Err(TransportError::Other("AS client task failed".into())))
    }
}

async fn send_on(client: reqwest::Client, max_body: usize, req: AsRequest) -> Result<AsResponse, TransportError> {
    let deadline = req.timeout;
    let mut rb = client.request(req.method, req.url).timeout(deadline);
    for (k, v) in req.headers {
        rb = rb.header(k, v);
    }
    if let Some(form) = req.form {
        rb = rb.form(&form);
    } else if let Some(body) = req.body {
        rb = rb.body(body);
    }
    let mut resp = rb.send().await.map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if resp.content_length().is_some_and(|l| l as usize > max_body) {
        return Err(TransportError::TooLarge(max_body));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
        if body.len() + chunk.len() > max_body {
            return Err(TransportError::TooLarge(max_body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(AsResponse {
        status,
        headers,
        body: Bytes::from(body),
    })
}
