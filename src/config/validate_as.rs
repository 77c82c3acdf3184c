//! `authorization_server` / `authorization_servers[]`: the AS entries, each with its
//! effective client ([`super::validate_client`]).

use std::time::Duration;

use url::Url;

use super::validate_ctx::Ctx;
use super::*;

/// Sidecar-wide knobs copied into every [`AsSettings`].
pub(super) struct CallKnobs {
    /// `par.request_object` as in the file: a profile may fill it per AS; unset is true.
    pub request_object: Option<bool>,
    pub connect_timeout: Duration,
    pub par_timeout: Duration,
    pub discovery_timeout: Duration,
    pub max_as_response_bytes: usize,
}

/// One AS in file form, whichever of the two forms it came from.
pub(super) struct AsEntry<'a> {
    key: String,
    pub name: &'a str,
    file: &'a file::AuthorizationServerFile,
    /// The effective client: the shared block, with this AS's overrides merged over it.
    client: file::ClientFile,
}

/// Exactly one of the two forms; the single form is the list of one named `default`.
pub(super) fn entries<'a>(f: &'a file::FileConfig, cx: &Ctx) -> Vec<AsEntry<'a>> {
    match (&f.authorization_server, &f.authorization_servers) {
        (Some(_), Some(_)) => {
            cx.add(
                "authorization_servers",
                "use either authorization_server (one AS) or authorization_servers (several), not both",
            );
            Vec::new()
        }
        (None, None) => {
            cx.add(
                "authorization_server",
                "required (or authorization_servers for several ASs)",
            );
            Vec::new()
        }
        (Some(a), None) => {
            if a.name.is_some() || a.client.is_some() {
                cx.add(
                    "authorization_server",
                    "`name` and `client` belong to entries of authorization_servers; the single AS is `default` and uses the top-level client block",
                );
            }
            vec![AsEntry {
                key: "authorization_server".into(),
                name: AsName::DEFAULT,
                file: a,
                client: f.client.clone(),
            }]
        }
        (None, Some(list)) => {
            if list.is_empty() {
                cx.add("authorization_servers", "lists no AS");
            }
            let mut entries = Vec::with_capacity(list.len());
            for (i, a) in list.iter().enumerate() {
                let key = format!("authorization_servers[{i}]");
                let Some(name) = a.name.as_deref() else {
                    cx.add(&format!("{key}.name"), "required");
                    continue;
                };
                entries.push(AsEntry {
                    key,
                    name,
                    file: a,
                    client: a
                        .client
                        .as_ref()
                        .map_or_else(|| f.client.clone(), |c| f.client.merged_with(c)),
                });
            }
            entries
        }
    }
}

/// Every entry checked, with what its profile did (same order); an entry with a problem is
/// left out (its problems are recorded). `profile`: the top-level `profile` key.
pub(super) fn authorization_servers(
    entries: &[AsEntry],
    profile: Option<&str>,
    multi_as: bool,
    knobs: &CallKnobs,
    cx: &Ctx,
) -> (Vec<AsSettings>, Vec<super::profile::Applied>) {
    let mut out = (Vec::with_capacity(entries.len()), Vec::with_capacity(entries.len()));
    for (i, e) in entries.iter().enumerate() {
        if let Some((a, applied)) = authorization_server(e, &entries[..i], profile, multi_as, knobs, cx) {
            out.0.push(a);
            out.1.push(applied);
        }
    }
    out
}

/// One AS; `earlier` are the entries before it (names and issuers are unique).
fn authorization_server(
    e: &AsEntry,
    earlier: &[AsEntry],
    profile: Option<&str>,
    multi_as: bool,
    knobs: &CallKnobs,
    cx: &Ctx,
) -> Option<(AsSettings, super::profile::Applied)> {
    let k = |sub: &str| format!("{}.{sub}", e.key);
    // Where a client key is reported: the per-AS block in the multi form.
    let ck = |sub: &str| {
        if multi_as {
            format!("{}.client.{sub}", e.key)
        } else {
            format!("client.{sub}")
        }
    };
    let name = cx.check(&k("name"), AsName::new(e.name));
    if earlier.iter().any(|o| o.name == e.name) {
        cx.add(&k("name"), format!("`{}` is used by another AS", e.name));
    }
    let issuer = cx.check(&k("issuer"), IssuerUrl::new(&e.file.issuer));
    if let Some(issuer) = &issuer {
        let same = earlier
            .iter()
            .find(|o| IssuerUrl::new(&o.file.issuer).is_ok_and(|i| i == *issuer));
        if let Some(other) = same {
            cx.add(
                &k("issuer"),
                format!("`{issuer}` is also the issuer of `{}`: issuers are unique", other.name),
            );
        }
    }
    let discovery_url = match (e.file.discovery_url.as_deref(), &issuer) {
        (Some(u), _) => cx.check(&k("discovery_url"), Url::parse(u).map_err(|err| err.to_string())),
        (None, Some(issuer)) => Some(issuer.default_discovery_url()),
        (None, None) => None,
    };
    if discovery_url.as_ref().is_some_and(|u| u.scheme() != "https") {
        cx.add(&k("discovery_url"), "must be https (TLS-1)");
    }
    // The profile fills unset keys and refuses contradictions before they are read. After a
    // refusal the client block is not checked (without the profile's defaults it would report
    // keys the profile fills); the AS's own keys still are.
    let profiled = super::profile::for_as(profile, e.file, &e.client, knobs.request_object, e.name, &ck, &k)
        .map_err(|r| cx.add(&r.key, r.message))
        .ok();
    let (client_file, par_endpoint, request_object) = match &profiled {
        Some(p) => (&p.client, &p.par_endpoint, p.request_object),
        None => (&e.client, &e.file.par_endpoint, knobs.request_object),
    };
    let par_alias = match par_endpoint.as_ref().map(file::Choice::value) {
        None => Some(AliasPolicy::Auto),
        Some(Ok(p)) => Some(p),
        Some(Err(other)) => {
            cx.add(
                &k("par_endpoint"),
                format!("`{other}` is not one of auto, mtls_alias, top_level"),
            );
            None
        }
    };
    let authorize_hosts = e
        .file
        .authorize_hosts
        .iter()
        .flatten()
        .filter_map(|h| cx.check(&k("authorize_hosts"), authorize_host(h)))
        .collect();
    let discovery_refresh = cx.secs(
        &k("discovery_refresh_seconds"),
        e.file.discovery_refresh_seconds,
        300,
        5,
        86_400,
    );
    let client = profiled
        .as_ref()
        .and_then(|_| super::validate_client::validate_client(client_file, &ck, cx));
    let applied = profiled?.applied;
    let settings = AsSettings {
        name: name?,
        issuer: issuer?,
        discovery_url: discovery_url?,
        ca_file: e.file.ca_file.as_deref().map(|p| cx.resolve(p)),
        discovery_refresh: discovery_refresh?,
        par_alias: par_alias?,
        authorize_hosts,
        client: client?,
        request_object: request_object.unwrap_or(true),
        id_token_encrypted: applied.encrypted_id_token,
        connect_timeout: knobs.connect_timeout,
        par_timeout: knobs.par_timeout,
        discovery_timeout: knobs.discovery_timeout,
        max_as_response_bytes: knobs.max_as_response_bytes,
    };
    Some((settings, applied))
}

/// One `authorize_hosts` entry: a bare host name or IP (no scheme, port or path), normalised
/// like the detection's host index.
fn authorize_host(h: &str) -> Result<String, String> {
    let bad = || format!("`{h}` is not a host name (no scheme, port or path)");
    if h.is_empty() || h.contains(['/', '\\', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    let u = Url::parse(&format!("https://{h}/")).map_err(|_| bad())?;
    if u.port().is_some() || u.path() != "/" {
        return Err(bad());
    }
    u.host_str().map(crate::protocol::authorize::norm_host).ok_or_else(bad)
}
