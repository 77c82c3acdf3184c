//! The open connections of one listener, each with the state its guard and the proxy phases
//! share, so that a full listener closes an idle connection instead of refusing a new one,
//! and one client address cannot hold more than its share under pressure (issue 18 item 2).
//!
//! Why evict rather than refuse: refusing at the cap hands the listener to whoever fills it
//! first; 20 trickling sockets locked every new client out of a 20-slot cap. A connection
//! with no request in flight (an idle keep-alive, or one still sending headers) costs its
//! client at most a reconnect when closed, so at the cap the oldest idle one goes, preferably
//! one of an address above its share. A request in flight is never cut here.
//!
//! Why a share only under pressure: the sidecar cannot tell an attacker's address from a NAT
//! or an SNAT-ing node carrying hundreds of users. Below `pressure_percent` of the cap nobody
//! is limited; above it, an address holding `cap / addresses` or more may only replace its
//! own idle connections (or is refused when it has none), so the slots left go to others.
//!
//! Cost: one mutex and two map operations per accept and per close; the O(open) scan for a
//! victim runs only when the listener is full or an address is over its share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::client_connections::group;

/// Why a connection is being closed from outside its own task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Made room at the cap (or for its own address's new connection over its share).
    Evicted,
    /// Its request headers grew past `limits.max_request_header_bytes`.
    HeadersTooLarge,
}

const NO_TIME: u64 = u64::MAX;

/// One connection's state, shared by its guard (watchdog), the stream adapter counting
/// header bytes and, through a task-local, the proxy phases marking a request's start and end.
pub struct ConnState {
    epoch: Instant,
    in_flight: AtomicBool,
    /// Milliseconds since `epoch`: when the connection last became idle (accept, or the end
    /// of its last request).
    idle_since: AtomicU64,
    /// Milliseconds since `epoch` when the pending request's headers started (accept for the
    /// first request, the first byte read for a later one); `NO_TIME` when none is pending.
    headers_since: AtomicU64,
    /// Bytes read since the pending request's headers started.
    pub(crate) header_bytes: AtomicUsize,
    /// 0: open; else a `CloseReason` + 1.
    close: AtomicU8,
    /// Wakes the guard's watchdog: a close request, or the first byte of a new request.
    pub(crate) wake: Notify,
}

impl ConnState {
    fn new(epoch: Instant) -> Self {
        let now = ms_since(epoch);
        ConnState {
            epoch,
            in_flight: AtomicBool::new(false),
            idle_since: AtomicU64::new(now),
            headers_since: AtomicU64::new(now),
            header_bytes: AtomicUsize::new(0),
            close: AtomicU8::new(0),
            wake: Notify::new(),
        }
    }

    /// A stand-alone state (tests, or a connection without a registry).
    pub fn detached() -> Arc<Self> {
        Arc::new(ConnState::new(Instant::now()))
    }

    /// The request's headers are parsed: no header deadline or size cap while it is served.
    pub fn request_started(&self) {
        self.in_flight.store(true, Ordering::Release);
        self.headers_since.store(NO_TIME, Ordering::Release);
        self.header_bytes.store(0, Ordering::Release);
    }

    /// The response is written: the connection is idle (evictable) until the next request.
    pub fn request_done(&self) {
        self.header_bytes.store(0, Ordering::Release);
        self.headers_since.store(NO_TIME, Ordering::Release);
        self.idle_since.store(ms_since(self.epoch), Ordering::Release);
        self.in_flight.store(false, Ordering::Release);
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A byte of a new request arrived: starts its header deadline (and wakes the watchdog
    /// to arm it) unless one runs already.
    pub(crate) fn header_bytes_read(&self) {
        if self
            .headers_since
            .compare_exchange(NO_TIME, ms_since(self.epoch), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// When the pending request's headers must be in; `None` while a request is served or
    /// nothing of the next one has arrived (pingora's keep-alive timeout bounds that wait).
    pub fn header_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight() {
            return None;
        }
        match self.headers_since.load(Ordering::Acquire) {
            NO_TIME => None,
            t => Some(self.epoch + Duration::from_millis(t) + timeout),
        }
    }

    /// Asks the connection's guard to close it.
    pub fn close(&self, reason: CloseReason) {
        let code = match reason {
            CloseReason::Evicted => 1,
            CloseReason::HeadersTooLarge => 2,
        };
        let _ = self
            .close
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.close.load(Ordering::Acquire) {
            0 => None,
            1 => Some(CloseReason::Evicted),
            _ => Some(CloseReason::HeadersTooLarge),
        }
    }

    fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Acquire)
    }
}

fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

struct Open {
    state: Arc<ConnState>,
    group: Option<IpAddr>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Open>,
    /// Connections per address group; only groups with at least one.
    per_group: HashMap<IpAddr, u32>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> bool {
        let Some(open) = self.conns.remove(&id) else {
            return false;
        };
        if let Some(g) = open.group {
            if let Some(n) = self.per_group.get_mut(&g) {
                *n -= 1;
                if *n == 0 {
                    self.per_group.remove(&g);
                }
            }
        }
        true
    }

    /// The share of one address when `new_group` joins: the cap split evenly.
    fn share(&self, max: usize, new_group: IpAddr) -> usize {
        let groups = self.per_group.len() + usize::from(!self.per_group.contains_key(&new_group));
        (max / groups.max(1)).max(1)
    }

    /// The idle connection to close: of `only` if given, else preferably of an address over
    /// `share`; the oldest idle first (ids break ties: they grow with accept order).
    fn victim(&self, only: Option<IpAddr>, share: usize) -> Option<u64> {
        let over = |g: &Option<IpAddr>| {
            g.and_then(|g| self.per_group.get(&g))
                .is_some_and(|n| *n as usize > share)
        };
        self.conns
            .iter()
            .filter(|(_, o)| !o.state.in_flight() && o.state.close_reason().is_none())
            .filter(|(_, o)| only.is_none() || o.group == only)
            .min_by_key(|(id, o)| (!over(&o.group), o.state.idle_since(), **id))
            .map(|(id, _)| *id)
    }

    fn evict(&mut self, id: u64) {
        if let Some(open) = self.conns.get(&id) {
            open.state.close(CloseReason::Evicted);
        }
        self.remove(id);
    }
}

/// What `admit` decided.
pub enum Admission {
    /// Open; `evicted` says whether an idle connection was closed to make room.
    Accepted { entry: Entry, evicted: bool },
    /// Full of requests in flight, or the address is over its share with nothing idle.
    Refused,
}

pub struct Registry {
    /// 0: no cap (and no sharing).
    max: usize,
    /// Open connections from which an address is held to its share.
    pressure: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn new(max: usize, pressure_percent: u8) -> Arc<Self> {
        let pressure = if pressure_percent >= 100 {
            usize::MAX
        } else {
            (max * pressure_percent as usize).div_ceil(100)
        };
        Arc::new(Registry {
            max,
            pressure,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `peer` (None: not an IP peer), closing an idle one if
    /// the cap or the address's share requires it.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Admission {
        let g = peer.map(group);
        let mut inner = self.lock();
        let mut evicted = false;
        if self.max != 0 {
            if let Some(g) = g.filter(|_| inner.conns.len() >= self.pressure) {
                let share = inner.share(self.max, g);
                let held = inner.per_group.get(&g).copied().unwrap_or(0) as usize;
                if held >= share {
                    // Over its share: it may only replace one of its own idle connections.
                    match inner.victim(Some(g), share) {
                        Some(id) => {
                            inner.evict(id);
                            evicted = true;
                        }
                        None => return Admission::Refused,
                    }
                }
            }
            if inner.conns.len() >= self.max {
                let share = g.map_or(self.max, |g| inner.share(self.max, g));
                match inner.victim(None, share) {
                    Some(id) => {
                        inner.evict(id);
                        evicted = true;
                    }
                    None => return Admission::Refused,
                }
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState::new(self.epoch));
        inner.conns.insert(
            id,
            Open {
                state: state.clone(),
                group: g,
            },
        );
        if let Some(g) = g {
            *inner.per_group.entry(g).or_insert(0) += 1;
        }
        Admission::Accepted {
            entry: Entry {
                registry: self.clone(),
                id,
                state,
            },
            evicted,
        }
    }

    /// Connections counted now (an evicted one leaves at once, before its socket closes).
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Connections `ip`'s address group holds.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.lock().per_group.get(&group(ip)).copied().unwrap_or(0) as usize
    }
}

/// One admitted connection; leaves the registry when dropped (or when evicted).
pub struct Entry {
    registry: Arc<Registry>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn accept(r: &Arc<Registry>, peer: Option<IpAddr>) -> (Entry, bool) {
        match r.admit(peer) {
            Admission::Accepted { entry, evicted } => (entry, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let r = Registry::new(3, 100);
        let (a, _) = accept(&r, ip("192.0.2.1"));
        std::thread::sleep(Duration::from_millis(5));
        let (b, _) = accept(&r, ip("192.0.2.1"));
        let (c, _) = accept(&r, ip("192.0.2.2"));
        b.state.request_started();
        c.state.request_started();
        let (_d, evicted) = accept(&r, ip("192.0.2.3"));
        assert!(evicted);
        assert_eq!(a.state.close_reason(), Some(CloseReason::Evicted), "the idle one goes");
        assert_eq!(b.state.close_reason(), None, "a request in flight is never cut");
        assert_eq!(r.open(), 3);
        drop(a);
        assert_eq!(r.open(), 3, "dropping an evicted entry does not count it twice");
    }

    #[test]
    fn full_of_requests_in_flight_refuses() {
        let r = Registry::new(2, 100);
        let (a, _) = accept(&r, ip("192.0.2.1"));
        let (b, _) = accept(&r, ip("192.0.2.2"));
        a.state.request_started();
        b.state.request_started();
        assert!(matches!(r.admit(ip("192.0.2.3")), Admission::Refused));
        b.state.request_done();
        let (_c, evicted) = accept(&r, ip("192.0.2.3"));
        assert!(evicted, "once a request ends its connection is evictable");
        assert_eq!(b.state.close_reason(), Some(CloseReason::Evicted));
    }

    #[test]
    fn under_pressure_an_address_over_its_share_only_replaces_its_own() {
        // Cap 10, pressure from 8: the flooder holds 8 (idle), a user then gets in while the
        // flooder's ninth replaces one of its own.
        let r = Registry::new(10, 80);
        let flood: Vec<_> = (0..8).map(|_| accept(&r, ip("198.51.100.7")).0).collect();
        let (_user, evicted) = accept(&r, ip("192.0.2.1"));
        assert!(!evicted, "an address under its share is admitted without cost");
        let (_f9, evicted) = accept(&r, ip("198.51.100.7"));
        assert!(evicted, "over its share (10 / 2 = 5): replaces its own oldest idle");
        assert_eq!(flood[0].state.close_reason(), Some(CloseReason::Evicted));
        assert_eq!(r.held("198.51.100.7".parse().unwrap()), 8);
        // With all its connections busy it is refused instead.
        for f in &flood[1..] {
            f.state.request_started();
        }
        _f9.state.request_started();
        assert!(matches!(r.admit(ip("198.51.100.7")), Admission::Refused));
        assert!(matches!(r.admit(ip("203.0.113.9")), Admission::Accepted { .. }));
    }

    #[test]
    fn below_pressure_one_address_may_hold_many() {
        // A NAT in normal times: 79 of 100 from one address, the 80th too.
        let r = Registry::new(100, 80);
        let held: Vec<_> = (0..80).map(|_| accept(&r, ip("203.0.113.1")).0).collect();
        assert!(held.iter().all(|e| e.state.close_reason().is_none()));
        assert_eq!(r.held("203.0.113.1".parse().unwrap()), 80);
    }

    #[test]
    fn at_the_cap_the_heaviest_address_pays_first() {
        let r = Registry::new(4, 100);
        let (user, _) = accept(&r, ip("192.0.2.1"));
        std::thread::sleep(Duration::from_millis(5));
        let flood: Vec<_> = (0..3).map(|_| accept(&r, ip("198.51.100.7")).0).collect();
        let (_new, evicted) = accept(&r, ip("192.0.2.2"));
        assert!(evicted);
        assert_eq!(user.state.close_reason(), None, "the older idle user is kept");
        assert_eq!(flood.iter().filter(|e| e.state.close_reason().is_some()).count(), 1);
    }

    #[test]
    fn the_header_deadline_runs_from_accept_then_from_each_new_request() {
        let s = ConnState::detached();
        let t = Duration::from_secs(10);
        assert!(
            s.header_deadline(t).is_some(),
            "the first request is bounded from accept"
        );
        s.request_started();
        assert!(s.header_deadline(t).is_none(), "no deadline while served");
        s.request_done();
        assert!(s.header_deadline(t).is_none(), "an idle keep-alive has none yet");
        s.header_bytes_read();
        assert!(s.header_deadline(t).is_some(), "the next request's first byte arms it");
    }

    #[test]
    fn no_cap_admits_everything() {
        let r = Registry::new(0, 80);
        let all: Vec<_> = (0..50).map(|_| accept(&r, ip("192.0.2.1")).0).collect();
        assert_eq!(r.open(), 50);
        drop(all);
        assert_eq!(r.open(), 0);
    }
}
