//! JOSE algorithm names the sidecar signs with and decrypts: shared by the config (which
//! keys are allowed) and the AS client (which uses them).

/// The JWS algorithms FAPI 2.0 allows (CR-1). Never `none`, never HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    PS256,
    ES256,
    /// ECDSA on P-384 and P-521 (Singpass and Corppass accept them for client keys).
    ES384,
    ES512,
    EdDSA,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "PS256" => Some(Alg::PS256),
            "ES256" => Some(Alg::ES256),
            "ES384" => Some(Alg::ES384),
            "ES512" => Some(Alg::ES512),
            "EdDSA" | "Ed25519" => Some(Alg::EdDSA),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::PS256 => "PS256",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Signatures costly enough to run on the low-priority signing threads and to pre-sign
    /// client assertions by default: RSA, and ECDSA on P-384/P-521 (measured in a debug
    /// build: ES384 ~0.6 ms, ES512 ~1.1 ms, PS256 ~1 ms, ES256 ~0.04 ms).
    pub fn signs_slowly(self) -> bool {
        matches!(self, Alg::PS256 | Alg::ES384 | Alg::ES512)
    }

    /// The EC curve an ES* key must be on (the key's type decides the alg).
    pub fn curve(self) -> Option<&'static str> {
        match self {
            Alg::ES256 => Some("P-256"),
            Alg::ES384 => Some("P-384"),
            Alg::ES512 => Some("P-521"),
            _ => None,
        }
    }

    /// Names under which an AS may advertise this algorithm (node lists both `EdDSA` and
    /// the fully specified `Ed25519`).
    pub fn advertised_as(self, name: &str) -> bool {
        match self {
            Alg::EdDSA => name == "EdDSA" || name == "Ed25519",
            other => name == other.as_str(),
        }
    }
}

/// Key management algorithms (`alg`) the sidecar decrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    EcdhEs,
    EcdhEsA128Kw,
    EcdhEsA192Kw,
    EcdhEsA256Kw,
    RsaOaep256,
}

impl KeyAlg {
    pub fn parse(s: &str) -> Option<KeyAlg> {
        Some(match s {
            "ECDH-ES" => KeyAlg::EcdhEs,
            "ECDH-ES+A128KW" => KeyAlg::EcdhEsA128Kw,
            "ECDH-ES+A192KW" => KeyAlg::EcdhEsA192Kw,
            "ECDH-ES+A256KW" => KeyAlg::EcdhEsA256Kw,
            "RSA-OAEP-256" => KeyAlg::RsaOaep256,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EcdhEs => "ECDH-ES",
            KeyAlg::EcdhEsA128Kw => "ECDH-ES+A128KW",
            KeyAlg::EcdhEsA192Kw => "ECDH-ES+A192KW",
            KeyAlg::EcdhEsA256Kw => "ECDH-ES+A256KW",
            KeyAlg::RsaOaep256 => "RSA-OAEP-256",
        }
    }

    pub fn is_ec(self) -> bool {
        !matches!(self, KeyAlg::RsaOaep256)
    }

    /// AES key wrap key length in bytes, for the `+AxxxKW` variants.
    pub(crate) fn kw_len(self) -> Option<usize> {
        match self {
            KeyAlg::EcdhEsA128Kw => Some(16),
            KeyAlg::EcdhEsA192Kw => Some(24),
            KeyAlg::EcdhEsA256Kw => Some(32),
            _ => None,
        }
    }
}
