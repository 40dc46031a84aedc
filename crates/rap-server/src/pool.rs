//! The bounded worker pool: model work (decoding and embedding images, generating text) runs
//! on a fixed set of OS threads, never on the async runtime. Jobs wait in a queue of fixed
//! length; when every worker is busy and the queue is full, [`WorkerPool::run`] fails at once
//! with [`ApiError::busy`] (503 with `Retry-After`) instead of queueing without limit. A job
//! that waited in the queue longer than `max_wait` is not run but answered 503 too, so a
//! queue deeper than the pool's throughput turns into quick 503s, not time-outs.

use crate::ApiError;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A queued job; its argument says whether it may still run (`Err` when it waited too long).
type Job = Box<dyn FnOnce(Result<(), ApiError>) + Send>;

/// A fixed number of worker threads with a bounded queue in front of them.
pub struct WorkerPool {
    tx: SyncSender<(Instant, Job)>,
    workers: usize,
    queue: usize,
}

impl WorkerPool {
    /// `workers` threads (at least one) and room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> Self {
        Self::with_max_wait(workers, queue, Duration::from_secs(30))
    }

    /// As [`WorkerPool::new`]; jobs that waited longer than `max_wait` get a 503 instead.
    pub fn with_max_wait(workers: usize, queue: usize, max_wait: Duration) -> Self {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<(Instant, Job)>(queue);
        let rx: Arc<Mutex<Receiver<(Instant, Job)>>> = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rap-worker-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok((queued, job)) => {
                            let waited = queued.elapsed();
                            job(if waited > max_wait {
                                Err(ApiError {
                                    message: format!(
                                        "the server is busy: the request waited {} s for a worker; retry in a moment",
                                        waited.as_secs()
                                    ),
                                    ..ApiError::busy()
                                })
                            } else {
                                Ok(())
                            })
                        }
                        Err(_) => return, // the pool is gone
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("could not start worker thread {i}: {e}");
            }
        }
        WorkerPool { tx, workers, queue }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Queues `f` on a worker without waiting for it: `Err(busy)` when the pool is full. `f`
    /// gets `Err(busy)` instead of running when it waited in the queue too long.
    pub fn submit(
        &self,
        f: impl FnOnce(Result<(), ApiError>) + Send + 'static,
    ) -> Result<(), ApiError> {
        let job: Job = Box::new(move |admitted| {
            if std::panic::catch_unwind(AssertUnwindSafe(move || f(admitted))).is_err() {
                tracing::error!("a worker job panicked");
            }
        });
        match self.tx.try_send((Instant::now(), job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ApiError::busy()),
            Err(TrySendError::Disconnected(_)) => {
                Err(ApiError::internal("the worker pool stopped"))
            }
        }
    }

    /// Runs `f` on a worker and waits for its result. A panic in `f` becomes a 500.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.submit(move |admitted| {
            let _ = done.send(admitted.map(|()| f()));
        })?;
        result.await.map_err(|_| {
            ApiError::internal("the request's work failed unexpectedly (see the server log)")
        })?
    }

    /// Queues `f` without waiting for it (it is dropped unrun if it waited too long).
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) -> Result<(), ApiError> {
        self.submit(move |admitted| {
            if admitted.is_ok() {
                f()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_recovers() {
        let pool = WorkerPool::new(1, 1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        // Occupy the worker, then the one queue slot.
        pool.spawn(move || {
            started_tx.send(()).unwrap();
            wait.recv().unwrap();
        })
        .unwrap();
        started.recv().unwrap();
        pool.spawn(|| {}).unwrap();
        let e = pool.spawn(|| {}).unwrap_err();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.retry_after, Some(1));
        release.send(()).unwrap();
        // Once the worker is free again, work runs.
        let mut n = None;
        for _ in 0..100 {
            match pool.run(|| 41 + 1).await {
                Ok(v) => {
                    n = Some(v);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        assert_eq!(n, Some(42));
        // A panicking job is a 500, and the worker survives it.
        // A job that waited longer than max_wait is answered 503 instead of run.
        let slow = WorkerPool::with_max_wait(1, 4, std::time::Duration::from_millis(50));
        slow.spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)))
            .unwrap();
        let e = slow.run(|| 1).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 503, "{e}");
        assert!(e.message.contains("waited"), "{e}");
        let e = pool.run(|| -> u8 { panic!("boom") }).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 500);
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
