//! Every listener's connection guard (public, admin, egress): a cap on open connections, a
//! total header deadline for every request, a cap on a request's header bytes, and at the cap
//! the eviction of idle connections with a fair share per address (issues 11 item 11 and 18
//! item 2), so that a flood of idle, half-sent or growing connections can neither grow the
//! sidecar past its memory limit nor lock other clients out.
//!
//! Why a wrapping [`ServerApp`] and not pingora's `ConnectionFilter`: the filter (feature
//! `connection_filter`) only answers "accept?" per peer address and has no close hook, so it
//! cannot count open connections. pingora's HTTP/1 [`ServerApp`] serves a connection's whole
//! keep-alive life in one `process_new` call, so wrapping that call brackets the connection
//! exactly: a registry entry is taken at the start and given back by a drop guard when the
//! call ends or is cancelled (shutdown, eviction, a deadline).
//!
//! pingora's read timeouts (60 s) are per read, so a client that trickles a byte at a time
//! keeps a connection forever, on its first request or any later one. The deadline here is
//! total and re-armed per request: a connection's first request's headers must be parsed
//! within `timeouts.first_request_headers_ms` of accept, each later one's within the same
//! time of its first byte. The proxy marks a request's start (`early_request_filter`) and end
//! (`logging`) through a task-local ([`mark_headers_read`], [`mark_request_done`]); between
//! the two no deadline runs, and the wait for a kept-alive connection's next request is
//! pingora's keep-alive timeout (60 s, per read: nothing arrives in it).

use std::future::Future;
use std::net::IpAddr;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};

use super::client_connections::ClientConnections;
use super::conn_registry::{Admission, CloseReason, ConnState, Registry};
use super::guard_core::GuardMetrics;
use super::guard_core::{GuardCore, LogGate};
use super::header_limit::HeaderLimited;

tokio::task_local! {
    static CONN: Arc<ConnState>;
}

/// Marks the current connection's request headers as read: lifts its header deadline and
/// header byte cap until [`mark_request_done`]. A no-op outside a guarded connection.
pub fn mark_headers_read() {
    let _ = CONN.try_with(|c| c.request_started());
}

/// Marks the current connection's request as answered: the connection is idle (evictable at
/// the cap) and its next request's header deadline and byte cap start with its first byte.
/// Called from the proxy's `logging` phase, which pingora runs once per request on every
/// path (served, answered by a filter, failed). A no-op outside a guarded connection.
pub fn mark_request_done() {
    let _ = CONN.try_with(|c| c.request_done());
}

pub struct ConnectionGuard<A> {
    inner: Arc<A>,
    core: Arc<GuardCore>,
    registry: Arc<Registry>,
    /// Per-peer-address hard cap, counted at accept (only when the peer is the client).
    per_client: Option<(Arc<ClientConnections>, IntCounter)>,
}

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    pub listener: &'static str,
    /// 0: no cap.
    pub max_connections: usize,
    pub pressure_percent: u8,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
}

impl<A> ConnectionGuard<A> {
    pub fn new(inner: A, limits: GuardLimits, metrics: GuardMetrics) -> Self {
        ConnectionGuard {
            inner: Arc::new(inner),
            core: Arc::new(GuardCore {
                listener: limits.listener,
                max_header_bytes: limits.max_header_bytes,
                header_timeout: limits.header_timeout,
                metrics,
                gate: LogGate::new(),
            }),
            registry: Registry::new(limits.max_connections, limits.pressure_percent),
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

    /// Connections open now (an evicted one no longer counts).
    pub fn open(&self) -> usize {
        self.registry.open()
    }

    /// Races the connection against its header deadline and against a request from outside
    /// (eviction, oversized headers) to close it; re-armed on every wake-up.
    async fn watch(&self, conn: impl Future<Output = Option<Stream>>, state: &ConnState) -> Option<Stream> {
        tokio::pin!(conn);
        loop {
            if let Some(reason) = state.close_reason() {
                // Counted where decided (registry admission, the adapter); dropping the
                // future drops the session and closes the socket.
                if reason == CloseReason::Evicted {
                    tracing::debug!(listener = self.core.listener, "idle connection evicted");
                }
                return None;
            }
            let deadline = state.header_deadline(self.core.header_timeout);
            if deadline.is_some_and(|d| d <= Instant::now()) {
                self.core.metrics.header_timeouts.inc();
                self.core
                    .event("request headers not complete within timeouts.first_request_headers_ms: connection closed");
                return None;
            }
            let wake = state.wake.notified();
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                reuse = &mut conn => return reuse,
                _ = wake => {}
                _ = timer => {}
            }
        }
    }
}

/// Counts the connection out of the open gauge when its task ends.
struct OpenGauge<'a>(&'a IntGauge);

impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionGuard<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        // Not an IP peer (a Unix socket): nothing to group by.
        let peer = peer_ip(&stream);
        // The hard per-address cap first: a connection it refuses must not evict anyone.
        let _client_slot = match (&self.per_client, peer) {
            (Some((clients, refused)), Some(ip)) => match clients.acquire(ip) {
                None => {
                    refused.inc();
                    return None;
                }
                slot => slot,
            },
            _ => None,
        };
        let entry = match self.registry.admit(peer) {
            Admission::Accepted { entry, evicted } => {
                if evicted {
                    self.core.metrics.evicted.inc();
                    self.core
                        .event("listener full: oldest idle connection closed for a new one");
                }
                entry
            }
            Admission::Refused => {
                self.core.metrics.refused.inc();
                self.core.event(
                    "connection refused at accept: every slot has a request in flight, or the address holds its share",
                );
                return None;
            }
        };
        self.core.metrics.open.inc();
        let _open = OpenGauge(&self.core.metrics.open);
        let state = entry.state.clone();
        let stream: Stream = Box::new(HeaderLimited::new(stream, state.clone(), self.core.clone()));
        let conn = CONN.scope(state.clone(), self.inner.process_new(stream, shutdown));
        let reuse = self.watch(conn, &state).await;
        drop(entry);
        reuse
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
