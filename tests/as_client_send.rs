//! `AsClient::send` with DPoP against a scripted AS: the nonce challenge answered once, with
//! a fresh proof carrying the nonce and a fresh client assertion (CA-2: no `jti` twice).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use par_sidecar::as_client::http_client::{AsHttp, AsRequest, AsResponse, TransportError};
use par_sidecar::as_client::jose::SigningKey;
use par_sidecar::as_client::send::DpopProof;
use par_sidecar::config::Settings;
use par_sidecar::protocol::jose::Alg;
use par_sidecar::sidecar::Sidecar;
use serde_json::Value;

/// Answers the first call with a nonce challenge, every later one with 200.
#[derive(Default)]
struct NonceFirst {
    seen: Mutex<Vec<AsRequest>>,
}

#[async_trait]
impl AsHttp for NonceFirst {
    async fn send(&self, req: AsRequest) -> Result<AsResponse, TransportError> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(req);
            seen.len()
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("dpop-nonce", format!("n-{n}").parse().unwrap());
        let (status, body): (u16, &[u8]) = if n == 1 {
            (400, br#"{"error":"use_dpop_nonce"}"#)
        } else {
            (200, br#"{"access_token":"a","token_type":"DPoP"}"#)
        };
        Ok(AsResponse {
            status,
            headers,
            body: body.to_vec().into(),
        })
    }
}

fn header(req: &AsRequest, name: &str) -> String {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap()
}

fn form_values(req: &AsRequest, name: &str) -> Vec<String> {
    let form = req.form.as_ref().unwrap();
    form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
}

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn a_nonce_challenge_is_answered_once_with_a_fresh_proof_and_assertion() {
    let pki = common::pki();
    let yaml = common::settings_yaml(
        &pki,
        "https://as.example",
        "sign-es256.pem",
        "ES256",
        "private_key_jwt",
        "",
    );
    let state = Sidecar::load(Settings::from_yaml(&yaml, &pki.join("s.yaml")).unwrap()).unwrap();
    let client = state.first_as();
    let mut form = vec![("grant_type".to_string(), "refresh_token".to_string())];
    client.authenticate_form(&mut form, &state.metrics).await.unwrap();
    let call = AsRequest {
        method: http::Method::POST,
        url: url::Url::parse("https://as.example/token").unwrap(),
        headers: vec![("accept".into(), "application/json".into())],
        form: Some(form),
        body: None,
        timeout: Duration::from_secs(1),
    };
    let dpop = DpopProof {
        key: Arc::new(SigningKey::generate(Alg::ES256).unwrap()),
        previous: None,
        access_token: None,
        route: "token",
    };
    let http = NonceFirst::default();
    let resp = client.send(&http, Some(&dpop), call, &state.metrics).await.unwrap();
    assert_eq!(resp.status, 200);

    let seen = http.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one retry, no more");
    let (p1, p2) = (claims(&header(&seen[0], "dpop")), claims(&header(&seen[1], "dpop")));
    assert!(p1.get("nonce").is_none());
    assert_eq!(p2["nonce"], "n-1", "the retry carries the server's nonce");
    assert_ne!(p1["jti"], p2["jti"], "a fresh proof per attempt");
    let (a1, a2) = (
        form_values(&seen[0], "client_assertion"),
        form_values(&seen[1], "client_assertion"),
    );
    assert_eq!((a1.len(), a2.len()), (1, 1), "exactly one assertion per attempt");
    assert_ne!(
        claims(&a1[0])["jti"],
        claims(&a2[0])["jti"],
        "a fresh assertion for the retry"
    );
    assert_eq!(form_values(&seen[1], "client_id"), ["legacy-app"]);
    assert_eq!(form_values(&seen[1], "grant_type"), ["refresh_token"]);
    let m = String::from_utf8(state.metrics.render()).unwrap();
    assert!(
        m.contains(r#"par_sidecar_dpop_nonce_retries_total{as="default",route="token"} 1"#),
        "{m}"
    );
}
