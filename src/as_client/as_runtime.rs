//! The runtime the AS client's HTTP work runs on, apart from the proxy's event loops.
//!
//! A login's PAR costs the sidecar about 200 us of TLS and HTTP work besides its
//! signatures. On the proxy's event loop that work sits in the same queue as every
//! pass-through request, so a burst of logins adds its whole cost to their latency. Here
//! every call to an AS (discovery, JWKS, PAR, and the app's token and resource calls through
//! the egress listener) runs as a task on this runtime's own threads, and the caller only
//! awaits its result. It also pins reqwest's pooled connections to one runtime: a
//! connection's I/O task runs where the connection was opened, which used to be whichever
//! service (discovery, proxy, egress) happened to open it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

static THREADS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// Set on the runtime's own threads: work already there is awaited in place.
    static ON_AS_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Niceness of the AS client's threads: below the proxy (0), above the signatures (+10)
/// that a login waits for next.
pub(crate) const AS_CLIENT_NICE: i32 = 5;

/// Sets the number of worker threads (the proxy's `--threads`); effective only before the
/// first call to an AS.
pub fn configure(threads: usize) {
    THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// The runtime, built at first use; `None` if it cannot be (no threads left, e.g. a pids
/// cgroup limit): callers then fail closed instead of panicking on the proxy's thread.
fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Some(rt);
    }
    // One builder at a time: a runtime built in vain could not be dropped in async context.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Some(rt);
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS.load(Ordering::Relaxed))
        .thread_name("par-as-client")
        .on_thread_start(|| {
            ON_AS_RUNTIME.with(|f| f.set(true));
            crate::as_client::signing_pool::lower_priority(AS_CLIENT_NICE)
        })
        .enable_all()
        .build();
    match built {
        Ok(rt) => Some(RUNTIME.get_or_init(|| rt)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the AS client runtime");
            None
        }
    }
}

/// Runs `fut` on the AS client runtime and waits for it. Dropping the returned future (the
/// browser went away, a timeout fired) cancels the task. `None` if the task panicked or the
/// runtime could not be started. Called on the runtime itself (a login start's PAR call),
/// `fut` is awaited in place: a panic then unwinds to the enclosing task, whose own `run`
/// turns it into `None`.
pub async fn run<F>(fut: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if ON_AS_RUNTIME.with(|f| f.get()) {
        return Some(fut.await);
    }
    AbortOnDrop(runtime()?.spawn(fut)).await.ok()
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_on_its_own_threads_below_the_proxy() {
        let caller = std::thread::current().id();
        let (name, id, nice) = run(async {
            let t = std::thread::current();
            // SAFETY: reads the calling thread's own priority.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t) };
            (t.name().map(str::to_string), t.id(), nice)
        })
        .await
        .expect("result");
        assert_eq!(name.as_deref(), Some("par-as-client"));
        assert_ne!(id, caller);
        assert!(nice >= AS_CLIENT_NICE, "AS client thread nice {nice}");
    }

    #[tokio::test]
    async fn a_panic_is_none_and_dropping_the_caller_cancels_the_task() {
        assert!(run(async { panic!("contained") }).await.is_none());

        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let slow = run(async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        // The caller gives up after 50 ms: the task must not run on for 30 s.
        assert!(tokio::time::timeout(Duration::from_millis(50), slow).await.is_err());
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(dropped.load(Ordering::SeqCst), "the task was not cancelled");
        assert_eq!(run(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn nested_work_is_awaited_in_place_not_spawned_again() {
        let (outer, inner) = run(async {
            let outer = tokio::task::id();
            (outer, run(async { tokio::task::id() }).await)
        })
        .await
        .expect("result");
        assert_eq!(inner, Some(outer));
    }
}
