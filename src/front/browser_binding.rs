//! Binds each authorization request to the browser that started it (FAPI 2.0 §5.3.3.1,
//! checklist AZ-5/PKCE-4): the rewritten redirect sets a per-transaction cookie whose hash
//! is sealed into `state`; the callback must come from a browser holding it. An
//! authorization response replayed into another browser (login CSRF) is refused even when
//! the legacy app does not check its own `state`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::as_client::jose::{random_token, s256};

const PREFIX: &str = "par_sidecar_tx_";
/// RFC 6265bis §4.1.3.2: a browser stores a `__Host-` cookie only when it is set `Secure`,
/// from a secure origin, with `Path=/` and without `Domain`. So a sibling subdomain (which
/// can set `Domain=example.com` cookies for this host) cannot plant or overwrite one: a
/// planted cookie can never carry this name (login CSRF via cookie injection).
const HOST_PREFIX: &str = "__Host-";

/// A fresh binding for one transaction.
pub struct Binding {
    pub cookie_name: String,
    pub value: String,
    /// `s256(value)`, sealed into the state.
    pub hash: String,
}

/// Cookie name per transaction, so parallel logins in several tabs do not clobber each other.
/// With `secure` (production, HTTPS) the name carries the `__Host-` prefix.
pub fn cookie_name(tx_nonce: &str, secure: bool) -> String {
    let id: String = tx_nonce
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{}{PREFIX}{id}", if secure { HOST_PREFIX } else { "" })
}

pub fn new_binding(tx_nonce: &str, secure: bool) -> Binding {
    let value = random_token();
    Binding {
        cookie_name: cookie_name(tx_nonce, secure),
        hash: s256(&value),
        value,
    }
}

/// `Path=/` and no `Domain` always: both are required for the `__Host-` prefix.
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

/// The `name=value` pairs of every `Cookie` header, as bytes (RFC 6265 §5.4; HTTP/2 may
/// split cookies over several header fields, RFC 9113 §8.2.3). Another app's cookie that is
/// not ASCII or UTF-8 is skipped, never a reason to drop the whole header. Values in double
/// quotes are unquoted.
pub fn cookie_pairs<'a>(headers: &'a [&'a [u8]]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    headers.iter().flat_map(|h| h.split(|b| *b == b';')).filter_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        let name = pair[..eq].trim_ascii();
        let mut value = pair[eq + 1..].trim_ascii();
        if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
            value = &value[1..value.len() - 1];
        }
        (!name.is_empty()).then_some((name, value))
    })
}

/// Whether the request's `Cookie` headers hold the binding whose hash was sealed.
pub fn holds(cookie_headers: &[&[u8]], name: &str, sealed_hash: &str) -> bool {
    if B64.decode(sealed_hash).is_err() {
        return false;
    }
    cookie_pairs(cookie_headers).any(|(k, v)| {
        k == name.as_bytes()
            && std::str::from_utf8(v).is_ok_and(|v| {
                aws_lc_rs::constant_time::verify_slices_are_equal(s256(v).as_bytes(), sealed_hash.as_bytes()).is_ok()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn binding_round_trip() {
        let b = new_binding("AbC-def_123456789xyz", false);
        assert_eq!(b.cookie_name, "par_sidecar_tx_AbCdef123456");
        let header = format!("other=1; {}={}; x=y", b.cookie_name, b.value);
        assert!(holds(&[header.as_bytes()], &b.cookie_name, &b.hash));
        assert!(!holds(&[b"other=1"], &b.cookie_name, &b.hash));
        let forged = format!("{}=forged", b.cookie_name);
        assert!(!holds(&[forged.as_bytes()], &b.cookie_name, &b.hash));
        assert!(!holds(&[], &b.cookie_name, &b.hash));
        assert!(set_cookie(&b, 600, true).ends_with("; Secure"));
        assert!(clear_cookie(&b.cookie_name, false).contains("Max-Age=0"));
    }

    /// With `cookie_secure` the name has the `__Host-` prefix and the Set-Cookie meets the
    /// prefix's rules (Secure, Path=/, no Domain): a browser then refuses any cookie of that
    /// name that a sibling subdomain sets (it would need `Domain`, or lack `Secure`).
    #[test]
    fn secure_binding_uses_the_host_prefix() {
        let b = new_binding("AbC-def_123456789xyz", true);
        assert_eq!(b.cookie_name, "__Host-par_sidecar_tx_AbCdef123456");
        assert_eq!(cookie_name("AbC-def_123456789xyz", true), b.cookie_name);
        for c in [set_cookie(&b, 600, true), clear_cookie(&b.cookie_name, true)] {
            assert!(c.starts_with("__Host-par_sidecar_tx_AbCdef123456="), "{c}");
            let attrs: Vec<String> = c.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();
            assert!(attrs.iter().any(|a| a == "secure"), "{c}");
            assert!(attrs.iter().any(|a| a == "path=/"), "{c}");
            assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{c}");
        }
        // A planted cookie under the unprefixed name is not the binding.
        let planted = format!("par_sidecar_tx_AbCdef123456={}", b.value);
        assert!(!holds(&[planted.as_bytes()], &b.cookie_name, &b.hash));
        let genuine = format!("{}={}", b.cookie_name, b.value);
        assert!(holds(&[genuine.as_bytes()], &b.cookie_name, &b.hash));
        // cookie_secure: false keeps today's name.
        assert_eq!(
            cookie_name("AbC-def_123456789xyz", false),
            "par_sidecar_tx_AbCdef123456"
        );
    }

    #[test]
    fn every_cookie_header_is_read() {
        let b = new_binding("n1", false);
        let first = h("a=1; b=2");
        let second = h(&format!("{}={}", b.cookie_name, b.value));
        assert!(holds(&[&first, &second], &b.cookie_name, &b.hash));
        assert!(!holds(&[&first], &b.cookie_name, &b.hash));
    }

    #[test]
    fn another_apps_undecodable_cookie_does_not_hide_the_binding() {
        let b = new_binding("n1", false);
        // Latin-1 (not UTF-8), UTF-8 non-ASCII, a control byte, a pair without `=`.
        let mut raw = b"theme=caf\xe9; name=J\xc3\xbcrgen; x=\x01; flag; ".to_vec();
        raw.extend_from_slice(format!("{}={}; last=1", b.cookie_name, b.value).as_bytes());
        assert!(std::str::from_utf8(&raw).is_err());
        assert!(holds(&[&raw], &b.cookie_name, &b.hash));
        // Quoted values and stray whitespace (RFC 6265 cookie-value may be DQUOTEd).
        let quoted = h(&format!("  {} = \"{}\" ;", b.cookie_name, b.value));
        assert!(holds(&[&quoted], &b.cookie_name, &b.hash));
    }

    #[test]
    fn cookie_pairs_parses_bytes() {
        let raw = b"a=1;b = 2 ;;=x; c=\"q\"; d=caf\xe9; e".to_vec();
        let headers: [&[u8]; 2] = [&raw, b"f=6"];
        let pairs: Vec<(&[u8], &[u8])> = cookie_pairs(&headers).collect();
        assert_eq!(
            pairs,
            vec![
                (&b"a"[..], &b"1"[..]),
                (b"b", b"2"),
                (b"c", b"q"),
                (b"d", b"caf\xe9"),
                (b"f", b"6"),
            ]
        );
    }
}
