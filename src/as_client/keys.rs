//! Key material from files: JWS signing keys and the mTLS transport identity.
//!
//! Loaded once into parsed form ([`KeySet`]) and swapped whole on reload, so a request
//! always signs with one consistent set. Nothing here ever formats key bytes.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use thiserror::Error;

use crate::as_client::jose::SigningKey;
use crate::as_client::jwe::DecryptionKey;
use crate::config::{ClientSettings, EncryptionKeyRef, SigningKeyRef};

#[derive(Debug, Error)]
pub enum KeyLoadError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

fn file_err(path: &Path, message: impl Into<String>) -> KeyLoadError {
    KeyLoadError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The client certificate the sidecar presents to the AS (RFC 8705), parsed.
#[derive(Clone)]
pub struct TransportIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    /// Unix seconds; exported as a metric so expiry alerts fire before logins fail.
    pub not_after: i64,
    pub subject: String,
}

impl TransportIdentity {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl std::fmt::Debug for TransportIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportIdentity")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Everything signed or presented on behalf of the client, loaded together.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// `signing[0]` signs; the rest are published for rotation overlap.
    pub signing: Vec<Arc<SigningKey>>,
    /// A separate request-object key, when configured (published too).
    pub request_object: Option<Arc<SigningKey>>,
    pub transport: TransportIdentity,
    /// The DPoP proof key (sender_constraint: dpop). Never published: the AS learns it from
    /// each proof's `jwk` header and binds tokens to its thumbprint.
    pub dpop: Option<Arc<SigningKey>>,
    /// True when `dpop` was generated in memory (no key file): reloads keep it.
    pub dpop_generated: bool,
    /// The DPoP key before the last rotation, and when it was replaced: tokens issued to it
    /// stay usable through the egress listener while they may still be alive.
    pub dpop_previous: Option<(Arc<SigningKey>, std::time::Instant)>,
    /// JWE decryption keys (`client.encryption_key(s)`), published with `use: enc`.
    pub encryption: Vec<Arc<DecryptionKey>>,
    /// Encryption keys dropped from the config by a reload, and when: they still decrypt
    /// for [`ENCRYPTION_KEY_GRACE`] (an AS may encrypt to its cached copy of our JWKS), but
    /// are no longer published.
    pub encryption_previous: Vec<(Arc<DecryptionKey>, std::time::Instant)>,
    /// Human-readable warnings (e.g. loose file permissions) for logs and check-config.
    pub warnings: Vec<String>,
}

/// How long a removed encryption key keeps decrypting after a reload: a day covers an AS
/// that refreshes a client JWKS daily (and any token encrypted before the rotation).
pub const ENCRYPTION_KEY_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl KeySet {
    pub fn load(settings: &ClientSettings) -> Result<KeySet, KeyLoadError> {
        Self::load_keeping(settings, None)
    }

    /// Loads the files; a generated (file-less) DPoP key of the same alg is taken over from
    /// `current`, so a reload never re-binds the tokens already issued.
    pub fn load_keeping(settings: &ClientSettings, current: Option<&KeySet>) -> Result<KeySet, KeyLoadError> {
        let mut warnings = Vec::new();
        let mut signing = Vec::new();
        for k in &settings.signing_keys {
            warnings.extend(permission_warning(&k.path));
            signing.push(Arc::new(load_signing_key(k)?));
        }
        let request_object = match &settings.request_object_key {
            Some(k) => {
                warnings.extend(permission_warning(&k.path));
                Some(Arc::new(load_signing_key(k)?))
            }
            None => None,
        };
        let mut encryption = Vec::new();
        for k in &settings.encryption_keys {
            warnings.extend(permission_warning(&k.path));
            encryption.push(Arc::new(load_encryption_key(k)?));
        }
        let encryption_previous = previous_encryption_keys(current, &encryption);
        let mut kids = std::collections::HashSet::new();
        let enc_kids = encryption.iter().map(|k| k.kid());
        for k in signing
            .iter()
            .chain(request_object.iter())
            .map(|k| k.kid())
            .chain(enc_kids)
        {
            if !kids.insert(k.to_string()) {
                return Err(file_err(
                    &settings.signing_keys[0].path,
                    format!("duplicate kid `{k}` among signing and encryption keys (CR-4)"),
                ));
            }
        }
        warnings.extend(permission_warning(&settings.transport_key));
        let transport = load_transport(&settings.transport_cert, &settings.transport_key)?;
        let (dpop, dpop_generated) = match &settings.dpop {
            None => (None, false),
            Some(d) => match &d.key_path {
                Some(p) => {
                    warnings.extend(permission_warning(p));
                    let key = load_signing_key(&SigningKeyRef {
                        path: p.clone(),
                        alg: d.alg,
                        kid: None,
                    })?;
                    (Some(Arc::new(key)), false)
                }
                None => {
                    let kept = current
                        .filter(|c| c.dpop_generated)
                        .and_then(|c| c.dpop.clone())
                        .filter(|k| k.alg() == d.alg);
                    let key = match kept {
                        Some(k) => k,
                        None => Arc::new(
                            SigningKey::generate(d.alg).map_err(|e| file_err(Path::new("dpop.key"), e.to_string()))?,
                        ),
                    };
                    (Some(key), true)
                }
            },
        };
        let dpop_previous = match (current, &dpop) {
            (Some(c), Some(new)) => match &c.dpop {
                Some(old) if old.thumbprint() != new.thumbprint() => Some((old.clone(), std::time::Instant::now())),
                _ => c.dpop_previous.clone(),
            },
            _ => None,
        };
        Ok(KeySet {
            signing,
            request_object,
            transport,
            dpop,
            dpop_generated,
            dpop_previous,
            encryption,
            encryption_previous,
            warnings,
        })
    }

    pub fn active(&self) -> &Arc<SigningKey> {
        &self.signing[0]
    }

    /// The key that signs request objects: the separate one when configured.
    pub fn request_object_key(&self) -> &Arc<SigningKey> {
        self.request_object.as_ref().unwrap_or(&self.signing[0])
    }

    /// Every key to publish: the signing keys, then the request-object key.
    pub fn published(&self) -> impl Iterator<Item = &Arc<SigningKey>> {
        self.signing.iter().chain(self.request_object.iter())
    }

    /// The public JWKS to register at the AS (or serve at `/jwks.json`): signing keys, then
    /// encryption keys (`use: enc`).
    pub fn public_jwks(&self) -> Value {
        let sig = self.published().map(|k| k.public_jwk().clone());
        let enc = self.encryption.iter().map(|k| k.public_jwk().clone());
        json!({ "keys": sig.chain(enc).collect::<Vec<_>>() })
    }

    /// Every key that may decrypt a JWE now: the configured ones, then those a reload
    /// removed less than [`ENCRYPTION_KEY_GRACE`] ago.
    pub fn decryption_keys(&self) -> Vec<Arc<DecryptionKey>> {
        let live = self
            .encryption_previous
            .iter()
            .filter(|(_, at)| at.elapsed() < ENCRYPTION_KEY_GRACE)
            .map(|(k, _)| k.clone());
        self.encryption.iter().cloned().chain(live).collect()
    }
}

/// The keys `current` could decrypt with that the new list lacks, stamped
/// now, plus the still-fresh ones it already carried.
fn previous_encryption_keys(
    current: Option<&KeySet>,
    new: &[Arc<DecryptionKey>],
) -> Vec<(Arc<DecryptionKey>, std::time::Instant)> {
    let Some(c) = current else { return Vec::new() };
    // Same public key and alg: the same key (a new file under an unchanged `kid` is not).
    let kept = |k: &DecryptionKey| new.iter().any(|n| n.public_jwk() == k.public_jwk());
    let now = std::time::Instant::now();
    let dropped = c.encryption.iter().filter(|k| !kept(k)).map(|k| (k.clone(), now));
    let carried = c
        .encryption_previous
        .iter()
        .filter(|(k, at)| at.elapsed() < ENCRYPTION_KEY_GRACE && !kept(k))
        .cloned();
    dropped.chain(carried).collect()
}

/// The union of several key sets' public keys, each kid once (the same key files shared
/// by several ASs are published once).
pub fn union_jwks<'a>(sets: impl Iterator<Item = &'a KeySet>) -> Value {
    let mut seen = std::collections::HashSet::new();
    let mut keys = Vec::new();
    for set in sets {
        for k in set.published() {
            if seen.insert((k.kid().to_string(), "sig")) {
                keys.push(k.public_jwk().clone());
            }
        }
        for k in &set.encryption {
            if seen.insert((k.kid().to_string(), "enc")) {
                keys.push(k.public_jwk().clone());
            }
        }
    }
    json!({ "keys": keys })
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, KeyLoadError> {
    let pem = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| file_err(path, format!("not PEM: {e}")))?
        .ok_or_else(|| file_err(path, "no PRIVATE KEY block found"))
}

fn load_signing_key(k: &SigningKeyRef) -> Result<SigningKey, KeyLoadError> {
    let der = read_private_key(&k.path)?;
    SigningKey::from_der(der.secret_der(), k.alg, k.kid.clone()).map_err(|e| file_err(&k.path, e.to_string()))
}

fn load_encryption_key(k: &EncryptionKeyRef) -> Result<DecryptionKey, KeyLoadError> {
    let der = read_private_key(&k.path)?;
    DecryptionKey::from_der(der.secret_der(), k.alg, k.kid.clone()).map_err(|e| file_err(&k.path, e.to_string()))
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, KeyLoadError> {
    let pem = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn load_transport(cert: &Path, key: &Path) -> Result<TransportIdentity, KeyLoadError> {
    let chain = load_certs(cert)?;
    let key_der = read_private_key(key)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| file_err(cert, format!("bad certificate: {e}")))?;
    let not_after = parsed.validity().not_after.timestamp();
    let subject = parsed.subject().to_string();
    // Check the key belongs to the certificate now, not at the first PAR.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| file_err(key, format!("unusable TLS private key: {e}")))?;
    let ck = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    ck.keys_match()
        .map_err(|_| file_err(key, format!("does not match the certificate in {}", cert.display())))?;
    Ok(TransportIdentity {
        chain,
        key: Arc::new(key_der),
        not_after,
        subject,
    })
}

/// Warns when a private key file is readable by others, or by a group the process is not in
/// (group-readable for the process's own group is how Kubernetes' fsGroup mounts work).
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode();
    // SAFETY: getegid has no preconditions and cannot fail.
    let own_group = meta.gid() == unsafe { libc::getegid() };
    let loose = mode & 0o007 != 0 || (mode & 0o070 != 0 && !own_group);
    loose.then(|| {
        format!(
            "{}: private key file mode is {:o}; restrict it to the owner (0600/0400) or the process's group (0640/0440)",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn world_readable_key_files_are_flagged() {
        let dir = std::env::temp_dir().join(format!("ps-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k.pem");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(permission_warning(&f).is_some());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(permission_warning(&f).is_none());
        // Our own group (the file was created by us): fine, as with fsGroup mounts.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert!(permission_warning(&f).is_none());
    }
}
