//! Requested claim values (OIDC Core §5.5.1): when the app's `claims` parameter asks for an
//! ID token claim with a `value` (`{"id_token":{"openbanking_intent_id":{"value":"urn:x",
//! "essential":true}}}`), the ID token must carry exactly that value. UK, Brazil and KSA bind
//! the login to a consent this way; an ID token for another intent would otherwise reach the
//! app as if it were this one (`FAPI2SPFinalClientTestInvalidOpenBankingIntentId`).
//!
//! The values travel from the login start to the token call inside the sealed state, which
//! rides in the authorize URL: they are bounded here so a large `claims` cannot bloat it.

use serde_json::{Map, Value};

use crate::handoff::RequestedValues;

/// At most this many claims with a `value`; more make the `claims` parameter refused.
pub const MAX_CLAIMS: usize = 8;
/// A claim name longer than this is refused.
pub const MAX_NAME: usize = 64;
/// A `value` whose JSON is longer than this is refused.
pub const MAX_VALUE_JSON: usize = 512;

/// The `value`s requested for the ID token in a `claims` object; `None` when there are none.
/// `Err` when over the bounds (the caller refuses the parameter: it cannot be checked).
pub fn requested(claims: Option<&Value>) -> Result<Option<RequestedValues>, &'static str> {
    let Some(members) = claims.and_then(|c| c.get("id_token")).and_then(Value::as_object) else {
        return Ok(None);
    };
    let mut out = RequestedValues::new();
    for (name, spec) in members {
        let Some(v) = spec.as_object().and_then(|s| s.get("value")) else {
            continue;
        };
        if out.len() >= MAX_CLAIMS {
            return Err("too many requested claim values");
        }
        if name.len() > MAX_NAME {
            return Err("requested claim name too long");
        }
        if serde_json::to_string(v).map_or(true, |j| j.len() > MAX_VALUE_JSON) {
            return Err("requested claim value too long");
        }
        out.insert(name.clone(), v.clone());
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The first requested claim the verified ID token does not carry with exactly that value
/// (JSON equality: `"1"` is not `1`); its name is for the log, never the value.
pub fn mismatch<'a>(requested: &'a RequestedValues, id_token_claims: &Map<String, Value>) -> Option<&'a str> {
    requested
        .iter()
        .find(|(name, want)| id_token_claims.get(name.as_str()) != Some(*want))
        .map(|(name, _)| name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_id_token_values_are_kept_and_bounded() {
        let c = json!({
            "id_token": {
                "openbanking_intent_id": {"value": "urn:x", "essential": true},
                "acr": {"essential": true},
                "auth_time": null
            },
            "userinfo": {"email": {"value": "a@b"}}
        });
        let r = requested(Some(&c)).unwrap().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r["openbanking_intent_id"], json!("urn:x"));
        assert_eq!(requested(None).unwrap(), None);
        assert_eq!(requested(Some(&json!({"id_token": {"acr": null}}))).unwrap(), None);
        assert_eq!(requested(Some(&json!({"id_token": 3}))).unwrap(), None);

        let many: Map<String, Value> = (0..=MAX_CLAIMS)
            .map(|i| (format!("c{i}"), json!({"value": i})))
            .collect();
        assert!(requested(Some(&json!({ "id_token": many }))).is_err());
        let long = "x".repeat(MAX_VALUE_JSON);
        assert!(requested(Some(&json!({"id_token": {"c": {"value": long}}}))).is_err());
        let name = "n".repeat(MAX_NAME + 1);
        assert!(requested(Some(&json!({"id_token": { name: {"value": 1}}}))).is_err());
    }

    #[test]
    fn the_id_token_must_carry_exactly_the_requested_value() {
        let r = requested(Some(
            &json!({"id_token": {"openbanking_intent_id": {"value": "urn:x"}}}),
        ))
        .unwrap()
        .unwrap();
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(mismatch(&r, &claims(json!({"openbanking_intent_id": "urn:x"}))), None);
        for bad in [
            json!({"openbanking_intent_id": "urn:other"}),
            json!({}),
            json!({"openbanking_intent_id": ["urn:x"]}),
            json!({"openbanking_intent_id": null}),
        ] {
            assert_eq!(
                mismatch(&r, &claims(bad.clone())),
                Some("openbanking_intent_id"),
                "{bad}"
            );
        }
        let n = requested(Some(&json!({"id_token": {"n": {"value": 1}}})))
            .unwrap()
            .unwrap();
        assert_eq!(mismatch(&n, &claims(json!({"n": "1"}))), Some("n"));
    }
}
