//! What a listener's connection guard and its header-size stream adapter share: limits,
//! counters and the log gate. Apart from both so neither imports the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};

use crate::protocol::InteractionId;

/// One listener's counters.
pub struct GuardMetrics {
    /// Connections closed at accept: the cap full of requests in flight, or the address over
    /// its share with nothing idle to replace.
    pub refused: IntCounter,
    pub open: IntGauge,
    pub header_timeouts: IntCounter,
    /// Idle connections closed to make room for a new one.
    pub evicted: IntCounter,
    pub headers_too_large: IntCounter,
}

/// At most one log line per second per listener for connection-level events: a flood of
/// thousands of sockets must not become a flood of log lines. The line says how many were
/// left out.
pub(crate) struct LogGate {
    epoch: Instant,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogGate {
    pub(crate) fn new() -> Self {
        LogGate {
            epoch: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` when a line may be written now.
    fn admit(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + 1000, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// What the guard and its stream adapter share: limits, counters, the log gate.
pub struct GuardCore {
    pub(crate) listener: &'static str,
    pub(crate) max_header_bytes: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) metrics: GuardMetrics,
    pub(crate) gate: LogGate,
}

impl GuardCore {
    pub(crate) fn event(&self, what: &'static str) {
        if let Some(suppressed) = self.gate.admit() {
            let id = InteractionId::new();
            tracing::warn!(interaction_id = %id, listener = self.listener, suppressed, "{what}");
        }
    }

    /// Counted and logged by the adapter, which wrote the page naming `id`.
    pub(crate) fn headers_too_large(&self, id: InteractionId) {
        self.metrics.headers_too_large.inc();
        if let Some(suppressed) = self.gate.admit() {
            tracing::warn!(
                interaction_id = %id,
                listener = self.listener,
                limit = self.max_header_bytes,
                suppressed,
                "request headers over limits.max_request_header_bytes: 431 request_headers_too_large, connection closed"
            );
        }
    }
}
