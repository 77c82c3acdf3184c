//! JWE decryption on arbitrary input: never panics, and never decrypts what was not
//! encrypted to the key (an ID token or userinfo body comes from the network).
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use par_sidecar::as_client::jwe::{decrypt, peek_algs, DecryptionKey};
use par_sidecar::protocol::jose::KeyAlg;

/// The P-256 test key of `src/as_client/jwe/node-jose-vectors.json` (PKCS#8 DER).
const P256_PKCS8: [u8; 138] = [
    48, 129, 135, 2, 1, 0, 48, 19, 6, 7, 42, 134, 72, 206, 61, 2, 1, 6, 8, 42, 134, 72, 206, 61, 3, 1, 7, 4, 109, 48,
    107, 2, 1, 1, 4, 32, 219, 146, 216, 33, 48, 185, 3, 25, 201, 19, 244, 138, 211, 195, 62, 4, 186, 3, 64, 172, 25,
    219, 246, 243, 88, 173, 92, 71, 160, 85, 240, 125, 161, 68, 3, 66, 0, 4, 105, 7, 66, 55, 128, 212, 61, 222, 27, 41,
    141, 19, 201, 149, 124, 23, 196, 160, 42, 90, 66, 11, 180, 116, 41, 100, 12, 12, 145, 115, 27, 110, 20, 213, 166,
    136, 134, 243, 192, 90, 175, 73, 13, 71, 27, 205, 160, 29, 237, 136, 244, 105, 233, 198, 173, 67, 19, 109, 106, 23,
    129, 17, 154, 57,
];

fn keys() -> &'static Vec<Arc<DecryptionKey>> {
    static KEYS: OnceLock<Vec<Arc<DecryptionKey>>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            KeyAlg::EcdhEs,
            KeyAlg::EcdhEsA128Kw,
            KeyAlg::EcdhEsA192Kw,
            KeyAlg::EcdhEsA256Kw,
        ]
        .into_iter()
        .map(|a| Arc::new(DecryptionKey::from_der(&P256_PKCS8, a, Some("k".into())).unwrap()))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = peek_algs(s);
    assert!(decrypt(s, keys()).is_err());
});
