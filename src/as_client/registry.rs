//! The configured authorization servers at run time. Each [`AsClient`] owns everything
//! about one AS (settings, keys, HTTP pool, metadata, JWKS, concurrency bounds), so one
//! failing bank affects only logins at that bank. The [`AsRegistry`] finds an AS by name
//! (egress, sealed state) and by authorize host (redirect detection, a hash lookup).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::Semaphore;

use crate::as_client::assertion_pool::AssertionPool;
use crate::as_client::discovery::{DiscoveryCache, ProviderMetadata};
use crate::as_client::dpop::NonceCache;
use crate::as_client::endpoint_conflict::{self, Claim, Verdict};
use crate::as_client::http_client::{AsHttp, ReqwestAs};
use crate::as_client::jwks::AsJwks;
use crate::as_client::keys::{KeyLoadError, KeySet};
use crate::config::AsSettings;
use crate::protocol::authorize::{norm_host, AuthorizeEndpoint, Candidate};
use crate::protocol::AsIndex;

/// Bounds concurrent PARs at one AS (their retry sleeps included).
const MAX_CONCURRENT_LOGINS: usize = 128;
/// Bounds concurrent egress calls to one AS, apart from logins: a flood of anonymous login
/// starts cannot starve logged-in users' token and userinfo calls.
const MAX_CONCURRENT_EGRESS: usize = 256;

pub struct PreviousClient {
    pub http: Arc<Box<dyn AsHttp>>,
    pub retired_at: std::time::Instant,
}

/// One configured AS and what the sidecar holds for it. Callers use its operations rather
/// than assembling its parts: [`AsClient::push_par`] (`par`), [`AsClient::client_auth`] and
/// [`AsClient::authenticate_form`] (`client_auth`), [`AsClient::send`] with DPoP (`send`),
/// [`AsClient::check_token_response`] and [`AsClient::revoke_in_background`] (`token_check`).
pub struct AsClient {
    pub index: AsIndex,
    pub settings: AsSettings,
    pub keys: ArcSwap<KeySet>,
    pub http: ArcSwap<Box<dyn AsHttp>>,
    /// The client with the previous transport certificate, kept after a rotation: tokens
    /// bound to the old certificate stay usable until they expire (MTLS-8).
    pub previous_http: ArcSwapOption<PreviousClient>,
    pub discovery: DiscoveryCache,
    pub jwks: AsJwks,
    pub(super) login_permits: Semaphore,
    pub egress_permits: Semaphore,
    /// The latest DPoP nonce per origin (this AS and its resource servers).
    pub(super) dpop_nonces: NonceCache,
    /// Pre-signed client assertions for the active signing key (`client.assertion_pool`).
    pub assertions: Arc<AssertionPool>,
    /// Why this AS is not usable, for `/readyz` and logs (None while it is fine).
    problem: Mutex<Option<String>>,
    /// Set when another AS has the same authorize endpoint *and* client_id and keeps it, or
    /// nobody can (see [`endpoint_conflict`]): this AS is refused until that changes.
    conflict: ArcSwapOption<String>,
    /// Its current authorize endpoint came with a refreshed document while another AS was
    /// already serving it with this client_id (cleared once the AS is clear of conflicts).
    moved_onto: AtomicBool,
    /// Host and port of the authorize endpoint of the last metadata this AS loaded (in
    /// memory: after a restart only the issuer host and `authorize_hosts` are known). While
    /// the AS has no usable metadata, redirects there are held back like its issuer host.
    last_authorize_host: Mutex<Option<(String, u16)>>,
}

impl AsClient {
    pub fn new(index: AsIndex, settings: AsSettings, keys: KeySet, http: Box<dyn AsHttp>) -> AsClient {
        AsClient {
            index,
            jwks: AsJwks::new(settings.name.as_str()),
            assertions: AssertionPool::new(&settings),
            settings,
            keys: ArcSwap::from_pointee(keys),
            http: ArcSwap::from_pointee(http),
            previous_http: ArcSwapOption::empty(),
            discovery: DiscoveryCache::default(),
            login_permits: Semaphore::new(MAX_CONCURRENT_LOGINS),
            egress_permits: Semaphore::new(MAX_CONCURRENT_EGRESS),
            dpop_nonces: NonceCache::default(),
            problem: Mutex::new(Some("AS metadata not loaded yet".into())),
            conflict: ArcSwapOption::empty(),
            moved_onto: AtomicBool::new(false),
            last_authorize_host: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        self.settings.name.as_str()
    }

    /// Metadata, if this AS can be used: loaded and not in conflict with another AS.
    pub fn metadata(&self) -> Option<Arc<ProviderMetadata>> {
        if self.conflict.load().is_some() {
            return None;
        }
        self.discovery.get()
    }

    pub fn is_ready(&self) -> bool {
        self.metadata().is_some()
    }

    /// `None` when ready, else the reason (for `/readyz`).
    pub fn not_ready_reason(&self) -> Option<String> {
        if let Some(c) = self.conflict.load_full() {
            return Some((*c).clone());
        }
        if self.discovery.get().is_some() {
            return None;
        }
        Some(
            self.problem
                .lock()
                .map(|p| p.clone().unwrap_or_default())
                .unwrap_or_default(),
        )
    }

    /// The hosts (and ports) its authorize redirects may go to while it has no usable
    /// metadata: the issuer's, the last loaded authorize endpoint's and the configured
    /// `authorize_hosts`.
    fn hold_back_hosts(&self) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = Vec::new();
        if let Ok(u) = url::Url::parse(self.settings.issuer.as_str()) {
            if let Some(h) = u.host_str() {
                out.push((norm_host(h), u.port_or_known_default().unwrap_or(443)));
            }
        }
        if let Some(last) = self.last_authorize_host.lock().ok().and_then(|g| g.clone()) {
            out.push(last);
        }
        out.extend(self.settings.authorize_hosts.iter().map(|h| (h.clone(), 443)));
        let mut seen = HashSet::new();
        out.retain(|x| seen.insert(x.clone()));
        out
    }

    /// Why this AS is refused for an authorize endpoint conflict, if it is.
    pub fn endpoint_conflict(&self) -> Option<String> {
        self.conflict.load_full().map(|c| (*c).clone())
    }

    /// Whether the endpoint is this AS's own: on its issuer's host and port, or on a host
    /// listed in its `authorize_hosts` (any port).
    fn owns(&self, ep: &AuthorizeEndpoint) -> bool {
        let on_issuer = url::Url::parse(self.settings.issuer.as_str()).is_ok_and(|u| {
            u.host_str().map(norm_host).as_deref() == Some(ep.host()) && u.port_or_known_default() == Some(ep.port())
        });
        on_issuer || self.settings.authorize_hosts.iter().any(|h| h == ep.host())
    }

    /// Records the last discovery failure (kept while no metadata is loaded).
    pub fn set_problem(&self, p: Option<String>) {
        if let Ok(mut g) = self.problem.lock() {
            *g = p;
        }
    }
}

/// Candidates per normalised authorize host, ASs without usable metadata per host they may
/// be reached on, and every client_id the sidecar uses.
#[derive(Default)]
pub struct HostIndex {
    loaded: HashMap<String, Vec<Candidate>>,
    /// (port, AS index) of ASs without usable metadata, by issuer host and by the host of
    /// their last known (or configured) authorize endpoint.
    pending: HashMap<String, Vec<(u16, AsIndex)>>,
    /// The client_id of every configured AS, loaded or not.
    client_ids: HashSet<String>,
}

impl HostIndex {
    /// Detection candidates on one normalised authorize host.
    pub fn candidates(&self, host: &str) -> Option<&[Candidate]> {
        self.loaded.get(host).map(Vec::as_slice)
    }

    /// Whether the sidecar uses this client_id at some configured AS.
    pub fn is_client(&self, client_id: &str) -> bool {
        self.client_ids.contains(client_id)
    }
}

pub struct AsRegistry {
    pub clients: Vec<Arc<AsClient>>,
    index: ArcSwap<HostIndex>,
    /// Rebuilds one at a time: each reads every AS's metadata and stores a whole index, so
    /// two overlapping rebuilds (first loads run concurrently) could otherwise store a stale
    /// view last and leave a ready AS out of the index.
    rebuilding: std::sync::Mutex<()>,
    by_name: HashMap<String, AsIndex>,
}

impl AsRegistry {
    pub fn new(clients: Vec<AsClient>) -> AsRegistry {
        let clients: Vec<Arc<AsClient>> = clients.into_iter().map(Arc::new).collect();
        let by_name = clients.iter().map(|c| (c.name().to_string(), c.index)).collect();
        let r = AsRegistry {
            clients,
            index: ArcSwap::from_pointee(HostIndex::default()),
            rebuilding: std::sync::Mutex::new(()),
            by_name,
        };
        r.rebuild_index();
        r
    }

    pub fn get(&self, index: AsIndex) -> Option<&Arc<AsClient>> {
        self.clients.get(index.get())
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<AsClient>> {
        self.by_name.get(name).and_then(|i| self.get(*i))
    }

    /// The AS a sealed state names; states sealed before the multi-AS upgrade name none and
    /// belong to the only (`default`) AS.
    pub fn for_state(&self, name: Option<&str>) -> Option<&Arc<AsClient>> {
        match name {
            Some(n) => self.by_name(n),
            None if self.clients.len() == 1 => self.clients.first(),
            None => self.by_name(crate::config::AsName::DEFAULT),
        }
    }

    /// Installs new metadata for one AS; the host index is rebuilt only when the AS's
    /// authorize endpoint appeared or changed. A refreshed document that moves the AS onto
    /// an endpoint another AS serves with the same client_id marks it as the one that moved,
    /// so that the other keeps it (rule 2 of [`endpoint_conflict`]).
    pub fn set_metadata(&self, client: &AsClient, m: ProviderMetadata) {
        let prev = client.discovery.get();
        let changed = prev
            .as_ref()
            .is_none_or(|p| p.authorization_endpoint.url() != m.authorization_endpoint.url());
        if changed {
            let id = client.settings.client.client_id.as_str();
            let onto_another = prev.is_some()
                && self.clients.iter().any(|o| {
                    o.index != client.index
                        && o.settings.client.client_id.as_str() == id
                        && o.metadata()
                            .is_some_and(|om| om.authorization_endpoint.same_endpoint(&m.authorization_endpoint))
                });
            client.moved_onto.store(onto_another, Ordering::Relaxed);
        }
        if let Ok(mut g) = client.last_authorize_host.lock() {
            let ep = &m.authorization_endpoint;
            *g = Some((ep.host().to_string(), ep.port()));
        }
        client.discovery.set(m);
        client.set_problem(None);
        if changed {
            self.rebuild_index();
        }
    }

    /// Ready while at least one AS can serve logins.
    pub fn any_ready(&self) -> bool {
        self.clients.iter().any(|c| c.is_ready())
    }

    /// The current host index (a lock-free snapshot).
    pub fn index(&self) -> arc_swap::Guard<Arc<HostIndex>> {
        self.index.load()
    }

    /// Whether any AS is without usable metadata (a cheap check before parsing a Location).
    pub fn has_pending(&self) -> bool {
        !self.index.load().pending.is_empty()
    }

    /// An AS without usable metadata whose issuer or (last known or configured) authorize
    /// endpoint is on this host (preferring the same port): a redirect there is held back as
    /// `not_ready` rather than forwarded.
    pub fn pending_on(&self, host: &str, port: Option<u16>) -> Option<&Arc<AsClient>> {
        let idx = self.index.load();
        let list = idx.pending.get(&norm_host(host))?;
        let pick = list.iter().find(|(p, _)| Some(*p) == port).or(list.first())?;
        self.get(pick.1)
    }

    /// The endpoint-conflict verdict for each AS, in registry order.
    fn verdicts(&self, all: &[Candidate]) -> Vec<Verdict> {
        let claims: Vec<Claim> = self
            .clients
            .iter()
            .map(|c| Claim {
                as_index: c.index,
                name: c.name(),
                endpoint: all.iter().find(|x| x.as_index == c.index).map(|x| &x.endpoint),
                client_id: c.settings.client.client_id.as_str(),
                moved_onto: c.moved_onto.load(Ordering::Relaxed),
            })
            .collect();
        endpoint_conflict::resolve(&claims, &|i, ep| self.get(i).is_some_and(|c| c.owns(ep)))
    }

    /// Rebuilds the host index and the endpoint conflicts from the current metadata. Called
    /// when an AS's metadata first loads or its authorize endpoint changes, not per request.
    pub fn rebuild_index(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let mut idx = HostIndex::default();
        let mut all: Vec<Candidate> = Vec::new();
        for c in &self.clients {
            idx.client_ids.insert(c.settings.client.client_id.as_str().to_string());
            if let Some(md) = c.discovery.get() {
                all.push(Candidate {
                    as_index: c.index,
                    endpoint: md.authorization_endpoint.clone(),
                    client_id: c.settings.client.client_id.clone(),
                    end_session: md.end_session_endpoint.clone(),
                });
            }
        }
        let verdicts = self.verdicts(&all);
        // ASs refused in favour of another: out of the detection index (their redirects
        // are the winner's), and not holding back the winner's endpoint either.
        let mut losers: HashMap<AsIndex, (String, u16)> = HashMap::new();
        for (c, verdict) in self.clients.iter().zip(verdicts) {
            match verdict {
                Verdict::Clear => {
                    c.conflict.store(None);
                    c.moved_onto.store(false, Ordering::Relaxed);
                }
                Verdict::Refused { winner, reason } => {
                    if c.conflict.load().as_deref() != Some(&reason) {
                        tracing::error!(r#as = c.name(), reason = %reason, "AS refused: authorization endpoint conflict; not ready");
                    }
                    c.conflict.store(Some(Arc::new(reason)));
                    if let Some(ep) = winner.and_then(|_| all.iter().find(|x| x.as_index == c.index)) {
                        losers.insert(c.index, (ep.endpoint.host().to_string(), ep.endpoint.port()));
                    }
                }
            }
            // No usable metadata (not loaded yet, or in conflict): hold back redirects to
            // every host its logins may go to.
            if c.metadata().is_none() {
                for (host, port) in c.hold_back_hosts() {
                    if losers.get(&c.index) == Some(&(host.clone(), port)) {
                        continue;
                    }
                    idx.pending.entry(host).or_default().push((port, c.index));
                }
            }
        }
        for cand in all {
            if losers.contains_key(&cand.as_index) {
                continue;
            }
            idx.loaded
                .entry(cand.endpoint.host().to_string())
                .or_default()
                .push(cand);
        }
        self.index.store(Arc::new(idx));
    }
}

/// Loads one AS's keys and builds its mTLS client.
pub fn load_client(index: AsIndex, settings: AsSettings) -> Result<AsClient, KeyLoadError> {
    let keys = KeySet::load(&settings.client)?;
    if keys.dpop_generated {
        // Tokens are bound to this key: another replica (or this one after a restart) cannot
        // use them. Fine for one replica; several need a shared `client.dpop.key.path`.
        tracing::warn!(
            r#as = settings.name.as_str(),
            "DPoP key generated in memory for this process: replicas must share a key file (client.dpop.key.path)"
        );
    }
    let http = build_http(&settings, &keys)?;
    Ok(AsClient::new(index, settings, keys, http))
}

pub fn build_http(settings: &AsSettings, keys: &KeySet) -> Result<Box<dyn AsHttp>, KeyLoadError> {
    Ok(Box::new(ReqwestAs::new(
        &keys.transport,
        settings.ca_file.as_deref(),
        settings.connect_timeout,
        settings.max_as_response_bytes,
    )?))
}
