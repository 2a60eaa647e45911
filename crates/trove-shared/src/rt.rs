//! The small tokio runtime the tier owns, and the blocking bridge into it.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

/// A two-worker tokio runtime. The workers drive sockets, timers and the background
/// tasks (lease renewal); a blocking call runs its future on the caller's thread.
#[derive(Debug)]
pub(crate) struct Rt {
    runtime: Option<Runtime>,
}

impl Rt {
    pub(crate) fn new() -> io::Result<Rt> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("trove-shared")
            .enable_all()
            .build()?;
        Ok(Rt {
            runtime: Some(runtime),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        self.runtime().handle()
    }

    fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives until Rt is dropped")
    }

    /// Runs `future` to completion on the calling thread. Called from inside an async
    /// context (where tokio forbids blocking), it runs on a scoped thread instead, so the
    /// blocking facade is safe to call from anywhere.
    pub(crate) fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        if Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| self.runtime().block_on(future))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        } else {
            self.runtime().block_on(future)
        }
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // Tasks still running (a lease's last release) get a moment to finish; inside an
        // async context, where tokio forbids blocking, they are dropped at once.
        if let Some(runtime) = self.runtime.take() {
            if Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_millis(200));
            }
        }
    }
}
