//! The relay: claims committed rows, publishes them, and settles them.
//!
//! See `ARCHITECTURE.md` for the claim protocol and why it keeps per-key order.

mod builder;
mod cycle;
mod gauges;
mod health;
mod lease;
mod rounds;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::builder::{RelayBuilder, RelayConfig};
pub use self::cycle::BatchReport;
use self::gauges::Gauges;
pub use self::health::Health;
use self::health::HealthCell;
use crate::error::{Error, Result};
use crate::publisher::Publisher;
use crate::store::Store;

/// Wakes a relay at once, instead of at its next poll. Cheap to clone; call
/// [`wake`](WakeHandle::wake) after committing a transaction that enqueued messages.
#[derive(Debug, Clone, Default)]
pub struct WakeHandle(Arc<Notify>);

impl WakeHandle {
    /// A handle not yet attached to a relay (attach it with [`RelayBuilder::wake_handle`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes one idle loop of the relay, or, when every loop is busy, the next one to finish
    /// its batch. One loop per commit is enough: a loop that claims a full batch claims again
    /// at once, and waking them all would send the others to claim nothing.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Moves committed messages from an outbox [`Store`] to a [`Publisher`].
///
/// ```no_run
/// # use outbox_core as outbox_sqlx;
/// # async fn demo<S: outbox_core::Store, P: outbox_core::Publisher>(store: S, publisher: P)
/// # -> outbox_core::Result<()> {
/// use outbox_sqlx::Relay; // or the adapter you use: every adapter re-exports the core
/// use tokio_util::sync::CancellationToken;
///
/// let shutdown = CancellationToken::new();
/// let relay = Relay::builder(store, publisher).batch_size(500).build()?;
/// let wake = relay.wake_handle(); // hand this to producers
/// relay.run(shutdown.cancelled()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Relay<S, P> {
    inner: Arc<Inner<S, P>>,
}

impl<S, P> Clone for Relay<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What the loops of one [`Relay::drain`] share.
#[derive(Debug, Default)]
struct DrainState {
    /// Loops with a batch in flight.
    busy: AtomicUsize,
    /// Told whenever a loop's batch ends.
    batch_ended: Notify,
    /// Cancelled by the first loop that fails, so the others give their batches back.
    stop: CancellationToken,
}

#[derive(Debug)]
struct Inner<S, P> {
    store: S,
    publisher: P,
    config: RelayConfig,
    wake: WakeHandle,
    health: HealthCell,
    gauges: Option<Gauges>,
}

impl<S: Store, P: Publisher> Relay<S, P> {
    /// Starts building a relay over `store` and `publisher`.
    pub fn builder(store: S, publisher: P) -> RelayBuilder<S, P> {
        RelayBuilder::new(store, publisher)
    }

    fn from_parts(
        store: S,
        publisher: P,
        config: RelayConfig,
        wake: WakeHandle,
        gauges: Option<Gauges>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                publisher,
                config,
                wake,
                health: HealthCell::default(),
                gauges,
            }),
        }
    }

    /// The handle that wakes this relay.
    pub fn wake_handle(&self) -> WakeHandle {
        self.inner.wake.clone()
    }

    /// The relay's health now: when a claim last succeeded, and what is failing.
    pub fn health(&self) -> Health {
        self.inner.health.get()
    }

    /// A receiver told of every change of [`health`](Relay::health) (a batch that fails after
    /// successes, a broker that goes away or comes back).
    pub fn watch_health(&self) -> tokio::sync::watch::Receiver<Health> {
        self.inner.health.subscribe()
    }

    /// The settings in force.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The publisher.
    pub fn publisher(&self) -> &P {
        &self.inner.publisher
    }

    /// Runs until `shutdown` completes, then stops claiming, lets in-flight batches finish
    /// (releasing what they have not published yet) and returns.
    ///
    /// Database and broker outages are waited out with backoff, and reported by
    /// [`health`](Relay::health); they end the run only with
    /// [`give_up_after`](RelayBuilder::give_up_after).
    ///
    /// # Errors
    ///
    /// Errors an operator must fix: [`Error::MissingTable`]; and [`Error::GaveUp`] when every
    /// batch failed for longer than `give_up_after`.
    ///
    /// Each of the [`concurrency`](RelayBuilder::concurrency) loops runs as a task of its own,
    /// so a store or publisher call that blocks its thread stalls only its loop.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for worker in 0..self.inner.config.concurrency {
            let (relay, cancel) = (self.clone(), cancel.clone());
            tasks.spawn(async move { relay.worker(worker, &cancel).await });
        }
        if self.inner.gauges.is_some() {
            let (relay, cancel) = (self.clone(), cancel.clone());
            tasks.spawn(async move {
                if let Some(gauges) = &relay.inner.gauges {
                    gauges.run(&cancel).await;
                }
                Ok(())
            });
        }
        // Dropping the set (when `run` returns) aborts any loop still running.
        let workers = async {
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        cancel.cancel();
                        return Err(err);
                    }
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    Err(_) => {}
                }
            }
            Ok(())
        };
        tokio::pin!(workers);
        tokio::pin!(shutdown);
        tokio::select! {
            result = &mut workers => result,
            () = &mut shutdown => {
                cancel.cancel();
                match tokio::time::timeout(self.inner.config.shutdown_grace, &mut workers).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(
                            grace = ?self.inner.config.shutdown_grace,
                            "relay shutdown grace elapsed; in-flight leases will expire"
                        );
                        Ok(())
                    }
                }
            }
        }
    }

    /// Publishes everything that is ready now and returns the number of messages published.
    /// Messages waiting for a retry are left for later.
    ///
    /// Runs the relay's [`concurrency`](RelayBuilder::concurrency) claim → publish → settle
    /// loops at once, as [`run`](Relay::run) does, and returns when a claim finds nothing
    /// while no other loop has a batch in flight (a batch in flight may give rows back).
    ///
    /// # Errors
    ///
    /// A store error, [`Error::BrokerUnavailable`] when the broker is unavailable (nothing is
    /// lost: the messages stay in the outbox), or [`Error::PublisherContract`]. The first
    /// error stops every loop: batches in flight give back what they have not published yet.
    pub async fn drain(&self) -> Result<u64> {
        let state = Arc::new(DrainState::default());
        let mut loops = JoinSet::new();
        for _ in 0..self.inner.config.concurrency {
            let (relay, state) = (self.clone(), Arc::clone(&state));
            loops.spawn(async move {
                let result = relay.drain_loop(&state).await;
                if result.is_err() {
                    state.stop.cancel();
                }
                result
            });
        }
        let mut published = 0;
        let mut first_error = None;
        while let Some(joined) = loops.join_next().await {
            match joined {
                Ok(Ok(n)) => published += n,
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(_) => {}
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(published),
        }
    }

    /// One loop of [`drain`](Relay::drain): claims until a claim finds nothing and no other
    /// loop is busy. A claim that finds nothing while another loop is busy waits for a batch
    /// to end and claims again, since that batch may give rows back or free keys it held; the
    /// end of a claim that found nothing wakes nobody (two idle loops would otherwise wake each
    /// other for ever), except the last loop's, which lets the waiting ones finish too.
    async fn drain_loop(&self, state: &DrainState) -> Result<u64> {
        let mut published = 0;
        loop {
            if state.stop.is_cancelled() {
                return Ok(published);
            }
            // Registered before the claim, so a batch that ends during it is not missed.
            let ended = state.batch_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            state.busy.fetch_add(1, Ordering::SeqCst);
            let result = self.process_batch(&state.stop).await;
            let others_busy = state.busy.fetch_sub(1, Ordering::SeqCst) - 1;
            let claimed = result.as_ref().map_or(0, |report| report.claimed);
            if claimed > 0 || others_busy == 0 {
                state.batch_ended.notify_waiters();
            }
            let report = result?;
            published += report.published;
            if report.broker_unavailable {
                return Err(Error::BrokerUnavailable {
                    reason: report
                        .broker_error
                        .unwrap_or_else(|| "no reason given".to_owned()),
                });
            }
            if report.claimed == 0 {
                if others_busy == 0 {
                    return Ok(published);
                }
                tokio::select! {
                    () = &mut ended => {}
                    () = state.stop.cancelled() => return Ok(published),
                }
            }
        }
    }

    async fn worker(&self, worker: usize, cancel: &CancellationToken) -> Result<()> {
        let config = &self.inner.config;
        let (initial, max) = config.unavailable_backoff;
        let mut backoff = initial;
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            // Created before the claim, so a commit that lands while we claim still wakes us.
            let notified = self.inner.wake.0.notified();
            let pause = match self.process_batch(cancel).await {
                Ok(report) if report.broker_unavailable => {
                    self.inner
                        .health
                        .batch_done(report.broker_error.as_deref().or(Some("no reason given")));
                    let pause = backoff;
                    backoff = (backoff * 2).min(max);
                    Some(pause)
                }
                Ok(report) => {
                    self.inner.health.batch_done(None);
                    backoff = initial;
                    if report.claimed >= config.batch_size as u64 {
                        continue;
                    }
                    let jitter = config.poll_interval.mul_f64(0.1 * fastrand::f64());
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep(config.poll_interval + jitter) => {}
                        () = cancel.cancelled() => {}
                    }
                    None
                }
                Err(err @ Error::MissingTable { .. }) => return Err(err),
                Err(err) => {
                    let last_error = err.to_string();
                    let since = self.inner.health.batch_failed(&last_error);
                    let failing = since.elapsed().unwrap_or_default();
                    if let Some(limit) = config.give_up_after
                        && failing >= limit
                    {
                        tracing::error!(worker, error = %err, ?failing, "outbox relay giving up");
                        return Err(Error::GaveUp {
                            after: failing,
                            last_error,
                        });
                    }
                    tracing::warn!(worker, error = %err, "outbox relay batch failed; backing off");
                    let pause = backoff;
                    backoff = (backoff * 2).min(max);
                    Some(pause)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = cancel.cancelled() => {}
                }
            }
        }
    }
}
