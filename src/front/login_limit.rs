//! Rate limits on login starts. Every login start costs a PAR (two signatures, ~2 ms of CPU
//! with PS256, and a call to the bank), and anyone can make the app redirect to the AS by
//! loading its login URL. A global token bucket protects the banks and the CPU; an optional
//! per-client bucket (keyed by the peer address, or a trusted forwarded header) keeps one
//! client from using up the global budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

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

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
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
    Global,
    Client,
}

impl Limited {
    pub fn label(self) -> &'static str {
        match self {
            Limited::Global => "global",
            Limited::Client => "client",
        }
    }
}

/// Bounds the per-client map: beyond it, the idlest half is dropped (a flood of distinct
/// addresses then meets the global limit).
const MAX_CLIENTS: usize = 10_000;

pub struct LoginLimiter {
    /// Per second; 0 disables.
    global_rate: f64,
    /// Per second (configured per minute); 0 disables.
    client_rate: f64,
    global: Mutex<Bucket>,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

impl LoginLimiter {
    /// `per_second` for all login starts; `per_client_per_minute` for one client address.
    pub fn new(per_second: u32, per_client_per_minute: u32) -> Self {
        let now = Instant::now();
        LoginLimiter {
            global_rate: per_second as f64,
            client_rate: per_client_per_minute as f64 / 60.0,
            global: Mutex::new(Bucket::full(Self::burst(per_second as f64), now)),
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
                if !b.take(self.client_rate, burst, now) {
                    return Err(Limited::Client);
                }
            }
        }
        if self.global_rate > 0.0 {
            let mut g = self.global.lock().unwrap_or_else(|e| e.into_inner());
            if !g.take(self.global_rate, Self::burst(self.global_rate), now) {
                return Err(Limited::Global);
            }
        }
        Ok(())
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
    use std::time::Duration;

    #[test]
    fn global_bucket_allows_a_burst_then_the_rate() {
        let l = LoginLimiter::new(10, 0);
        let t0 = Instant::now();
        let ok = (0..25).filter(|_| l.check(None, t0).is_ok()).count();
        assert_eq!(ok, 20, "two seconds of burst");
        assert_eq!(l.check(None, t0), Err(Limited::Global));
        assert!(
            l.check(None, t0 + Duration::from_millis(150)).is_ok(),
            "refilled at 10/s"
        );
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
