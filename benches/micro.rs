//! Micro-benchmarks (std-only harness, `cargo bench --bench micro`): JWT signing per
//! algorithm with our cached aws-lc keys vs `jsonwebtoken::encode`, authorize-redirect
//! detection, the rewrite, and state sealing. `-- --smoke` runs a few iterations only (CI).
//! Results are medians of several runs, in microseconds per operation, and ratios.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use par_sidecar::as_client::jose::SigningKey;
use par_sidecar::front::location::{detect, Detection};
use par_sidecar::front::sealed_state::{StateSealer, TransactionState};
use par_sidecar::protocol::authorize::AuthorizeEndpoint;
use par_sidecar::protocol::jose::Alg;
use par_sidecar::protocol::ClientId;

fn median_us(runs: usize, iters: u32, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (runs, scale) = if smoke { (3, 1) } else { (9, 20) };
    let dir = std::env::temp_dir().join(format!("par-sidecar-bench-{}", std::process::id()));
    let st = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/pki.sh"))
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pki.sh");
    assert!(st.success());
    println!(
        "cores: {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("{:<44} {:>12} {:>12} {:>8}", "operation", "us/op", "baseline", "ratio");

    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"iss":"legacy-app","aud":"https://as.example.com","client_id":"legacy-app","response_type":"code",
        "redirect_uri":"https://app.example.com/callback","scope":"openid email","state":"ps1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "nonce":"n-0S6_WzA2Mj","code_challenge":"E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8","code_challenge_method":"S256",
        "iat":1700000000,"nbf":1700000000,"exp":1700000300,"jti":"6f1d1c5e-1b7e-4f6e-8a55-0c1f0c8f9a11"}"#,
    )
    .unwrap();
    for (file, alg, jalg, iters) in [
        ("sign-ps256.pem", Alg::PS256, jsonwebtoken::Algorithm::PS256, 20),
        ("sign-es256.pem", Alg::ES256, jsonwebtoken::Algorithm::ES256, 200),
        ("sign-eddsa.pem", Alg::EdDSA, jsonwebtoken::Algorithm::EdDSA, 200),
    ] {
        let pem = std::fs::read(dir.join(file)).unwrap();
        let der = rustls_pemfile::private_key(&mut pem.as_slice()).unwrap().unwrap();
        let ours = SigningKey::from_der(der.secret_der(), alg, Some("k1".into())).unwrap();
        let enc = match alg {
            Alg::PS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
            Alg::ES256 | Alg::ES384 | Alg::ES512 => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
            Alg::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
        };
        let mut header = jsonwebtoken::Header::new(jalg);
        header.kid = Some("k1".into());
        let iters = iters * scale / 20 + 1;
        let cached = median_us(runs, iters, || {
            black_box(ours.sign_jwt(Some("oauth-authz-req+jwt"), black_box(&claims)).unwrap());
        });
        let crate_encode = median_us(runs, iters, || {
            black_box(jsonwebtoken::encode(&header, black_box(&claims), &enc).unwrap());
        });
        println!(
            "{:<44} {:>12.1} {:>12.1} {:>8.2}",
            format!("sign request object {} (cached aws-lc key)", alg.as_str()),
            cached,
            crate_encode,
            crate_encode / cached
        );
    }
    println!("  (baseline: jsonwebtoken::encode with a pre-built EncodingKey; ratio = baseline / ours)");

    let ep = AuthorizeEndpoint::new(url::Url::parse("https://as.example.com/authorize").unwrap());
    let cid = ClientId::new("legacy-app").unwrap();
    let loc = "https://as.example.com/authorize?response_type=code&client_id=legacy-app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback&scope=openid+email&state=af0ifjsldkj&nonce=n-0S6_WzA2Mj&claims=%7B%22id_token%22%3A%7B%22acr%22%3Anull%7D%7D";
    let iters = 2000 * scale / 20 + 1;
    let d = median_us(runs, iters, || {
        assert!(matches!(
            detect(black_box(loc.as_bytes()), &ep, &cid, 16384),
            Detection::Ours(_)
        ));
    });
    let other = "https://cdn.example.com/static/app.js?v=123";
    let p = median_us(runs, iters, || {
        black_box(detect(black_box(other.as_bytes()), &ep, &cid, 16384));
    });
    let r = median_us(runs, iters, || {
        black_box(ep.rewritten_location(&cid, "urn:ietf:params:oauth:request_uri:6esc_11ACC5bwc014ltc14eY22c"));
    });
    println!("{:<44} {:>12.2}", "detect + parse the app's authorize redirect", d);
    println!("{:<44} {:>12.2}", "detect a redirect elsewhere (pass-through)", p);
    println!("{:<44} {:>12.2}", "build the rewritten Location", r);

    let sealer = StateSealer::from_material(&[7u8; 32], "legacy-app").unwrap();
    let tx = TransactionState {
        app_state: Some("af0ifjsldkj".into()),
        verifier: Some("dBjftJeZ4CVP-1B0gMtBmV4LjjQ7uGqU8oE2YmcTSnc".into()),
        redirect_uri: Some("https://app.example.com/callback".into()),
        issued_at: 1_700_000_000,
        nonce: "n".into(),
        jarm: false,
        binding: Some("E9Melhoa2OwvFYEXJEc9j1PQ9OoN8R7Cr0Frozjv1n8".into()),
        as_name: Some("bank-a".into()),
        oidc_nonce: Some("n-0S6_WzA2Mj".into()),
        max_age: None,
        form_post: false,
        claim_values: None,
    };
    let sealed = sealer.seal(&tx);
    let s = median_us(runs, iters, || {
        black_box(sealer.seal(black_box(&tx)));
    });
    let o = median_us(runs, iters, || {
        black_box(sealer.open(black_box(&sealed), 1_700_000_100, 600).unwrap());
    });
    println!("{:<44} {:>12.2}", "seal state (AES-256-GCM)", s);
    println!("{:<44} {:>12.2}", "open state", o);

    // The PAR body: client_id, the request object, the assertion type and the assertion.
    let es = SigningKey::generate(Alg::ES256).unwrap();
    let form: Vec<(String, String)> = vec![
        ("client_id".into(), "legacy-app".into()),
        (
            "request".into(),
            es.sign_jwt(Some("oauth-authz-req+jwt"), &claims).unwrap(),
        ),
        (
            "client_assertion_type".into(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ),
        ("client_assertion".into(), es.sign_jwt(None, &claims).unwrap()),
    ];
    let ours = median_us(runs, iters, || {
        black_box(par_sidecar::as_client::par::encode_form(black_box(&form)));
    });
    let serializer = median_us(runs, iters, || {
        black_box(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(black_box(&form).iter())
                .finish(),
        );
    });
    println!(
        "{:<44} {:>12.2} {:>12.2} {:>8.2}",
        "PAR form body (2 ES256 JWTs)",
        ours,
        serializer,
        serializer / ours
    );
    println!("  (baseline: form_urlencoded::Serializer, which reqwest's .form() uses via serde_urlencoded)");
    let ours = median_us(runs, iters, || {
        black_box(par_sidecar::protocol::random_uuid());
    });
    let kernel = median_us(runs, iters, || {
        black_box(uuid::Uuid::new_v4());
    });
    println!(
        "{:<44} {:>12.3} {:>12.3} {:>8.2}",
        "UUID v4 (jti, interaction id)",
        ours,
        kernel,
        kernel / ours
    );
    println!("  (baseline: Uuid::new_v4, one getrandom system call each)");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
