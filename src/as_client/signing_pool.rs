//! Where RSA signatures run: a few threads at a lower CPU priority than the proxy.
//!
//! A PS256 signature costs a few hundred microseconds of CPU and a login needs two, so a
//! burst of logins can keep every core busy. On tokio's blocking pool those signers compete
//! with the proxy's worker threads as equals, and a pass-through request waits behind them
//! for a scheduler slice. Here there is one signing thread per core (so logins still use
//! every core), each at `nice` +10: the kernel gives a runnable proxy thread about nine
//! times a signer's share, so signing takes the idle CPU and yields to the proxy.
//! Lowering a thread's own priority needs no privilege. ES256 and Ed25519 signatures
//! (~15 us) are cheaper than the hand-off and stay inline; ES384/ES512 cost as much as RSA
//! and come here too (`Alg::signs_slowly`).
//!
//! Work nobody waits for (topping up the client-assertion pools) runs on one more thread at
//! `nice` +19, below the signatures a login is waiting for: proxy > login > refill.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// Niceness of the signing threads (0 is the proxy's; 19 the lowest).
const SIGNER_NICE: i32 = 10;
/// Niceness of the background thread.
const BACKGROUND_NICE: i32 = 19;

static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

fn pool() -> &'static mpsc::Sender<Job> {
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("par-signer-{i}"))
                .spawn(move || {
                    lower_priority(SIGNER_NICE);
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        // A panicking job drops its result sender (the caller gets `None`);
                        // the thread lives on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("spawning a signing thread");
        }
        tx
    })
}

/// Lowers the calling thread's priority (Linux: `setpriority` on a thread id is per thread).
pub(crate) fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; failure (e.g. a seccomp profile) only
    // leaves the priority as is.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!("could not lower a thread's priority");
        }
    }
}

/// Queues `work` on the background thread (nice +19), started at first use; `false` if it
/// could not be queued. A panic in `work` is contained.
pub fn spawn_background(work: impl FnOnce() + Send + 'static) -> bool {
    static BACKGROUND: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = BACKGROUND.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("par-signer-background".into())
            .spawn(move || {
                lower_priority(BACKGROUND_NICE);
                for job in rx {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .ok()
            .map(|_| tx)
    });
    tx.as_ref().is_some_and(|tx| tx.send(Box::new(work)).is_ok())
}

/// Runs `work` on a signing thread and waits for its result without blocking the caller's
/// event loop. `None` if the work panicked.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(work());
    });
    pool().send(job).ok()?;
    rx.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_off_the_caller_at_a_lower_priority() {
        let (name, nice) = run(|| {
            let name = std::thread::current().name().map(str::to_string);
            // SAFETY: reads the calling thread's own priority.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t) };
            (name, nice)
        })
        .await
        .expect("result");
        assert!(name.is_some_and(|n| n.starts_with("par-signer-")));
        assert!(nice >= SIGNER_NICE, "signing thread nice {nice}");
    }

    #[tokio::test]
    async fn a_panicking_job_yields_none_and_the_pool_keeps_working() {
        assert!(run(|| -> u8 { panic!("boom") }).await.is_none());
        let mut answers = Vec::new();
        for i in 0..8u32 {
            answers.push(run(move || i * 2).await);
        }
        assert_eq!(answers, (0..8).map(|i| Some(i * 2)).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn background_work_runs_below_the_signers() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(spawn_background(move || {
            // SAFETY: reads the calling thread's own priority.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t) };
            let _ = tx.send(nice);
        }));
        assert!(spawn_background(|| panic!("contained")));
        assert_eq!(rx.await.unwrap(), BACKGROUND_NICE);
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(
            spawn_background(move || {
                let _ = tx.send(1);
            }),
            "still serving after a panic"
        );
        assert_eq!(rx.await.unwrap(), 1);
    }
}
