//! Binds each authorization request to the browser that started it (FAPI 2.0 §5.3.3.1,
//! checklist AZ-5/PKCE-4): the rewritten redirect sets a per-transaction cookie whose hash
//! is sealed into `state`; the callback must come from a browser holding it. An
//! authorization response replayed into another browser (login CSRF) is refused even when
//! the legacy app does not check its own `state`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::as_client::jose::{random_token, s256};

const PREFIX: &str = "par_sidecar_tx_";

/// A fresh binding for one transaction.
pub struct Binding {
    pub cookie_name: String,
    pub value: String,
    /// `s256(value)`, sealed into the state.
    pub hash: String,
}

/// Cookie name per transaction, so parallel logins in several tabs do not clobber each other.
pub fn cookie_name(tx_nonce: &str) -> String {
    let id: String = tx_nonce
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{PREFIX}{id}")
}

pub fn new_binding(tx_nonce: &str) -> Binding {
    let value = random_token();
    Binding {
        cookie_name: cookie_name(tx_nonce),
        hash: s256(&value),
        value,
    }
}

pub fn set_cookie(b: &Binding, max_age: u64, secure: bool) -> String {
    format!(
        "{}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        b.cookie_name,
        b.value,
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(name: &str, secure: bool) -> String {
    format!(
        "{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the `Cookie` header holds the binding whose hash was sealed.
pub fn holds(cookie_header: Option<&str>, name: &str, sealed_hash: &str) -> bool {
    let Some(h) = cookie_header else { return false };
    h.split(';').filter_map(|c| c.trim().split_once('=')).any(|(k, v)| {
        k == name
            && B64.decode(sealed_hash).is_ok()
            && aws_lc_rs::constant_time::verify_slices_are_equal(s256(v).as_bytes(), sealed_hash.as_bytes()).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_round_trip() {
        let b = new_binding("AbC-def_123456789xyz");
        assert_eq!(b.cookie_name, "par_sidecar_tx_AbCdef123456");
        let header = format!("other=1; {}={}; x=y", b.cookie_name, b.value);
        assert!(holds(Some(&header), &b.cookie_name, &b.hash));
        assert!(!holds(Some("other=1"), &b.cookie_name, &b.hash));
        assert!(!holds(
            Some(&format!("{}=forged", b.cookie_name)),
            &b.cookie_name,
            &b.hash
        ));
        assert!(!holds(None, &b.cookie_name, &b.hash));
        assert!(set_cookie(&b, 600, true).ends_with("; Secure"));
        assert!(clear_cookie(&b.cookie_name, false).contains("Max-Age=0"));
    }
}
