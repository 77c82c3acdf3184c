//! `egress.*` but `allow_non_loopback` (checked with the listeners): what the app's
//! back-channel listener forwards and who may use it.

use url::Url;

use super::validate_ctx::Ctx;
use super::*;

pub(super) struct Egress {
    pub max_body: usize,
    pub clock_skew: u64,
    pub allowed_grant_types: Vec<String>,
    pub app_secret: Option<AppSecret>,
    pub resources: Vec<ResourceRoute>,
}

/// Default `egress.max_body_bytes`: token and API request bodies of a legacy app are small;
/// 1 MiB bounds what one call can hold in memory.
pub const DEFAULT_EGRESS_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default `egress.clock_skew_seconds` (ID token times).
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// More skew than five minutes hides a broken clock rather than tolerating a drift.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;

/// `as_names`: the configured AS names in order (a resource's AS is an index into them);
/// `profiles`: what each AS's profile did, which may add a default grant type.
pub(super) fn egress(
    e: &file::EgressFile,
    as_names: &[&str],
    profiles: &mut [super::profile::Applied],
    cx: &Ctx,
) -> Egress {
    let app_secret = app_secret(e, cx);
    let allowed_grant_types = match e.allowed_grant_types.as_deref() {
        Some(list) => grant_types(list, cx),
        None => super::profile::default_grant_types(profiles, DEFAULT_GRANT_TYPES, app_secret.is_some()),
    };
    // client_credentials mints TPP tokens without a user (UK, Brazil and KSA consent
    // creation): only for an app that proves itself to the egress, so that nothing else on
    // loopback (an SSRF in the app) can obtain them with the sidecar's client authentication.
    let secret_configured = e.app_client_secret_sha256.is_some() || e.app_client_secret_file.is_some();
    if !secret_configured && allowed_grant_types.iter().any(|g| g == "client_credentials") {
        cx.add(
            "egress.allowed_grant_types",
            "client_credentials needs the app to authenticate to the egress: set \
             egress.app_client_secret_sha256 or egress.app_client_secret_file",
        );
    }
    Egress {
        max_body: e.max_body_bytes.unwrap_or(DEFAULT_EGRESS_MAX_BODY_BYTES),
        clock_skew: cx
            .secs(
                "egress.clock_skew_seconds",
                e.clock_skew_seconds,
                DEFAULT_CLOCK_SKEW_SECONDS,
                0,
                MAX_CLOCK_SKEW_SECONDS,
            )
            .map_or(0, |d| d.as_secs()),
        allowed_grant_types,
        app_secret,
        resources: e
            .resources
            .iter()
            .enumerate()
            .filter_map(|(i, r)| resource(i, r, as_names, cx))
            .collect(),
    }
}

/// `egress.resources[i]`.
fn resource(i: usize, r: &file::ResourceFile, as_names: &[&str], cx: &Ctx) -> Option<ResourceRoute> {
    let key = format!("egress.resources[{i}]");
    let target = cx.check(&key, Url::parse(&r.target).map_err(|e| format!("target: {e}")));
    if target.as_ref().is_some_and(|t| t.scheme() != "https") {
        cx.add(&key, "target must be https");
    }
    if !r.prefix.starts_with('/')
        || ["/token", "/userinfo", "/introspect", "/revoke", "/as/"]
            .iter()
            .any(|p| r.prefix.starts_with(p))
    {
        cx.add(&key, "prefix must start with / and not shadow an AS route");
    }
    let authorization_server = match &r.authorization_server {
        Some(name) => {
            let i = as_names.iter().position(|a| a == name);
            if i.is_none() {
                cx.add(
                    &format!("{key}.authorization_server"),
                    format!("`{name}` is not a configured AS name"),
                );
            }
            i
        }
        None if as_names.len() == 1 => Some(0),
        None => {
            cx.add(
                &format!("{key}.authorization_server"),
                "required with several ASs: the AS whose client and certificate the tokens are bound to",
            );
            None
        }
    };
    Some(ResourceRoute {
        prefix: r.prefix.clone(),
        target: target?,
        authorization_server: authorization_server?,
    })
}

/// `egress.allowed_grant_types` when set: never empty.
fn grant_types(list: &[String], cx: &Ctx) -> Vec<String> {
    if list.is_empty() {
        cx.add(
            "egress.allowed_grant_types",
            "must not be empty (leave it out for authorization_code, refresh_token)",
        );
    }
    for g in list {
        if g.is_empty() || g.len() > 200 || g.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            cx.add("egress.allowed_grant_types", format!("`{g}` is not a grant_type value"));
        }
    }
    list.to_vec()
}

/// `egress.app_client_secret_sha256` or `egress.app_client_secret_file` (read here).
fn app_secret(e: &file::EgressFile, cx: &Ctx) -> Option<AppSecret> {
    match (&e.app_client_secret_sha256, &e.app_client_secret_file) {
        (Some(_), Some(_)) => {
            cx.add(
                "egress.app_client_secret_sha256",
                "set app_client_secret_sha256 or app_client_secret_file, not both",
            );
            None
        }
        (Some(hex), None) => cx.check("egress.app_client_secret_sha256", AppSecret::from_sha256_hex(hex)),
        (None, Some(p)) => {
            let path = cx.resolve(p);
            // The message never carries the content.
            let content = std::fs::read(&path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()));
            let secret =
                content.and_then(|c| AppSecret::from_file_content(&c).map_err(|m| format!("{}: {m}", path.display())));
            cx.check("egress.app_client_secret_file", secret)
        }
        (None, None) => None,
    }
}
