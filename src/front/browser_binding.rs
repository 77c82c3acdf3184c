//! Binds each authorization request to the browser that started it (FAPI 2.0 §5.3.3.1,
//! AZ-5, PKCE-4): the rewritten redirect sets a per-transaction cookie whose hash
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

/// Binding cookies one browser keeps: this many logins can run in parallel tabs. Each login
/// start sets a new cookie (Max-Age = the state's lifetime); a browser whose logins never
/// reach the callback (abandoned, failed at the AS) would otherwise pile them up until its
/// `Cookie` header outgrows what the app or the sidecar accepts.
pub const MAX_BINDINGS: usize = 3;

/// At most this many cookies are cleared in one response (a browser that piled up cookies
/// before this limit existed is cleaned over a few login starts).
const MAX_CLEARED: usize = 32;

/// The binding cookies to clear (`Set-Cookie` with `Max-Age=0`) on a login start, so that
/// with the one it sets the browser holds at most [`MAX_BINDINGS`]: all but the newest
/// `MAX_BINDINGS - 1`. Browsers list cookies of one path oldest first (RFC 6265 §5.4 step
/// 2; every binding cookie has `Path=/`), so the first ones named are the oldest. Only names
/// of the current kind (`__Host-` with `secure`) are considered: only those can be cleared
/// with the attributes [`clear_cookie`] writes.
pub fn stale_bindings(cookie_headers: &[&[u8]], secure: bool) -> Vec<String> {
    let prefix = format!("{}{PREFIX}", if secure { HOST_PREFIX } else { "" });
    let mut names: Vec<String> = Vec::new();
    for (name, _) in cookie_pairs(cookie_headers) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let ours = name
            .strip_prefix(prefix.as_str())
            .is_some_and(|id| !id.is_empty() && id.len() <= 12 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        if ours && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    let keep = MAX_BINDINGS.saturating_sub(1);
    let stale = names.len().saturating_sub(keep);
    names.truncate(stale.min(MAX_CLEARED));
    names
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
    fn binding_cookies_do_not_pile_up() {
        let header = |n: usize, secure: bool| {
            (0..n)
                .map(|i| format!("{}=v{i}", cookie_name(&format!("tx{i}"), secure)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        // Up to two held: the new one makes three, nothing is cleared.
        for n in 0..MAX_BINDINGS {
            assert!(stale_bindings(&[header(n, true).as_bytes()], true).is_empty(), "{n}");
        }
        // Five held: the three oldest (listed first) go, the newest two stay.
        let h = format!("theme=dark; {}; session=abc", header(5, true));
        assert_eq!(
            stale_bindings(&[h.as_bytes()], true),
            [
                "__Host-par_sidecar_tx_tx0",
                "__Host-par_sidecar_tx_tx1",
                "__Host-par_sidecar_tx_tx2"
            ]
        );
        // Over several Cookie headers (h2), duplicates once, other kinds and look-alikes never.
        let a = header(3, false);
        let b = format!(
            "{}; par_sidecar_tx_tx0=again; par_sidecar_tx_=x; par_sidecar_tx_a-b=x",
            header(3, true)
        );
        let stale = stale_bindings(&[a.as_bytes(), b.as_bytes()], false);
        assert_eq!(stale, ["par_sidecar_tx_tx0"]);
        // A browser holding hundreds is cleaned MAX_CLEARED at a time.
        assert_eq!(
            stale_bindings(&[header(300, false).as_bytes()], false).len(),
            MAX_CLEARED
        );
        // The clearing Set-Cookie meets the __Host- rules (Secure, Path=/, no Domain).
        for name in stale_bindings(&[header(4, true).as_bytes()], true) {
            assert!(clear_cookie(&name, true).ends_with("Max-Age=0; HttpOnly; SameSite=Lax; Secure"));
        }
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
