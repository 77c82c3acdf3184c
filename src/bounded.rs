//! A bounded map with a time-to-live: the code -> verifier map and the replay caches.
//! Oldest entries are evicted first when full, so memory is bounded whatever the traffic.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlMap<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
    ttl: Duration,
}

struct Inner<K, V> {
    map: HashMap<K, (Instant, V)>,
    order: VecDeque<(Instant, K)>,
}

impl<K: Eq + Hash + Clone, V> TtlMap<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlMap {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn purge(inner: &mut Inner<K, V>, now: Instant, ttl: Duration, capacity: usize) {
        while let Some((t, k)) = inner.order.front() {
            let expired = now.duration_since(*t) > ttl;
            if !expired && inner.map.len() < capacity {
                break;
            }
            // Only drop the map entry if it is the one this queue slot refers to.
            if inner.map.get(k).is_some_and(|(mt, _)| mt == t) {
                inner.map.remove(k);
            }
            inner.order.pop_front();
        }
    }

    /// Inserts; returns false (and keeps the old value) if the key is already present.
    pub fn insert_new(&self, k: K, v: V) -> bool {
        let now = Instant::now();
        let mut g = self.inner.lock().expect("lock");
        Self::purge(&mut g, now, self.ttl, self.capacity);
        if g.map.contains_key(&k) {
            return false;
        }
        g.map.insert(k.clone(), (now, v));
        g.order.push_back((now, k));
        true
    }

    /// Removes and returns a live entry: each value can be taken once.
    pub fn take(&self, k: &K) -> Option<V> {
        let now = Instant::now();
        let mut g = self.inner.lock().expect("lock");
        Self::purge(&mut g, now, self.ttl, usize::MAX);
        g.map.remove(k).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("lock").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_ttl_and_take_once() {
        let m = TtlMap::new(2, Duration::from_secs(60));
        assert!(m.insert_new("a", 1));
        assert!(!m.insert_new("a", 2), "replay detected");
        assert!(m.insert_new("b", 2));
        assert!(m.insert_new("c", 3));
        assert_eq!(m.len(), 2, "oldest evicted");
        assert_eq!(m.take(&"a"), None);
        assert_eq!(m.take(&"c"), Some(3));
        assert_eq!(m.take(&"c"), None, "taken once");
        let short = TtlMap::new(10, Duration::from_millis(1));
        short.insert_new("x", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.take(&"x"), None, "expired");
    }
}
