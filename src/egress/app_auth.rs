//! The app's own client credentials on the egress listener, and the token-route grant
//! allowlist. Pure functions (fuzzed with the form parser).
//!
//! When `egress.app_client_secret_sha256` or `egress.app_client_secret_file` is set, the
//! token, introspection and revocation routes require the app's (old) client secret, so a
//! request forged through an SSRF in the app cannot use the sidecar's client authentication.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::refusal::{Refusal, RefusalKind};
use crate::config::app_secret::AppSecret;

/// How the app identified itself on a client-authenticated route.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AppCredentials {
    /// From Basic (percent-decoded, RFC 6749 §2.3.1) or the form's `client_id`.
    pub client_id: Option<String>,
    /// The secret as presented, and its form-urlencoding-decoded reading if that differs
    /// (apps disagree on whether to encode it inside Basic).
    pub secret: Vec<Vec<u8>>,
    /// Client authentication methods used: Basic, `client_secret` in the form,
    /// `client_assertion` in the form. More than one is an error (RFC 6749 §2.3).
    pub methods: usize,
}

/// Reads the app's credentials from the `Authorization` header value and the form.
pub fn app_credentials(authorization: Option<&[u8]>, form: &[(String, String)]) -> AppCredentials {
    let mut c = AppCredentials::default();
    let basic = authorization
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b)| STANDARD.decode(b.trim()).ok())
        .and_then(|d| String::from_utf8(d).ok());
    if let Some(s) = basic {
        let (id, secret) = s.split_once(':').unwrap_or((&s, ""));
        c.client_id = Some(
            percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned(),
        );
        c.methods += 1;
        c.secret.push(secret.as_bytes().to_vec());
        let decoded: Vec<u8> = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
        if decoded != secret.as_bytes() {
            c.secret.push(decoded);
        }
    }
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if c.client_id.is_none() {
        c.client_id = get("client_id").map(str::to_string);
    }
    if let Some(s) = get("client_secret") {
        c.methods += 1;
        c.secret.push(s.as_bytes().to_vec());
    }
    if get("client_assertion").is_some() {
        c.methods += 1;
    }
    c
}

/// Why the app's credentials are refused (`app_auth_missing` or `app_auth_failed`).
pub fn check_app_secret(secret: &AppSecret, c: &AppCredentials) -> Result<(), Refusal> {
    if c.secret.is_empty() {
        return Err(Refusal::new(
            RefusalKind::AppAuthMissing,
            "the egress listener requires the app's client secret (HTTP Basic or form parameter)",
        ));
    }
    if c.methods > 1 {
        return Err(Refusal::new(
            RefusalKind::AppAuthFailed,
            "more than one client authentication method in one request",
        ));
    }
    // Every reading is compared, so the time taken does not depend on which one matched.
    let ok = c.secret.iter().fold(false, |acc, s| secret.verify(s) | acc);
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(RefusalKind::AppAuthFailed, "wrong client secret"))
    }
}

/// What `check-config` and the start-up log say when the egress listener is on without an
/// app secret: then a token, introspection or revocation call with no credentials at all is
/// forwarded with the sidecar's client authentication, and the `client_id` check applies
/// only to calls that name one. Not refused by default: a `client_id` is public (it is in
/// every authorize URL), so requiring one would stop no SSRF and would break public clients
/// that refresh without it (RFC 6749 §6 does not ask them to send it). The app secret is
/// the protection; this says loudly that it is off. (No config key names in it: the log
/// hygiene test refuses any log line naming a client secret; `check-config` adds them.)
pub fn unauthenticated_egress_warning(egress_listener: bool, secret: Option<&AppSecret>) -> Option<&'static str> {
    (egress_listener && secret.is_none()).then_some(
        "egress app authentication is OFF: token, introspection and revocation calls on the egress \
         listener are sent as the OAuth client whatever credentials they carry (none included); \
         anything that can reach the listener (an SSRF in the app) can use the sidecar's client \
         authentication. Configure the app's own secret to require it (README Security, \
         App credentials)",
    )
}

/// The token route's allowlist: the form's `grant_type` must be one of `allowed`.
pub fn check_grant_type(form: &[(String, String)], allowed: &[String]) -> Result<(), String> {
    match form.iter().find(|(k, _)| k == "grant_type").map(|(_, v)| v.as_str()) {
        None => Err("grant_type is missing".into()),
        Some(g) if allowed.iter().any(|a| a == g) => Ok(()),
        Some(g) => {
            let shown = if g.len() <= 80 && g.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b)) {
                g.to_string()
            } else {
                crate::protocol::redact(g)
            };
            Err(format!(
                "par-sidecar does not forward grant_type `{shown}` (allowed: {})",
                allowed.join(", ")
            ))
        }
    }
}

/// `client_credentials` tokens act for the TPP with no user: forwarded only when the app
/// authenticated to the egress (config validation already refuses the grant in the allowlist
/// without an app secret; this holds even for settings built another way).
pub fn check_client_credentials(form: &[(String, String)], app_authenticated: bool) -> Result<(), String> {
    let cc = form.iter().any(|(k, v)| k == "grant_type" && v == "client_credentials");
    if cc && !app_authenticated {
        return Err("par-sidecar forwards client_credentials only for an app that authenticates to the egress".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::app_secret::DEFAULT_GRANT_TYPES;

    fn basic(s: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(s)).into_bytes()
    }

    fn form(s: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(s.as_bytes()).into_owned().collect()
    }

    #[test]
    fn the_app_secret_is_required_and_compared() {
        assert!(AppSecret::from_sha256_hex("abc").is_err());
        assert!(AppSecret::from_sha256_hex(&"g".repeat(64)).is_err());
        assert!(AppSecret::from_file_content(b"\n").is_err());
        let s = AppSecret::from_file_content(b"the-apps-old-secret\n").unwrap();
        let digest = "3279f62d86936899598326365387d1930a4827f1dc8f2efc64b3fe286fdfcf1a";
        assert_eq!(s, AppSecret::from_sha256_hex(digest).unwrap());
        assert_eq!(s, AppSecret::from_sha256_hex(&digest.to_uppercase()).unwrap());
        assert_eq!(s, AppSecret::from_file_content(b"the-apps-old-secret\r\n").unwrap());
        assert_eq!(format!("{s:?}"), "AppSecret(..)");

        let ok = |auth: Option<&[u8]>, f: &str| check_app_secret(&s, &app_credentials(auth, &form(f)));
        assert_eq!(ok(Some(&basic("legacy-app:the-apps-old-secret")), ""), Ok(()));
        assert_eq!(ok(Some(&basic("legacy-app:the%2Dapps%2Dold%2Dsecret")), ""), Ok(()));
        assert_eq!(
            ok(None, "client_id=legacy-app&client_secret=the-apps-old-secret"),
            Ok(())
        );
        assert_eq!(ok(None, "").unwrap_err().kind.outcome(), "app_auth_missing");
        assert_eq!(
            ok(None, "client_id=legacy-app").unwrap_err().kind.outcome(),
            "app_auth_missing"
        );
        assert_eq!(
            ok(Some(b"Bearer the-apps-old-secret"), "").unwrap_err().kind.outcome(),
            "app_auth_missing"
        );
        assert_eq!(
            ok(Some(&basic("legacy-app:wrong")), "").unwrap_err().kind.outcome(),
            "app_auth_failed"
        );
        assert_eq!(
            ok(Some(&basic("legacy-app")), "").unwrap_err().kind.outcome(),
            "app_auth_failed"
        );
        assert_eq!(
            ok(None, "client_secret=the-apps-old-secretx")
                .unwrap_err()
                .kind
                .outcome(),
            "app_auth_failed"
        );
        assert_eq!(
            ok(
                Some(&basic("legacy-app:the-apps-old-secret")),
                "client_secret=the-apps-old-secret"
            )
            .unwrap_err()
            .kind
            .outcome(),
            "app_auth_failed"
        );
    }

    #[test]
    fn credentials_are_read_from_basic_or_the_form() {
        let c = app_credentials(Some(&basic("legacy%2Dapp:s3cret")), &form("client_id=other"));
        assert_eq!(c.client_id.as_deref(), Some("legacy-app"));
        assert_eq!((c.methods, c.secret.len()), (1, 1));
        let c = app_credentials(Some(b"basic bGVnYWN5LWFwcDpzM2NyZXQ="), &[]);
        assert_eq!(c.client_id.as_deref(), Some("legacy-app"));
        let c = app_credentials(None, &form("client_id=x&client_assertion=a.b.c"));
        assert_eq!((c.client_id.as_deref(), c.methods, c.secret.len()), (Some("x"), 1, 0));
    }

    #[test]
    fn no_app_secret_is_said_loudly() {
        let s = AppSecret::from_file_content(b"x").unwrap();
        assert!(unauthenticated_egress_warning(true, None).is_some_and(|w| w.contains("OFF")));
        assert_eq!(unauthenticated_egress_warning(true, Some(&s)), None);
        assert_eq!(unauthenticated_egress_warning(false, None), None);
    }

    #[test]
    fn only_allowed_grants_pass() {
        let allowed: Vec<String> = DEFAULT_GRANT_TYPES.iter().map(|s| s.to_string()).collect();
        assert!(check_grant_type(&form("grant_type=authorization_code&code=c"), &allowed).is_ok());
        assert!(check_grant_type(&form("grant_type=refresh_token"), &allowed).is_ok());
        for bad in [
            "grant_type=client_credentials",
            "grant_type=password&username=u&password=p",
            "grant_type=",
            "grant_type=Authorization_code",
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            "code=c",
            "",
        ] {
            assert!(check_grant_type(&form(bad), &allowed).is_err(), "{bad}");
        }
        let wider = vec!["client_credentials".to_string()];
        assert!(check_grant_type(&form("grant_type=client_credentials"), &wider).is_ok());
        assert!(check_client_credentials(&form("grant_type=client_credentials"), false).is_err());
        assert!(check_client_credentials(&form("grant_type=client_credentials"), true).is_ok());
        assert!(check_client_credentials(&form("grant_type=refresh_token"), false).is_ok());
    }
}
