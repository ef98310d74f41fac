//! A component on a thread of its own: a current-thread tokio runtime that runs one future —
//! a controller's driver with its watches, its requests and its client's connections — so that
//! none of its wake-ups cross threads or wait behind another component's tasks.
//!
//! Why: in `scheduler_perf` (b) the whole process spent about 15% less CPU per pod with the
//! scheduler, the volume controller and the fake nodes each on a runtime of its own than with
//! them sharing the API server's runtime (`BENCH_SHARED=1`); `bonsai up` runs every in-process
//! controller this way (`Cluster::spawn_dedicated`), as Kubernetes runs each controller in a
//! process of its own. The client must be built
//! inside the future (`make`): a `kube::Client` serves its requests on the runtime it was
//! built on.

use std::future::Future;

use tokio::sync::oneshot;

/// Runs `make()`'s future on a new thread named `name` (its own current-thread runtime) and
/// returns a future of its output. The future resolves with `None` when the thread could not
/// be started or its runtime built, or the component panicked.
pub fn spawn<T, F, Fut>(name: &str, make: F) -> impl Future<Output = Option<T>> + Send
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let (tx, rx) = oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build a component runtime");
                    return;
                }
            };
            let out = runtime.block_on(make());
            let _ = tx.send(out);
        });
    if let Err(e) = &started {
        tracing::error!(error = %e, "cannot start a component thread");
    }
    async move { rx.await.ok() }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_the_future_on_a_named_thread_of_its_own() {
        let caller = std::thread::current().id();
        let out = super::spawn("bonsai-test-comp", move || async move {
            // A runtime of its own: spawned tasks run there too.
            let inner = tokio::spawn(async { 20 }).await.unwrap_or(0);
            let me = std::thread::current();
            (me.name().map(str::to_string), me.id() != caller, inner + 1)
        })
        .await;
        assert_eq!(out, Some((Some("bonsai-test-comp".to_string()), true, 21)));
    }
}
