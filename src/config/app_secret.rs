//! The app's own client secret as the egress listener checks it (configured by
//! `egress.app_client_secret_sha256` / `_file`), and the grant types forwarded by default.
//! In config because the file model validates into them; `egress::app_auth` uses them.

/// SHA-256 of the app's client secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecret([u8; 32]);

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecret(..)")
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl AppSecret {
    /// From 64 hex digits (either case).
    pub fn from_sha256_hex(hex: &str) -> Result<AppSecret, String> {
        let hex = hex.trim();
        let b = hex.as_bytes();
        if b.len() != 64 || !b.iter().all(u8::is_ascii_hexdigit) {
            return Err("must be 64 hex digits (the SHA-256 of the app's client secret)".into());
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            out[i] = u8::from_str_radix(s, 16).map_err(|e| e.to_string())?;
        }
        Ok(AppSecret(out))
    }

    /// From a file's content; one trailing newline (`\n` or `\r\n`) is not part of it.
    pub fn from_file_content(content: &[u8]) -> Result<AppSecret, String> {
        let s = content
            .strip_suffix(b"\n")
            .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
            .unwrap_or(content);
        if s.is_empty() {
            return Err("the file is empty".into());
        }
        Ok(AppSecret(sha256(s)))
    }

    /// Constant-time comparison of the presented secret's digest with ours.
    pub fn verify(&self, presented: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(presented), &self.0).is_ok()
    }
}

/// The grant types forwarded when `egress.allowed_grant_types` is not set.
pub const DEFAULT_GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token"];
