//! Which URL each back-channel call uses: the `mtls_endpoint_aliases` entry or the top-level
//! metadata field (RFC 8705 §5).
//!
//! One rule for every call, decided here, so that PAR, token, userinfo, introspection and
//! revocation cannot drift apart, and `check-config` and `/readyz` can show the choice.
//! RFC 8705 §5: a client that does mutual TLS with the AS uses the alias when one is listed,
//! the top-level URL otherwise (endpoint by endpoint). The sidecar presents its transport
//! certificate on every AS connection, so under `auto` every listed alias is used. The README
//! ("mTLS endpoint aliases") gives the openid-client#486 argument and why `top_level` stays.

use std::collections::HashMap;

use url::Url;

use crate::config::AliasPolicy;

/// The calls whose URL may come from the aliases, in the order they are reported.
pub const CALLS: [&str; 5] = [
    "pushed_authorization_request_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "introspection_endpoint",
    "revocation_endpoint",
];

/// One call's resolved URL and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointChoice {
    pub call: &'static str,
    pub url: Url,
    pub via_alias: bool,
}

/// Whether `call` takes its alias (when listed) under `policy`.
///
/// `top_level` keeps today's private_key_jwt PAR behaviour: the PAR endpoint issues no token,
/// so only PAR goes to the top-level URL; the token-issuing and certificate-bound endpoints
/// keep their aliases, because certificate-bound tokens need the mTLS endpoint (MTLS-4).
pub fn uses_alias(policy: AliasPolicy, call: &str) -> bool {
    match policy {
        AliasPolicy::Auto | AliasPolicy::Always => true,
        AliasPolicy::Never => call != "pushed_authorization_request_endpoint",
    }
}

/// The alias for `call` if the policy takes it and the AS lists one (a string), else `None`.
pub fn alias_for<'a>(
    policy: AliasPolicy,
    aliases: &'a HashMap<String, serde_json::Value>,
    call: &str,
) -> Option<&'a str> {
    if !uses_alias(policy, call) {
        return None;
    }
    aliases.get(call).and_then(|v| v.as_str())
}

/// Human-readable lines, one per call the AS offers: `call: URL (mtls alias|top level)`.
pub fn report(choices: &[EndpointChoice]) -> Vec<String> {
    choices
        .iter()
        .map(|c| {
            let from = if c.via_alias { "mtls alias" } else { "top level" };
            format!("{}: {} ({from})", short(c.call), c.url)
        })
        .collect()
}

/// `pushed_authorization_request_endpoint` -> `par`, `token_endpoint` -> `token`.
fn short(call: &str) -> &str {
    match call {
        "pushed_authorization_request_endpoint" => "par",
        other => other.strip_suffix("_endpoint").unwrap_or(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> HashMap<String, serde_json::Value> {
        CALLS
            .iter()
            .map(|c| (c.to_string(), serde_json::json!(format!("https://mtls.as/{c}"))))
            .collect()
    }

    #[test]
    fn auto_takes_every_listed_alias_and_top_level_only_drops_the_par_one() {
        let a = aliases();
        for c in CALLS {
            assert!(alias_for(AliasPolicy::Auto, &a, c).is_some(), "{c}");
            assert!(alias_for(AliasPolicy::Always, &a, c).is_some(), "{c}");
        }
        assert_eq!(
            alias_for(AliasPolicy::Never, &a, "pushed_authorization_request_endpoint"),
            None
        );
        assert!(alias_for(AliasPolicy::Never, &a, "token_endpoint").is_some());
        // Not listed, or not a string: the top-level URL.
        let mut odd = HashMap::new();
        odd.insert("token_endpoint".to_string(), serde_json::json!(7));
        assert_eq!(alias_for(AliasPolicy::Auto, &odd, "token_endpoint"), None);
        assert_eq!(alias_for(AliasPolicy::Auto, &odd, "revocation_endpoint"), None);
    }

    #[test]
    fn the_report_names_the_source_of_each_url() {
        let lines = report(&[
            EndpointChoice {
                call: "pushed_authorization_request_endpoint",
                url: Url::parse("https://mtls.as/par").unwrap(),
                via_alias: true,
            },
            EndpointChoice {
                call: "token_endpoint",
                url: Url::parse("https://as/token").unwrap(),
                via_alias: false,
            },
        ]);
        assert_eq!(
            lines,
            vec![
                "par: https://mtls.as/par (mtls alias)".to_string(),
                "token: https://as/token (top level)".to_string()
            ]
        );
    }
}
