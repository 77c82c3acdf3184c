//! The requirement IDs that comments, tests and the README cite (`CB-5`, `TOK-5`, ...), so a
//! reader can look one up without the working checklist they were first numbered in. Each
//! row says, in this project's words, what the sidecar has to do, and where the rule comes
//! from; "design" marks a consequence of retrofitting an unmodified app, not a normative
//! rule. A range such as `TOK-1..10` cites every ID in it. The test below fails when a
//! citation has no row here, or a row is cited nowhere.
//!
//! **AZ**: the authorization redirect the browser is sent to.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | AZ-1 | Send the browser to the authorization endpoint with `client_id` and `request_uri` only; every other parameter travelled in the PAR. | FAPI 2.0 SP §5.3.3.2; RFC 9126 §4 |
//! | AZ-3 | Keep any query the discovered authorization endpoint already has, add its two parameters after it, and mark the redirect `no-store` and `no-referrer`. | RFC 9126 §4; RFC 6749 §3.1 |
//! | AZ-5 | Tie each login it starts to the browser that started it, so a login cannot be started in someone else's browser (CSRF on initiation). | FAPI 2.0 SP §5.3.3.1 |
//!
//! **CA**: how the sidecar authenticates itself to the AS (`private_key_jwt` assertions).
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | CA-1 | Put exactly one client authentication on each call, its own: whatever the app sent (Basic header, `client_secret`, `client_assertion`) is removed first. | RFC 6749 §2.3 |
//! | CA-2 | Never send an assertion twice: a new `jti` for every HTTP request, retries and DPoP nonce retries included. | OIDC Core §9; RFC 7523 §3 |
//!
//! **CB**: the callback, where the authorization response is checked before the app sees it.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | CB-1 | Find the login the response belongs to (sealed `state` plus browser cookie) and refuse a response that matches none. | RFC 9207 §2.4; design |
//! | CB-2 | Verify a JARM response completely (signature with the AS's keys and an allowed `alg`, `iss`, `aud`, `exp`) before reading anything in it. | JARM §2.4 |
//! | CB-3 | Accept JARM as ASs really send it to a server-side client: no `iat` required, delivered in the query or a form post, never a fragment. | JARM §2.3; design |
//! | CB-4 | Refuse a plain response to a login that asked for JARM (a downgrade). | FAPI Implementation and Deployment Advice |
//! | CB-5 | Compare the response's `iss` with the issuer the login went to, as plain strings, and refuse a mismatch, error responses included. | RFC 9207 §2.4; FAPI 2.0 SP §5.3.3.2 |
//! | CB-6 | Refuse a response without `iss` when the AS advertises it or the profile is FAPI 2.0. | RFC 9207 §2.4; FAPI 2.0 SP §5.3.2.2 |
//! | CB-7 | When a response carries the issuer twice (outer `iss` and JARM `iss`), require both to agree; do not demand the outer one under JARM. | RFC 9207 §2.4, §4 |
//! | CB-9 | Check that the `state` that comes back is the one that was pushed for that login. | RFC 6749 §4.1.2, §10.12 |
//! | CB-10 | Hand the app only the response parameters it knows (`code` or `error` with its details, `state`, `iss`), never the JARM `response`, and remember the code for its token call. | RFC 6749 §4.1.2; design |
//!
//! **CR**: cryptography and keys.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | CR-1 | Sign and accept only PS256, ES256 and EdDSA (Ed25519): never `none`, never an HMAC. | FAPI 2.0 SP §5.4.1; RFC 8725 |
//! | CR-2 | Refuse RSA keys shorter than 2048 bits. | FAPI 2.0 SP §5.4.1 |
//! | CR-3 | Draw `jti`, `state`, nonce and PKCE values with at least 128 bits of entropy. | FAPI 2.0 SP §5.4.1 |
//! | CR-4 | Publish its keys with distinct `kid`s, so the AS can pick the right one. | RFC 7517 §4.5; FAPI 2.0 SP §5.4 |
//! | CR-6 | Publish a new signing key before signing with it, so AS caches of the client's JWKS catch up. | design (ecosystem guidance) |
//!
//! **DISC**: discovery and AS metadata.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | DISC-1 | Take every endpoint from the AS's metadata, never build one from the issuer string (the PAR endpoint may be on another host). | FAPI 2.0 SP §5.3.3.1; RFC 8414 §2 |
//! | DISC-2 | Stop unless the metadata's `issuer` is byte for byte the configured issuer (a trailing `/` counts). | RFC 8414 §3.3; OIDC Discovery §4.3 |
//!
//! **DP**: DPoP proofs (RFC 9449).
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | DP-1 | Sign proofs typed `dpop+jwt` with an asymmetric key whose public part alone is in the header. | RFC 9449 §4.2 |
//! | DP-2 | Give every proof a fresh `jti`, `htm`, `iat` and an `htu` without query or fragment, plus `ath` on resource calls and the server's nonce once it has one. | RFC 9449 §4.2, §4.3 |
//! | DP-4 | Honour server nonces from the AS and resource servers: retry once with it and keep the latest per server. | RFC 9449 §8, §9 |
//! | DP-5 | Be able to bind the code to its DPoP key at PAR (`dpop_jkt`, the key's thumbprint). | RFC 9449 §10 |
//!
//! **JAR**: the signed request object (RFC 9101).
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | JAR-1 | Put every authorization parameter inside the request object; only `client_id`, `request` and client authentication go beside it. | RFC 9101 §4, §5; RFC 9126 §3 |
//! | JAR-2 | Never send a parameter outside the object with a value different from the one inside. | RFC 9101 §10.7 |
//!
//! **MTLS**: mTLS client authentication, certificate-bound tokens and endpoint aliases (RFC 8705).
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | MTLS-4 | Call the `mtls_endpoint_aliases` URL of an endpoint when it needs mTLS there and one is listed, falling back endpoint by endpoint. | RFC 8705 §5 |
//! | MTLS-7 | Let each AS decide whether PAR (which issues no token) goes to its alias or its top-level URL. | RFC 8705 §5; design |
//! | MTLS-8 | Keep tokens bound to a rotated-out transport certificate usable until they expire. | RFC 8705 §3; design |
//!
//! **PAR**: the pushed authorization request (RFC 9126).
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | PAR-4 | Never put a `request_uri` in a PAR body, so an app's own `request`/`request_uri` is refused, not forwarded. | RFC 9126 §2.1 |
//! | PAR-5 | Send the signed object plus `client_id` and authentication with JAR, or the authorization parameters themselves without it. | RFC 9126 §2.1, §3 |
//! | PAR-7 | Keep the two JWTs of a PAR (request object, client assertion) apart: their claims never mix. | RFC 9126 §3; design |
//! | PAR-8 | Expect 201 with `request_uri` and `expires_in`; tolerate another 2xx with a usable body and a missing `expires_in` (treated as short), never a missing `request_uri`. | RFC 9126 §2.2 |
//!
//! **PKCE**: proof key for code exchange (RFC 7636) for apps that may not do it.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | PKCE-4 | Use a fresh challenge for every login, bound to the browser that started it. | FAPI 2.0 SP §5.3.3.2 |
//! | PKCE-6 | Pass an app's own S256 challenge through unchanged (its verifier then works at the token call). | RFC 7636 §4.2; design |
//! | PKCE-7 | Upgrade an app's `plain` challenge to its S256 transform, so the app's verifier still matches. | RFC 7636 §4.2; design |
//! | PKCE-8 | For an app that sends no PKCE, generate the verifier and add it to that login's token call, found by the code. | FAPI 2.0 SP §5.3.3.2; design |
//!
//! **RS**: the app's resource calls with sender-constrained tokens.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | RS-1 | Send the access token in the `Authorization` header only, never in a query or form. | RFC 6750 §2.1; FAPI 2.0 SP §5.3.4 |
//! | RS-2 | Present the certificate the token is bound to on resource calls. | RFC 8705 §3 |
//! | RS-3 | Call the resource URL the app asked for: AS endpoint aliases do not apply to resource servers. | RFC 8705 §5; design |
//!
//! **TLS**: transport security and the protections of the browser-facing endpoints.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | TLS-1 | Use TLS 1.2 or later with certificate checks for every call to the AS; `http` URLs are refused. | FAPI 2.0 SP §5.2.1; BCP 195 |
//! | TLS-4 | Give the responses it writes itself to the browser the usual hardening headers (HSTS, no caching, no referrer). | FAPI 2.0 SP §5.2; RFC 6797 |
//!
//! **TOK**: the app's token call, rewritten on its way to the AS.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | TOK-1 | Swap the app's client credentials for its own authentication (see CA-1). | RFC 6749 §2.3; RFC 7521 §4.2 |
//! | TOK-2 | Send the token call to the endpoint MTLS-4 picks, with the certificate the token will be bound to. | RFC 8705 §3, §5 |
//! | TOK-3 | Repeat the pushed `redirect_uri` byte for byte and add the verifier of an injected PKCE. | RFC 6749 §4.1.3; RFC 7636 §4.5 |
//! | TOK-4 | Add a DPoP proof for the token URL with the same key the code was bound to. | RFC 9449 §5, §10 |
//! | TOK-5 | Let each authorization code be redeemed once: a replayed token call never reaches the AS. | RFC 6749 §4.1.2; FAPI 2.0 SP security considerations |
//! | TOK-6 | Check the token response: `token_type` compared case-insensitively, `expires_in` optional, a token that lacks a required DPoP binding refused. | RFC 6749 §5.1; RFC 9449 §5 |
//! | TOK-7 | Show the app a `token_type` it understands when its tokens are bound, since only the sidecar can use the binding. | design |
//! | TOK-8 | Support refresh tokens and their rotation, with the same client authentication swap. | RFC 6749 §6; FAPI 2.0 SP §5.3.3.1 |
//! | TOK-9 | Validate the ID token before the app sees it (signature, `iss`, `aud`/`azp`, `exp`, `nonce`). | OIDC Core §3.1.3.7 |
//! | TOK-10 | Return the AS's OAuth errors to the app as they came, but treat `invalid_client` as the sidecar's own fault and log it. | RFC 6749 §5.2 |
//!
//! **XF**: the `x-fapi-*` headers.
//!
//! | ID | The sidecar must | Source |
//! |---|---|---|
//! | XF-1 | Send an `x-fapi-interaction-id` v4 UUID on every call: the app's own when it is one, else a fresh one. | FAPI 1.0 Part 1 §6.2.2; FAPI 2.0 Implementation Advice |

/// Every defined ID, in the order of the table above.
pub const IDS: &[&str] = &[
    "AZ-1", "AZ-3", "AZ-5", //
    "CA-1", "CA-2", //
    "CB-1", "CB-2", "CB-3", "CB-4", "CB-5", "CB-6", "CB-7", "CB-9", "CB-10", //
    "CR-1", "CR-2", "CR-3", "CR-4", "CR-6", //
    "DISC-1", "DISC-2", //
    "DP-1", "DP-2", "DP-4", "DP-5", //
    "JAR-1", "JAR-2", //
    "MTLS-4", "MTLS-7", "MTLS-8", //
    "PAR-4", "PAR-5", "PAR-7", "PAR-8", //
    "PKCE-4", "PKCE-6", "PKCE-7", "PKCE-8", //
    "RS-1", "RS-2", "RS-3", //
    "TLS-1", "TLS-4", //
    "TOK-1", "TOK-2", "TOK-3", "TOK-4", "TOK-5", "TOK-6", "TOK-7", "TOK-8", "TOK-9", "TOK-10", //
    "XF-1",
];

/// The prefixes of requirement IDs. Other `WORD-n` spellings (`SHA-256`, `UTF-8`) are not IDs.
pub const PREFIXES: &[&str] = &[
    "AZ", "CA", "CB", "CR", "DISC", "DP", "JAR", "MTLS", "PAR", "PKCE", "RS", "TLS", "TOK", "XF",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// Requirement IDs cited in `text`, with the line each is on. `X-a..b` (or `X-a..X-b`)
    /// cites every ID from `X-a` to `X-b`.
    fn cited(text: &str) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let b = line.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match id_at(b, i) {
                    Some((prefix, from, mut end)) => {
                        let mut to = from;
                        if b[end..].starts_with(b"..") {
                            let mut j = end + 2;
                            if b[j..].starts_with(prefix.as_bytes()) && b.get(j + prefix.len()) == Some(&b'-') {
                                j += prefix.len() + 1;
                            }
                            if let Some((last, e)) = number_at(b, j) {
                                to = last;
                                end = e;
                            }
                        }
                        for k in from..=to.max(from) {
                            out.push((format!("{prefix}-{k}"), n + 1));
                        }
                        i = end;
                    }
                    None => i += 1,
                }
            }
        }
        out
    }

    /// An ID starting at byte `i`: its prefix, number and the end of the number.
    fn id_at(b: &[u8], i: usize) -> Option<(&'static str, u32, usize)> {
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
            return None;
        }
        let prefix = PREFIXES
            .iter()
            .find(|p| b[i..].starts_with(p.as_bytes()) && b.get(i + p.len()) == Some(&b'-'))?;
        let (n, end) = number_at(b, i + prefix.len() + 1)?;
        // `TLS-1.3` is a version, not an ID.
        if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        Some((prefix, n, end))
    }

    /// A decimal number at `i` not followed by a letter, digit or `_`.
    fn number_at(b: &[u8], i: usize) -> Option<(u32, usize)> {
        let len = b[i.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
        let end = i + len;
        if len == 0 || len > 3 || b.get(end).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            return None;
        }
        std::str::from_utf8(&b[i..end]).ok()?.parse().ok().map(|n| (n, end))
    }

    /// The files whose citations must be defined: the sources, the tests (Rust and the
    /// end-to-end JavaScript) and the README. This file is left out: it defines them.
    fn cited_files() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        walk(&root.join("src"), &["rs"], &mut files);
        walk(&root.join("tests"), &["rs", "mjs"], &mut files);
        let me = root.join("src/protocol/requirements.rs");
        files.retain(|f| *f != me);
        files
    }

    fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_dir() {
                if !matches!(name, "node_modules" | "target") && !name.starts_with('.') {
                    walk(&p, exts, out);
                }
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
            {
                out.push(p);
            }
        }
    }

    #[test]
    fn the_scanner_reads_ids_ranges_and_nothing_else() {
        let ids = |t: &str| cited(t).into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(
            ids("exactly one (CA-1/TOK-1), then\nTOK-5."),
            ["CA-1", "TOK-1", "TOK-5"]
        );
        assert_eq!(
            ids("(PKCE-6..8, RS-1..RS-2)"),
            ["PKCE-6", "PKCE-7", "PKCE-8", "RS-1", "RS-2"]
        );
        assert!(ids("SHA-256 UTF-8 TLS-1.3 XTOK-1 TOK-1a TOK- PS256 CVE-2025-27370").is_empty());
        assert_eq!(cited("a\nb DISC-2")[0], ("DISC-2".to_string(), 2));
    }

    #[test]
    fn every_cited_requirement_is_defined_and_every_defined_one_cited() {
        let mut citations: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in cited_files() {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let shown = file.strip_prefix(root).unwrap_or(&file).display().to_string();
            for (id, line) in cited(&text) {
                citations.entry(id).or_default().push(format!("{shown}:{line}"));
            }
        }
        let undefined: Vec<String> = citations
            .iter()
            .filter(|(id, _)| !IDS.contains(&id.as_str()))
            .map(|(id, at)| format!("{id} (cited at {})", at.join(", ")))
            .collect();
        let uncited: Vec<&str> = IDS.iter().copied().filter(|id| !citations.contains_key(*id)).collect();
        assert!(
            undefined.is_empty(),
            "requirement IDs cited but not defined in src/protocol/requirements.rs: {}",
            undefined.join("; ")
        );
        assert!(
            uncited.is_empty(),
            "requirement IDs defined in src/protocol/requirements.rs but cited nowhere: {}",
            uncited.join(", ")
        );
    }

    #[test]
    fn the_table_has_one_row_per_id_in_order() {
        let me = include_str!("requirements.rs");
        let rows: Vec<&str> = me
            .lines()
            .filter_map(|l| l.strip_prefix("//! | "))
            .filter_map(|l| l.split(" |").next())
            .filter(|id| cited(id).len() == 1)
            .collect();
        assert_eq!(rows, IDS, "the doc table and IDS list different requirements");
    }
}
