//! The public listener's connection guard: a cap on open connections and one total deadline
//! for a new connection's first request headers, so that a flood of idle or half-sent
//! connections cannot grow the sidecar past its memory limit (issue 11 item 11).
//!
//! Why a wrapping [`ServerApp`] and not pingora's `ConnectionFilter`: the filter (feature
//! `connection_filter`) only answers "accept?" per peer address and has no close hook, so it
//! cannot count open connections. pingora's HTTP/1 [`ServerApp`] serves a connection's whole
//! keep-alive life in one `process_new` call, so wrapping that call brackets the connection
//! exactly: a slot is taken at the start and given back by a drop guard when the call ends or
//! is cancelled (shutdown). A connection beyond the cap is dropped before any byte is read
//! (the kernel closes it at once).
//!
//! pingora's own read timeout (60 s) is per read, so a client that trickles a byte at a time
//! keeps a connection forever. The deadline here is total: the first request's headers must
//! be parsed (the proxy's `early_request_filter` marks it through a task-local) before it
//! expires, else the connection is closed. Later requests on a kept-alive connection are
//! governed by pingora's keep-alive timeout.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};

use super::client_connections::ClientConnections;

tokio::task_local! {
    static HEADERS_READ: Arc<AtomicBool>;
}

/// Marks the current connection's request headers as read (lifts the first-request deadline).
/// A no-op outside a guarded connection.
pub fn mark_headers_read() {
    let _ = HEADERS_READ.try_with(|f| f.store(true, Ordering::Relaxed));
}

pub struct ConnectionGuard<A> {
    inner: Arc<A>,
    /// 0: no cap.
    max: usize,
    header_timeout: Duration,
    open: AtomicUsize,
    refused: IntCounter,
    open_gauge: IntGauge,
    header_timeouts: IntCounter,
    /// Per-peer-address cap, counted at accept (only when the peer is the client).
    per_client: Option<(Arc<ClientConnections>, IntCounter)>,
}

impl<A> ConnectionGuard<A> {
    pub fn new(
        inner: A,
        max: usize,
        header_timeout: Duration,
        refused: IntCounter,
        open_gauge: IntGauge,
        header_timeouts: IntCounter,
    ) -> Self {
        ConnectionGuard {
            inner: Arc::new(inner),
            max,
            header_timeout,
            open: AtomicUsize::new(0),
            refused,
            open_gauge,
            header_timeouts,
            per_client: None,
        }
    }

    /// Also caps the connections one peer address holds (`refused` counts the closed ones).
    pub fn per_client(mut self, clients: Arc<ClientConnections>, refused: IntCounter) -> Self {
        if clients.enabled() {
            self.per_client = Some((clients, refused));
        }
        self
    }

    /// Takes a slot, or `None` when `max` are taken.
    fn acquire(&self) -> Option<Slot<'_, A>> {
        let taken = self.open.fetch_add(1, Ordering::AcqRel);
        if self.max != 0 && taken >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.open_gauge.inc();
        Some(Slot(self))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

struct Slot<'a, A>(&'a ConnectionGuard<A>);

impl<A> Drop for Slot<'_, A> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.open_gauge.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionGuard<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let Some(_slot) = self.acquire() else {
            self.refused.inc();
            drop(stream);
            return None;
        };
        let _client_slot = match &self.per_client {
            None => None,
            Some((clients, refused)) => {
                let peer = stream
                    .get_socket_digest()
                    .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
                match peer.map(|ip| clients.acquire(ip)) {
                    Some(None) => {
                        refused.inc();
                        drop(stream);
                        return None;
                    }
                    Some(slot) => slot,
                    // Not an IP peer (a Unix socket): nothing to group by.
                    None => None,
                }
            }
        };
        let headers_read = Arc::new(AtomicBool::new(false));
        let conn = HEADERS_READ.scope(headers_read.clone(), self.inner.process_new(stream, shutdown));
        tokio::pin!(conn);
        match pingora::prelude::timeout(self.header_timeout, &mut conn).await {
            Ok(reuse) => reuse,
            Err(_) if headers_read.load(Ordering::Relaxed) => conn.await,
            Err(_) => {
                // Dropping the future drops the session and closes the socket.
                self.header_timeouts.inc();
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stand-in app: reads until "\r\n\r\n", marks the headers read, answers, then waits
    /// for the client to close.
    struct Echo;

    #[async_trait]
    impl ServerApp for Echo {
        async fn process_new(self: &Arc<Self>, mut s: Stream, _shutdown: &ShutdownWatch) -> Option<Stream> {
            let mut buf = Vec::new();
            let mut b = [0u8; 64];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            }
            mark_headers_read();
            s.write_all(b"ok").await.ok()?;
            s.flush().await.ok()?;
            let _ = s.read(&mut b).await;
            None
        }
    }

    fn bare_guard(max: usize, timeout_ms: u64) -> ConnectionGuard<Echo> {
        ConnectionGuard::new(
            Echo,
            max,
            Duration::from_millis(timeout_ms),
            IntCounter::new("r", "r").unwrap(),
            IntGauge::new("o", "o").unwrap(),
            IntCounter::new("t", "t").unwrap(),
        )
    }

    fn guard(max: usize, timeout_ms: u64) -> Arc<ConnectionGuard<Echo>> {
        Arc::new(bare_guard(max, timeout_ms))
    }

    /// A connected client and the server side, with the peer address in the socket digest
    /// as pingora's listener sets it.
    async fn pair() -> (tokio::net::TcpStream, Stream) {
        use pingora::protocols::{GetSocketDigest, SocketDigest};
        use std::os::fd::AsRawFd;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let mut s = pingora::protocols::l4::stream::Stream::from(s);
        s.set_socket_digest(SocketDigest::from_raw_fd(s.as_raw_fd()));
        (c, Box::new(s))
    }

    #[tokio::test]
    async fn refuses_beyond_the_cap_and_frees_slots_on_close() {
        let g = guard(1, 5_000);
        let (_w, shutdown) = tokio::sync::watch::channel(false);
        let (mut c1, s1) = pair().await;
        let g1 = g.clone();
        let sd = shutdown.clone();
        let first = tokio::spawn(async move { g1.process_new(s1, &sd).await });
        c1.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut b = [0u8; 2];
        c1.read_exact(&mut b).await.unwrap();
        assert_eq!(g.open(), 1);

        // Over the cap: closed without a byte read or written.
        let (mut c2, s2) = pair().await;
        assert!(g.process_new(s2, &shutdown).await.is_none());
        assert_eq!(g.refused.get(), 1);
        let mut rest = Vec::new();
        assert_eq!(c2.read_to_end(&mut rest).await.unwrap_or(0), 0);

        drop(c1);
        first.await.unwrap();
        assert_eq!(g.open(), 0);
        assert_eq!(g.open_gauge.get(), 0);
    }

    #[tokio::test]
    async fn one_peer_address_is_capped_at_accept() {
        let clients = ClientConnections::new(1);
        let g = Arc::new(bare_guard(0, 5_000).per_client(clients.clone(), IntCounter::new("c", "c").unwrap()));
        let (_w, shutdown) = tokio::sync::watch::channel(false);
        let (mut c1, s1) = pair().await;
        let (g1, sd) = (g.clone(), shutdown.clone());
        let first = tokio::spawn(async move { g1.process_new(s1, &sd).await });
        c1.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut b = [0u8; 2];
        c1.read_exact(&mut b).await.unwrap();
        assert_eq!(clients.held("127.0.0.1".parse().unwrap()), 1);

        // A second connection from the same address: closed at once, global slot given back.
        let (mut c2, s2) = pair().await;
        assert!(g.process_new(s2, &shutdown).await.is_none());
        assert_eq!(g.per_client.as_ref().unwrap().1.get(), 1);
        assert_eq!(g.open(), 1);
        let mut rest = Vec::new();
        assert_eq!(c2.read_to_end(&mut rest).await.unwrap_or(0), 0);

        // Once the first closes, the address may connect again.
        drop(c1);
        first.await.unwrap();
        assert_eq!(clients.held("127.0.0.1".parse().unwrap()), 0);
        let (mut c3, s3) = pair().await;
        let (g3, sd) = (g.clone(), shutdown.clone());
        let third = tokio::spawn(async move { g3.process_new(s3, &sd).await });
        c3.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        c3.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ok");
        drop(c3);
        third.await.unwrap();
    }

    #[tokio::test]
    async fn a_trickled_first_request_is_cut_at_the_total_deadline() {
        let g = guard(0, 300);
        let (_w, shutdown) = tokio::sync::watch::channel(false);
        let (mut c, s) = pair().await;
        let g1 = g.clone();
        let sd = shutdown.clone();
        let served = tokio::spawn(async move { g1.process_new(s, &sd).await });
        // One byte every 100 ms: each read is quick, the headers never complete in time.
        for b in b"GET / HTTP/1.1\r\nX: y" {
            if c.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if served.is_finished() {
                break;
            }
        }
        served.await.unwrap();
        assert_eq!(g.header_timeouts.get(), 1);
        assert_eq!(g.open(), 0);
    }

    #[tokio::test]
    async fn the_deadline_does_not_cut_a_connection_whose_headers_arrived() {
        let g = guard(0, 200);
        let (_w, shutdown) = tokio::sync::watch::channel(false);
        let (mut c, s) = pair().await;
        let g1 = g.clone();
        let sd = shutdown.clone();
        let served = tokio::spawn(async move { g1.process_new(s, &sd).await });
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !served.is_finished(),
            "a served connection outlives the header deadline"
        );
        drop(c);
        served.await.unwrap();
        assert_eq!(g.header_timeouts.get(), 0);
    }
}
