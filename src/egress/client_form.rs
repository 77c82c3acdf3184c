//! The app's form on a client-authenticated route: parsed strictly, the app's credentials
//! checked and stripped, the grant checked, the code record taken; then, with the egress
//! permit held, this AS's client authentication and the PKCE verifier added.

use crate::as_client::client_auth;
use crate::as_client::registry::AsClient;
use crate::handoff::CodeRecord;
use crate::protocol::redact;
use crate::sidecar::Sidecar;

use super::refusal::{Refusal, RefusalKind};
use super::route::Route;
use super::{app_auth, parse_form, EgressRequest};

/// The app's form without its credentials, and the code record of an authorization_code grant.
type ClientForm<'a> = (Vec<(String, String)>, Option<TakenCode<'a>>);

/// A code record taken for this call. Put back if the call ends before anything reached the
/// AS (not ready, overloaded, signing failed), so the app's retry still works; consumed once
/// the request is sent, so a replayed token call never reaches the AS (TOK-5).
pub(super) struct TakenCode<'a> {
    state: &'a Sidecar,
    code: Option<String>,
    pub(super) record: CodeRecord,
}

impl TakenCode<'_> {
    pub(super) fn consume(&mut self) {
        self.code = None;
    }
}

impl Drop for TakenCode<'_> {
    fn drop(&mut self) {
        if let Some(code) = self.code.take() {
            self.state.codes.insert_new(code, self.record.clone());
        }
    }
}

/// Parses the app's form strictly, checks the app's secret (when configured) and that it
/// names the right client, strips its credentials (CA-1/TOK-1), checks the grant type
/// against the allowlist and, for an authorization_code grant, takes the code record
/// (once: a replayed token call never reaches the AS, TOK-5). All before any signing.
pub(super) fn parse_client_form<'a>(
    state: &'a Sidecar,
    r: Route,
    req: &EgressRequest,
) -> Result<ClientForm<'a>, Refusal> {
    let mut form = parse_form(&req.body).map_err(|e| Refusal::new(RefusalKind::BadRequest, e))?;
    let creds = app_auth::app_credentials(
        req.headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes()),
        &form,
    );
    if let Some(secret) = &state.settings.app_secret {
        app_auth::check_app_secret(secret, &creds)?;
    }
    let app_id = creds.client_id.as_deref();
    client_auth::strip_credentials(&mut form);
    // The app may know each bank's client_id or only one: any configured one is accepted
    // (the AS-specific one is what goes out), anything else is not ours to act for.
    if let Some(id) = app_id {
        if !state
            .registry
            .clients
            .iter()
            .any(|c| c.settings.client.client_id.as_str() == id)
        {
            let desc = format!("par-sidecar does not act for client_id {id}");
            return Err(Refusal::new(RefusalKind::WrongClient, desc));
        }
    }
    if r == Route::Token {
        app_auth::check_grant_type(&form, &state.settings.allowed_grant_types)
            .map_err(|e| Refusal::new(RefusalKind::GrantNotAllowed, e))?;
        app_auth::check_client_credentials(&form, state.settings.app_secret.is_some())
            .map_err(|e| Refusal::new(RefusalKind::GrantNotAllowed, e))?;
    }
    let mut record = None;
    if r == Route::Token && form.iter().any(|(k, v)| k == "grant_type" && v == "authorization_code") {
        let code = form
            .iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Refusal::new(RefusalKind::BadRequest, "missing code"))?;
        let taken = state.codes.take(&code).ok_or_else(|| {
            let desc = format!(
                "par-sidecar did not see authorization code {} at the callback, or it was already redeemed",
                redact(&code)
            );
            Refusal::new(RefusalKind::UnknownCode, desc)
        })?;
        record = Some(TakenCode {
            state,
            code: Some(code),
            record: taken,
        });
    }
    Ok((form, record))
}

/// CA-1/TOK-3: exactly one client authentication, this AS's; PKCE verifier added.
pub(super) async fn add_client_auth(
    state: &Sidecar,
    client: &AsClient,
    form: &mut Vec<(String, String)>,
    record: Option<&CodeRecord>,
) -> Result<(), Refusal> {
    if let Some(rec) = record {
        if let Some(v) = &rec.verifier {
            form.retain(|(k, _)| k != "code_verifier");
            form.push(("code_verifier".into(), v.expose().to_string()));
        }
        settle_redirect_uri(form, rec.redirect_uri.as_deref())?;
    }
    let auth = client
        .client_auth(&state.metrics)
        .await
        .map_err(|e| Refusal::new(RefusalKind::SigningFailed, e.to_string()))?;
    form.extend(auth);
    Ok(())
}

/// RFC 6749 §4.1.3: the token call repeats the pushed `redirect_uri`. Several libraries'
/// documented examples (requests-oauthlib, simple-oauth2) send none: the pushed one is added,
/// byte-identical. A different one could never be accepted by the AS: refused here, before
/// any assertion is signed or the code is spent (TOK-3).
fn settle_redirect_uri(form: &mut Vec<(String, String)>, pushed: Option<&str>) -> Result<(), Refusal> {
    let Some(pushed) = pushed else { return Ok(()) };
    match form.iter().find(|(k, _)| k == "redirect_uri") {
        None => {
            form.push(("redirect_uri".into(), pushed.to_string()));
            Ok(())
        }
        Some((_, v)) if v == pushed => Ok(()),
        Some(_) => Err(Refusal::new(
            RefusalKind::RedirectUriMismatch,
            "the token call's redirect_uri differs from the one pushed for this code",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pushed_redirect_uri_is_added_or_enforced() {
        let mut f = vec![("code".to_string(), "c".to_string())];
        settle_redirect_uri(&mut f, Some("https://app/cb")).unwrap();
        assert_eq!(f[1], ("redirect_uri".into(), "https://app/cb".into()));
        settle_redirect_uri(&mut f, Some("https://app/cb")).unwrap();
        assert_eq!(f.len(), 2, "not added twice");
        let mut other = vec![("redirect_uri".to_string(), "https://app/cb2".to_string())];
        let e = settle_redirect_uri(&mut other, Some("https://app/cb")).unwrap_err();
        assert_eq!((e.kind.status(), e.kind.outcome()), (400, "redirect_uri_mismatch"));
        let mut none = vec![];
        settle_redirect_uri(&mut none, None).unwrap();
        assert!(none.is_empty(), "nothing pushed: nothing added");
    }
}
