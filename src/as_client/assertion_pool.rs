//! A small per-AS pool of pre-signed `private_key_jwt` client assertions (RFC 7523), so a
//! login start signs only its request object: the assertion does not depend on the request.
//!
//! Rules (issue 12): each assertion has its own `jti` and is handed out at most once; one
//! whose `iat` is older than the max age is discarded, never sent; the whole pool is
//! discarded when the active signing key changes (compared by identity: any key reload makes
//! new keys); an empty pool never makes a caller wait, it signs inline. Refills are queued
//! after a take on the signing pool's background thread (nice +19, below the signatures a
//! login waits for; one job per pool at a time), never on the proxy's event loop. Idle cost:
//! at most `size` signatures per login after an idle gap longer than the max age (they go
//! stale unused), nothing while no login comes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::as_client::jose::SigningKey;
use crate::as_client::request_object::{client_assertion_claims, now_secs};
use crate::config::AsSettings;
use crate::metrics::Metrics;
use crate::protocol::{ClientId, IssuerUrl};

/// One signed assertion waiting to be used.
struct Minted {
    jwt: String,
    /// Its `iat` (Unix seconds) and the monotonic time it was taken at.
    iat: u64,
    at: Instant,
}

struct State {
    /// The key the pooled assertions were signed with (a `Weak` keeps the allocation, so the
    /// address is never reused by another key while it is compared).
    key: Weak<SigningKey>,
    items: VecDeque<Minted>,
    /// A refill task is running.
    refilling: bool,
    /// Bumped whenever the pool is emptied for a new key: a running refill stops.
    generation: u64,
}

/// What a take found, for the metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Discarded {
    /// Older than the max age.
    pub stale: usize,
    /// Signed with a key that is no longer the active one.
    pub rotated: usize,
}

pub struct AssertionPool {
    size: usize,
    max_age: Duration,
    client_id: ClientId,
    issuer: IssuerUrl,
    lifetime: Duration,
    state: Mutex<State>,
}

impl AssertionPool {
    pub fn new(settings: &AsSettings) -> Arc<AssertionPool> {
        let c = &settings.client;
        Arc::new(AssertionPool {
            size: c.assertion_pool,
            max_age: c.assertion_pool_max_age,
            client_id: c.client_id.clone(),
            issuer: settings.issuer.clone(),
            lifetime: c.assertion_lifetime,
            state: Mutex::new(State {
                key: Weak::new(),
                items: VecDeque::new(),
                refilling: false,
                generation: 0,
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        self.size > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Assertions ready now (tests, debugging).
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The claims of one new assertion: fresh `jti`, `iat` now, `exp` within the configured
    /// lifetime, `aud` the issuer.
    pub fn claims(&self, now: u64) -> serde_json::Map<String, serde_json::Value> {
        client_assertion_claims(&self.client_id, &self.issuer, self.lifetime, now)
    }

    /// Takes one fresh assertion signed with `key`, removing it for good. Stale ones and
    /// ones signed with another key are dropped on the way. `None`: sign one inline.
    pub fn take(&self, key: &Arc<SigningKey>) -> (Option<String>, Discarded) {
        let mut d = Discarded::default();
        if !self.enabled() {
            return (None, d);
        }
        let mut st = self.lock();
        if !std::ptr::eq(st.key.as_ptr(), Arc::as_ptr(key)) {
            d.rotated = st.items.len();
            st.items.clear();
            st.key = Arc::downgrade(key);
            st.generation += 1;
        }
        let now = now_secs();
        // Oldest first: the front goes stale first, and is used first.
        while let Some(m) = st.items.pop_front() {
            if m.at.elapsed() <= self.max_age && now.saturating_sub(m.iat) <= self.max_age.as_secs() {
                return (Some(m.jwt), d);
            }
            d.stale += 1;
        }
        (None, d)
    }

    /// Signs one assertion for the pool; `None` when the key changed meanwhile or the
    /// pool is full (the refill ends).
    fn mint_one(&self, key: &Arc<SigningKey>, generation: u64, metrics: &Metrics) -> bool {
        let now = now_secs();
        let at = Instant::now();
        let t = Instant::now();
        let Ok(jwt) = key.sign_jwt(None, &self.claims(now)) else {
            return false;
        };
        metrics
            .signing_duration
            .with_label_values(&[key.alg().as_str(), "client_assertion"])
            .observe(t.elapsed().as_secs_f64());
        let mut st = self.lock();
        if st.generation != generation || st.items.len() >= self.size {
            return false;
        }
        st.items.push_back(Minted { jwt, iat: now, at });
        st.items.len() < self.size
    }

    /// Signs on the calling thread until the pool is full for `key` (the refill task's body;
    /// tests call it directly).
    pub fn refill_now(&self, key: &Arc<SigningKey>, metrics: &Metrics) {
        let generation = {
            let mut st = self.lock();
            if !std::ptr::eq(st.key.as_ptr(), Arc::as_ptr(key)) {
                st.items.clear();
                st.key = Arc::downgrade(key);
                st.generation += 1;
            }
            st.generation
        };
        while self.lock().items.len() < self.size && self.mint_one(key, generation, metrics) {}
    }

    /// Queues a refill on the background signing thread unless one is queued or running or the pool
    /// is full. Never waits.
    pub fn refill_in_background(self: &Arc<Self>, key: Arc<SigningKey>, metrics: Arc<Metrics>) {
        if !self.enabled() {
            return;
        }
        {
            let mut st = self.lock();
            if st.refilling || st.items.len() >= self.size {
                return;
            }
            st.refilling = true;
        }
        let pool = self.clone();
        let queued = super::signing_pool::spawn_background(move || {
            // Cleared even if the refill panics (the pool then stays usable, inline).
            struct Done(Arc<AssertionPool>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.lock().refilling = false;
                }
            }
            let done = Done(pool);
            done.0.refill_now(&key, &metrics);
        });
        if !queued {
            self.lock().refilling = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jose::Alg;
    use std::collections::HashSet;

    fn settings(size: usize, max_age: u64) -> AsSettings {
        let mut s = crate::config::Settings::from_yaml(crate::config::tests::MINIMAL, std::path::Path::new("/c.yaml"))
            .unwrap()
            .authorization_servers
            .remove(0);
        s.client.assertion_pool = size;
        s.client.assertion_pool_max_age = Duration::from_secs(max_age);
        s
    }

    fn key() -> Arc<SigningKey> {
        Arc::new(SigningKey::generate(Alg::ES256).unwrap())
    }

    fn claims_of(jwt: &str) -> serde_json::Value {
        use base64::Engine;
        let part = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn each_assertion_is_used_once_with_its_own_jti() {
        let pool = AssertionPool::new(&settings(4, 10));
        let m = Metrics::new();
        let k = key();
        let mut jtis = HashSet::new();
        for _ in 0..5 {
            pool.refill_now(&k, &m);
            assert_eq!(pool.len(), 4);
            for _ in 0..4 {
                let (jwt, d) = pool.take(&k);
                assert_eq!(d, Discarded::default());
                let c = claims_of(&jwt.expect("pooled"));
                assert!(jtis.insert(c["jti"].as_str().unwrap().to_string()), "jti reused");
                assert_eq!(c["aud"], pool.issuer.as_str());
                assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 60);
            }
            assert!(pool.is_empty(), "taken assertions are gone");
        }
        assert_eq!(jtis.len(), 20);
    }

    #[test]
    fn empty_pool_answers_at_once_so_the_caller_signs_inline() {
        let pool = AssertionPool::new(&settings(4, 10));
        let k = key();
        assert_eq!(pool.take(&k), (None, Discarded::default()));
        let off = AssertionPool::new(&settings(0, 10));
        off.refill_now(&k, &Metrics::new());
        assert!(off.is_empty(), "size 0 never signs ahead");
        assert_eq!(off.take(&k).0, None);
    }

    #[test]
    fn stale_assertions_are_discarded() {
        let pool = AssertionPool::new(&settings(3, 10));
        let k = key();
        pool.refill_now(&k, &Metrics::new());
        // Age them: 11 s in the past, beyond the 10 s max age.
        for m in pool.lock().items.iter_mut() {
            m.iat -= 11;
            m.at -= Duration::from_secs(11);
        }
        assert_eq!(pool.take(&k), (None, Discarded { stale: 3, rotated: 0 }));
        assert!(pool.is_empty());
        // Monotonic age alone (a wall clock stepped back) is enough too.
        pool.refill_now(&k, &Metrics::new());
        pool.lock().items[0].at -= Duration::from_secs(11);
        let (jwt, d) = pool.take(&k);
        assert!(jwt.is_some());
        assert_eq!(d.stale, 1);
    }

    #[test]
    fn key_rotation_discards_the_pool() {
        let pool = AssertionPool::new(&settings(4, 10));
        let m = Metrics::new();
        let old = key();
        pool.refill_now(&old, &m);
        let new = key();
        let (jwt, d) = pool.take(&new);
        assert_eq!((jwt, d), (None, Discarded { stale: 0, rotated: 4 }));
        pool.refill_now(&new, &m);
        let jwt = pool.take(&new).0.expect("pooled with the new key");
        let header: serde_json::Value = {
            use base64::Engine;
            let h = jwt.split('.').next().unwrap();
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
        };
        assert_eq!(header["kid"], new.kid());
        // A refill still running for the old key adds nothing once the key changed.
        let generation = pool.lock().generation;
        pool.take(&old);
        assert!(!pool.mint_one(&new, generation, &m));
    }

    #[tokio::test]
    async fn refills_in_the_background_after_a_take() {
        let pool = AssertionPool::new(&settings(2, 10));
        let m = Arc::new(Metrics::new());
        let k = key();
        assert!(pool.take(&k).0.is_none());
        pool.refill_in_background(k.clone(), m.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.len() < 2 || pool.lock().refilling {
            assert!(Instant::now() < deadline, "refill did not finish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(pool.take(&k).0.is_some());
    }
}
