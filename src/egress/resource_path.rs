//! Resource routes: which prefix an egress path falls under, and the target URL it maps to.
//! Pure functions (fuzzed): a request can never leave the configured target base path.
//!
//! `Url::set_path` resolves `..`, `%2e%2e` and backslashes (WHATWG URL rules for https), so
//! the remainder after the prefix is checked before it is joined: dot segments (raw or
//! percent-encoded, any case, also with a `;params` tail as some servers strip it),
//! backslashes (raw or `%5c`) and encoded slashes (`%2f`, which resource servers decode
//! differently) are refused, never normalised; so are control characters (URL parsing
//! drops tabs and newlines, turning `.<TAB>.` into `..`).

use url::Url;

/// The remainder of `path` after `prefix`, matched on a segment boundary: a prefix ending
/// in `/` matches as is (`/rs/` matches `/rs/x`, not `/rs`); one without a trailing `/`
/// matches the exact path or `prefix + "/..."` (`/rs` matches `/rs` and `/rs/x`, not `/rsx`).
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    if prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// Why a remainder is refused (the text goes into the 400 and the log line).
pub fn check_remainder(rest: &str) -> Result<(), String> {
    // URL parsing drops tabs and newlines (`.\t.` would become `..`): no control characters.
    if rest.chars().any(|c| c.is_control()) {
        return Err("control characters are not allowed in a resource path".into());
    }
    let lower = rest.to_ascii_lowercase();
    if lower.contains('\\') || lower.contains("%5c") {
        return Err("backslashes are not allowed in a resource path".into());
    }
    if lower.contains("%2f") {
        return Err("encoded slashes (%2F) are not allowed in a resource path".into());
    }
    for seg in rest.split('/') {
        // `..;x` is `..` to servers that strip path parameters (Tomcat and others).
        let head = seg.split(';').next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(head).collect::<Vec<u8>>();
        if decoded == b"." || decoded == b".." {
            return Err("dot segments (., .., %2e) are not allowed in a resource path".into());
        }
    }
    Ok(())
}

/// The target URL for a remainder already cut off by [`strip_prefix`]: the target's path
/// (without its trailing `/`) joined with the remainder, the target's scheme, host and port.
/// Refused when [`check_remainder`] refuses the remainder.
pub fn map(target: &Url, rest: &str) -> Result<Url, String> {
    check_remainder(rest)?;
    let mut t = target.clone();
    let base = t.path().trim_end_matches('/').to_string();
    let joined = if rest.starts_with('/') || rest.is_empty() {
        format!("{base}{rest}")
    } else {
        format!("{base}/{rest}")
    };
    t.set_path(if joined.is_empty() { "/" } else { &joined });
    t.set_query(None);
    t.set_fragment(None);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert_eq!(strip_prefix("/rs", "/rs"), Some(""));
        assert_eq!(strip_prefix("/rs", "/rs/x"), Some("/x"));
        assert_eq!(strip_prefix("/rs", "/rsx"), None);
        assert_eq!(strip_prefix("/rs", "/rsx/y"), None);
        assert_eq!(strip_prefix("/rs/", "/rs/x"), Some("x"));
        assert_eq!(strip_prefix("/rs/", "/rs/"), Some(""));
        assert_eq!(strip_prefix("/rs/", "/rs"), None);
        assert_eq!(strip_prefix("/rs/accounts", "/rs/accountsx"), None);
        assert_eq!(strip_prefix("/rs/accounts", "/rs/accounts/1"), Some("/1"));
    }

    #[test]
    fn traversal_backslashes_and_encoded_slashes_are_refused() {
        let t = Url::parse("https://rs.example.com/api/accounts/").unwrap();
        for bad in [
            "..",
            "/..",
            "/../admin",
            "%2e%2e/%2e%2e/admin",
            "/%2E%2E/admin",
            "/.%2e/admin",
            "/%2e./admin",
            "/%2e",
            "/./x",
            "x/.",
            "/..;/admin",
            "/%2e%2e;jsessionid=1/admin",
            "/a\\..\\admin",
            "/a%5c..%5cadmin",
            "/a%5Cb",
            "/a%2f..%2fadmin",
            "/a%2Fb",
            "/.\t./admin",
            "/.\n./admin",
            "/a\u{7f}",
        ] {
            assert!(map(&t, bad).is_err(), "{bad} must be refused");
        }
        for good in [
            "",
            "/",
            "1",
            "/1/balances",
            "/a..b",
            "/...",
            "/.well-known",
            "/%2e%2e%2e",
            "/a;b=1",
        ] {
            let u = map(&t, good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert!(u.path().starts_with("/api/accounts"), "{good} -> {u}");
        }
    }

    #[test]
    fn the_target_base_path_is_kept() {
        let t = Url::parse("https://rs.example.com/api/accounts/").unwrap();
        assert_eq!(
            map(&t, "1/x").unwrap().as_str(),
            "https://rs.example.com/api/accounts/1/x"
        );
        assert_eq!(map(&t, "/1").unwrap().as_str(), "https://rs.example.com/api/accounts/1");
        assert_eq!(map(&t, "").unwrap().as_str(), "https://rs.example.com/api/accounts");
        let root = Url::parse("https://rs.example.com/").unwrap();
        assert_eq!(map(&root, "").unwrap().as_str(), "https://rs.example.com/");
        assert_eq!(map(&root, "me").unwrap().as_str(), "https://rs.example.com/me");
        // `?` and `#` in the path stay in the path: the app's query is set separately.
        let u = map(&t, "/a%3Fb?c#d").unwrap();
        assert_eq!((u.query(), u.fragment()), (None, None));
        assert!(u.path().starts_with("/api/accounts/"), "{u}");
    }

    #[test]
    fn before_the_fix_set_path_escaped_the_base() {
        // What the old join did: documents why check_remainder exists.
        let mut t = Url::parse("https://rs.example.com/api/accounts/").unwrap();
        t.set_path("/api/accounts/%2e%2e/%2e%2e/admin");
        assert_eq!(t.path(), "/admin");
        t.set_path("/api/accounts/.\t./x\\..\\..\\admin");
        assert_eq!(t.path(), "/admin");
    }
}
