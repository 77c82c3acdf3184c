//! The egress client-form path on arbitrary bodies and Authorization values: the strict form
//! parser, the app-credential reader, the app-secret check and the grant allowlist never
//! panic; accepted forms have no duplicate names; only the right secret and only listed
//! grants pass.
#![no_main]
use libfuzzer_sys::fuzz_target;
use par_sidecar::config::app_secret::AppSecret;
use par_sidecar::egress::app_auth::{app_credentials, check_app_secret, check_grant_type};
use par_sidecar::egress::parse_form;

fuzz_target!(|data: &[u8]| {
    // First line: the Authorization header value; the rest: the form body.
    let (auth, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    let Ok(form) = parse_form(body) else { return };
    let mut names: Vec<_> = form.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), form.len(), "duplicates are rejected");

    let creds = app_credentials(auth, &form);
    assert!(creds.methods <= 3);
    let secret = AppSecret::from_file_content(b"the-apps-old-secret").unwrap();
    if check_app_secret(&secret, &creds).is_ok() {
        assert_eq!(creds.methods, 1);
        assert!(creds.secret.iter().any(|s| secret.verify(s)));
    }

    let allowed = vec!["authorization_code".to_string(), "refresh_token".to_string()];
    let grant = form.iter().find(|(k, _)| k == "grant_type").map(|(_, v)| v.as_str());
    match check_grant_type(&form, &allowed) {
        Ok(()) => assert!(matches!(grant, Some("authorization_code" | "refresh_token"))),
        Err(e) => assert!(!e.is_empty()),
    }
});
