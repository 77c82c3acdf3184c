//! Rate limits on login starts. Every login start costs a PAR (two signatures, ~2 ms of CPU
//! with PS256, and a call to the bank), and anyone can make the app redirect to the AS by
//! loading its login URL. A global token bucket protects the banks and the CPU; an optional
//! per-client bucket (keyed by the peer address, or a trusted forwarded header) caps what one
//! client may start at all.
//!
//! The global bucket alone lets one client spend the whole budget: a flood from one address
//! made every other user's login start a 429 (issue 18 item 3). So the global budget is shared
//! fairly when it runs short: while the bucket holds more than [`RESERVE_FRACTION`] of its
//! burst anyone takes a token; below that, an address that has made more than its fair share
//! of recent login starts (the global rate divided by the addresses active in the last
//! [`WINDOW`]) is refused, and the reserve is left to the light addresses. A flood from one
//! address then drains the bucket only down to the reserve, and another user's login start
//! still finds a token. The usage table is a fixed-size, two-way set-associative array keyed
//! by a randomly seeded hash (bounded memory, O(1) per login, one short lock shared with the
//! bucket); a collision evicts the lighter entry, so a flooder keeps its count.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket { tokens: burst, at: now }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = self.at.max(now);
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which limit refused a login start (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The global bucket is empty.
    Global,
    /// The global bucket is down to its reserve and this address is over its fair share.
    FairShare,
    /// The per-client bucket (`limits.login_starts_per_client_per_minute`) is empty.
    Client,
}

impl Limited {
    pub fn label(self) -> &'static str {
        match self {
            Limited::Global => "global",
            Limited::FairShare => "fair_share",
            Limited::Client => "client",
        }
    }
}

/// Bounds the per-client map: beyond it, the idlest half is dropped (a flood of distinct
/// addresses then meets the global limit).
const MAX_CLIENTS: usize = 10_000;

/// The part of the global burst kept for addresses within their fair share.
pub const RESERVE_FRACTION: f64 = 0.2;
/// How far back an address's usage and the number of active addresses are counted.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Sets of the usage table; with [`WAYS`] entries each, 4,096 addresses are tracked at once
/// (about 100 KiB). More distinct addresses than that in a second is a distributed flood,
/// which the global bucket bounds.
const SETS: usize = 2048;
const WAYS: usize = 2;
/// The key of a login start without a client address (one group for all of them).
const NO_ADDRESS: u128 = u128::MAX;

/// Recent login starts of one address group; `window` 0 marks an empty slot.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    key: u128,
    window: u64,
    cur: u32,
    prev: u32,
}

impl Usage {
    /// Starts made in the last [`WINDOW`]: this window's plus the part of the previous one
    /// that the sliding window still covers.
    fn recent(&self, window: u64, frac: f64) -> f64 {
        if self.window == window {
            self.cur as f64 + self.prev as f64 * (1.0 - frac)
        } else if self.window + 1 == window {
            self.cur as f64 * (1.0 - frac)
        } else {
            0.0
        }
    }
}

/// The global bucket and the fair-share bookkeeping, under one lock so that the decision
/// and the accounting cannot interleave.
struct Shared {
    bucket: Bucket,
    table: Box<[Usage]>,
    /// The current window's number (1 from the limiter's start; 0 is "empty").
    window: u64,
    /// Distinct address groups seen in the current and the previous window.
    active_cur: u32,
    active_prev: u32,
}

pub struct LoginLimiter {
    /// Per second; 0 disables.
    global_rate: f64,
    /// Per second (configured per minute); 0 disables.
    client_rate: f64,
    origin: Instant,
    hasher: RandomState,
    shared: Mutex<Shared>,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

impl LoginLimiter {
    /// `per_second` for all login starts; `per_client_per_minute` for one client address.
    pub fn new(per_second: u32, per_client_per_minute: u32) -> Self {
        let now = Instant::now();
        LoginLimiter {
            global_rate: per_second as f64,
            client_rate: per_client_per_minute as f64 / 60.0,
            origin: now,
            hasher: RandomState::new(),
            shared: Mutex::new(Shared {
                bucket: Bucket::full(Self::burst(per_second as f64), now),
                table: vec![Usage::default(); SETS * WAYS].into_boxed_slice(),
                window: 1,
                active_cur: 0,
                active_prev: 0,
            }),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Two seconds' worth (at least one), so ordinary bursts pass.
    fn burst(rate: f64) -> f64 {
        (rate * 2.0).max(1.0)
    }

    /// Takes one login start for `client`; `Err` names the limit that refused it.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Limited> {
        if self.client_rate > 0.0 {
            if let Some(ip) = client {
                self.check_client(ip, now)?;
            }
        }
        if self.global_rate > 0.0 {
            self.check_global(client, now)?;
        }
        Ok(())
    }

    fn check_client(&self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        // A client gets a minute's worth of burst.
        let burst = (self.client_rate * 60.0).max(1.0);
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&ip) {
            let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            map.retain(|_, b| b.at > cutoff);
        }
        let b = map.entry(ip).or_insert_with(|| Bucket::full(burst, now));
        if b.take(self.client_rate, burst, now) {
            Ok(())
        } else {
            Err(Limited::Client)
        }
    }

    /// The global bucket with the fair-share rule (module doc). Every attempt counts
    /// towards its address's usage, refused ones included: a flooder that is being refused
    /// stays heavy.
    fn check_global(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Limited> {
        let burst = Self::burst(self.global_rate);
        let key = client.map_or(NO_ADDRESS, group_key);
        let set = (self.hasher.hash_one(key) as usize % SETS) * WAYS;
        let since = now.saturating_duration_since(self.origin).as_secs_f64();
        let window = 1 + (since / WINDOW.as_secs_f64()) as u64;
        let frac = (since / WINDOW.as_secs_f64()).fract();

        let mut g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *g;
        if window > s.window {
            s.active_prev = if window == s.window + 1 { s.active_cur } else { 0 };
            s.active_cur = 0;
            s.window = window;
        }
        let window = s.window;
        let slots = &mut s.table[set..set + WAYS];
        let way = match slots.iter().position(|u| u.window != 0 && u.key == key) {
            Some(w) => w,
            None => {
                // The empty or lighter way makes room: a heavy address is not evicted by
                // a passing one.
                let w = (0..WAYS)
                    .min_by(|a, b| {
                        slots[*a]
                            .recent(window, frac)
                            .total_cmp(&slots[*b].recent(window, frac))
                    })
                    .unwrap_or(0);
                slots[w] = Usage {
                    key,
                    ..Usage::default()
                };
                w
            }
        };
        let u = &mut slots[way];
        let used = u.recent(window, frac);
        if u.window != window {
            u.prev = if u.window + 1 == window { u.cur } else { 0 };
            u.cur = 0;
            u.window = window;
            s.active_cur = s.active_cur.saturating_add(1);
        }
        u.cur = u.cur.saturating_add(1);

        let active = s.active_cur.max(s.active_prev).max(1) as f64;
        let share = (self.global_rate * WINDOW.as_secs_f64() / active).max(1.0);
        s.bucket.refill(self.global_rate, burst, now);
        if s.bucket.tokens < 1.0 {
            return Err(Limited::Global);
        }
        if used > share && s.bucket.tokens - 1.0 < burst * RESERVE_FRACTION {
            return Err(Limited::FairShare);
        }
        s.bucket.tokens -= 1.0;
        Ok(())
    }
}

/// The group an address is counted under, as for connections: an IPv4 address (or an
/// IPv4-mapped IPv6 one) by itself, an IPv6 address by its /64 (one subscriber's prefix).
fn group_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

/// The client address for per-client limits: the rightmost entry of a trusted forwarded
/// header (the address the ingress itself saw), else the peer address.
pub fn client_ip(peer: Option<IpAddr>, forwarded: Option<&[u8]>) -> Option<IpAddr> {
    forwarded
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn global_bucket_allows_a_burst_then_the_rate() {
        let l = LoginLimiter::new(10, 0);
        let t0 = Instant::now();
        // Spread over addresses (none above its share): the whole burst is usable.
        let ok = (0..25u32)
            .filter(|i| l.check(Some(IpAddr::from((0x0a00_0000 + i).to_be_bytes())), t0).is_ok())
            .count();
        assert_eq!(ok, 20, "two seconds of burst");
        assert_eq!(l.check(Some(ip("10.9.9.9")), t0), Err(Limited::Global));
        assert!(
            l.check(Some(ip("10.9.9.9")), t0 + Duration::from_millis(150)).is_ok(),
            "refilled at 10/s"
        );
    }

    #[test]
    fn a_flood_from_one_address_leaves_the_reserve_to_others() {
        let l = LoginLimiter::new(10, 0);
        let t0 = Instant::now();
        let flooder = ip("203.0.113.7");
        let ok = (0..1000).filter(|_| l.check(Some(flooder), t0).is_ok()).count();
        assert_eq!(ok, 16, "the flooder drains the bucket down to the reserve (20 % of 20)");
        assert_eq!(l.check(Some(flooder), t0), Err(Limited::FairShare));
        for n in 1..=4 {
            assert!(
                l.check(Some(IpAddr::from([198, 51, 100, n])), t0).is_ok(),
                "light address {n} still gets a token"
            );
        }
        assert_eq!(
            l.check(Some(ip("198.51.100.9")), t0),
            Err(Limited::Global),
            "empty is empty"
        );
        // Refill goes to the light addresses first while the flooder keeps flooding.
        let t1 = t0 + Duration::from_millis(300);
        let flood = (0..1000).filter(|_| l.check(Some(flooder), t1).is_ok()).count();
        assert_eq!(flood, 0, "below the reserve the heavy address gets nothing");
        assert!(l.check(Some(ip("198.51.100.10")), t1).is_ok());
    }

    #[test]
    fn a_sustained_flood_keeps_another_address_working() {
        // 16 "threads" from one address at 1,000 attempts/s for 5 s, another user once a
        // second: every one of the user's login starts passes.
        let l = LoginLimiter::new(100, 0);
        let t0 = Instant::now();
        let (flooder, user) = (ip("192.0.2.1"), ip("192.0.2.200"));
        let mut flood_ok = 0;
        for ms in 0..5000u64 {
            let t = t0 + Duration::from_millis(ms);
            for _ in 0..16 {
                flood_ok += l.check(Some(flooder), t).is_ok() as u32;
            }
            if ms % 1000 == 500 {
                assert!(l.check(Some(user), t).is_ok(), "user's login at {ms} ms");
            }
        }
        // The flooder still gets the rate minus what light users take, not more.
        assert!((400..=700).contains(&flood_ok), "{flood_ok}");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        assert_eq!(group_key(ip("2001:db8:1:2::1")), group_key(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(group_key(ip("2001:db8:1:2::1")), group_key(ip("2001:db8:1:3::1")));
        assert_eq!(group_key(ip("::ffff:192.0.2.1")), group_key(ip("192.0.2.1")));
        assert_ne!(group_key(ip("192.0.2.1")), group_key(ip("192.0.2.2")));
        assert_ne!(group_key(ip("::")), NO_ADDRESS);
        // A flood rotating through one /64 is one heavy address.
        let l = LoginLimiter::new(10, 0);
        let t0 = Instant::now();
        let ok = (0..1000u16)
            .filter(|i| {
                l.check(Some(IpAddr::from([0x2001, 0xdb8, 0, 1, *i, 0, 0, 1])), t0)
                    .is_ok()
            })
            .count();
        assert_eq!(ok, 16);
        assert!(l.check(Some(ip("2001:db8:0:2::1")), t0).is_ok(), "another /64 is light");
    }

    #[test]
    fn usage_ages_out_and_the_table_stays_bounded() {
        let l = LoginLimiter::new(10, 0);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        while l.check(Some(a), t0).is_ok() {}
        // Two windows later the address is light again and the bucket has refilled.
        assert!(l.check(Some(a), t0 + WINDOW * 2).is_ok());
        // Distinct addresses never grow the table.
        let l = LoginLimiter::new(1_000_000, 0);
        for i in 0..50_000u32 {
            let _ = l.check(Some(IpAddr::from(i.to_be_bytes())), t0);
        }
        assert_eq!(l.shared.lock().unwrap().table.len(), SETS * WAYS);
    }

    #[test]
    fn one_client_cannot_use_up_the_global_budget() {
        let l = LoginLimiter::new(1000, 6);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        let ok = (0..20).filter(|_| l.check(Some(a), t0).is_ok()).count();
        assert_eq!(ok, 6);
        assert_eq!(l.check(Some(a), t0), Err(Limited::Client));
        assert!(l.check(Some(b), t0).is_ok(), "another client is unaffected");
        assert!(
            l.check(Some(a), t0 + Duration::from_secs(11)).is_ok(),
            "6 per minute refill"
        );
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let l = LoginLimiter::new(0, 0);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.check(Some("::1".parse().unwrap()), t0).is_ok()));
    }

    #[test]
    fn client_map_stays_bounded() {
        let l = LoginLimiter::new(0, 60);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 500) {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = l.check(Some(ip), t0 + Duration::from_micros(i as u64));
        }
        assert!(l.clients.lock().unwrap().len() <= MAX_CLIENTS);
    }

    #[test]
    fn forwarded_header_rightmost_entry() {
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            client_ip(Some(peer), Some(b"203.0.113.9, 198.51.100.7")),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(client_ip(Some(peer), Some(b"garbage")), Some(peer));
        assert_eq!(client_ip(Some(peer), None), Some(peer));
    }
}
