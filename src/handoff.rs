//! What crosses from the callback (front) to the app's token call (egress) and from one
//! token response to the next refresh: records both planes share, kept by the sidecar.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::bounded::TtlMap;
use crate::protocol::secret::Secret;
use crate::protocol::AsIndex;

/// Claim name -> the value the ID token must carry (`as_client::claim_values`).
pub type RequestedValues = BTreeMap<String, Value>;

/// What the sidecar remembers between the callback and the app's token call.
#[derive(Debug, Clone)]
pub struct CodeRecord {
    /// The AS the login started at: the token call goes there and nowhere else.
    pub as_index: AsIndex,
    pub verifier: Option<Secret>,
    pub redirect_uri: Option<String>,
    /// The OpenID `nonce` pushed in the request object: the ID token must carry it.
    pub nonce: Option<Secret>,
    /// `max_age` the app asked for: the ID token's `auth_time` must honour it.
    pub max_age: Option<u64>,
    /// ID token claim values requested in `claims`: the ID token must carry them.
    pub claim_values: Option<RequestedValues>,
}

/// code -> its record, taken once by the token call.
pub type Codes = TtlMap<String, CodeRecord>;

/// (AS index, SHA-256 of a refresh token) -> SHA-256 of the `sub` it was issued for (the
/// refresh `sub` check, `as_client::token_check`). Hashes only: no token or user id is kept
/// in the clear.
pub type RefreshSubjects = TtlMap<(AsIndex, [u8; 32]), [u8; 32]>;

/// Refresh tokens outlive this map (a day, 20,000 of them, about 2.5 MB): one evicted,
/// expired or from before a restart is not checked (the AS's own binding still holds).
pub(crate) const REFRESH_SUBJECTS: usize = 20_000;
const REFRESH_SUBJECT_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub fn refresh_subjects() -> RefreshSubjects {
    TtlMap::new(REFRESH_SUBJECTS, REFRESH_SUBJECT_TTL)
}
