//! A cap on what one client address holds open on the public listener (issue 11 item 11), so
//! that one client cannot take every slot of `limits.max_connections` and lock everyone else
//! out.
//!
//! Two places count, depending on where the client address is known:
//! - Without `limits.client_address_header` the peer is the client: its *connections* are
//!   counted at accept, and one beyond the cap is closed before any byte is read (the same
//!   treatment as the global cap).
//! - With the header, the peer is the ingress, whose pooled connections carry many clients
//!   one request at a time, and which reads a request's headers before it forwards it. A
//!   client's held connections then reach the sidecar as that client's *requests in flight*,
//!   so those are counted, from the parsed headers to the end of the response, and one
//!   beyond the cap gets a 429 page and a closed connection. The ingress itself is never
//!   capped.
//!
//! Addresses are grouped the way one subscriber holds them: an IPv4-mapped IPv6 address
//! counts as its IPv4 address, and an IPv6 address by its /64 (one host gets a whole /64).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

pub struct ClientConnections {
    max: u32,
    /// Only addresses with at least one slot taken: bounded by the open connections.
    held: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection (or request) of one client; gives the slot back when dropped.
pub struct ClientSlot {
    owner: Arc<ClientConnections>,
    key: IpAddr,
}

impl ClientConnections {
    /// `max` slots per client address; 0 disables the cap.
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(ClientConnections {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.max != 0
    }

    /// Takes a slot for `ip`, or `None` when that client already holds `max`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let key = group(ip);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            owner: self.clone(),
            key,
        })
    }

    /// Slots `ip`'s group holds now.
    pub fn held(&self, ip: IpAddr) -> u32 {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&group(ip)).copied().unwrap_or(0)
    }

    /// Client addresses holding a slot now.
    pub fn clients(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The address a subscriber is counted under.
pub(crate) fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_client_is_capped_and_others_are_not() {
        let c = ClientConnections::new(2);
        let a1 = c.acquire(ip("192.0.2.1")).expect("first");
        let _a2 = c.acquire(ip("192.0.2.1")).expect("second");
        assert!(
            c.acquire(ip("192.0.2.1")).is_none(),
            "third from the same client is refused"
        );
        assert!(c.acquire(ip("192.0.2.2")).is_some(), "another client is not affected");
        drop(a1);
        assert!(
            c.acquire(ip("192.0.2.1")).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn slots_are_given_back_and_entries_removed() {
        let c = ClientConnections::new(3);
        let slots: Vec<_> = (0..3).map(|_| c.acquire(ip("192.0.2.9")).unwrap()).collect();
        assert_eq!(c.held(ip("192.0.2.9")), 3);
        drop(slots);
        assert_eq!(c.held(ip("192.0.2.9")), 0);
        assert_eq!(c.clients(), 0, "no entry is kept for a client with nothing open");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let c = ClientConnections::new(1);
        let _a = c.acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            c.acquire(ip("2001:db8:1:2:ffff::7")).is_none(),
            "another address of the same /64 is the same client"
        );
        assert!(
            c.acquire(ip("2001:db8:1:3::1")).is_some(),
            "another /64 is another client"
        );
        let _b = c.acquire(ip("198.51.100.4")).unwrap();
        assert!(
            c.acquire(ip("::ffff:198.51.100.4")).is_none(),
            "IPv4-mapped is the IPv4 address"
        );
    }
}
