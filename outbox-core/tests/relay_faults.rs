//! The relay under publisher faults, on the in-memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use outbox_core::memory::{CollectingPublisher, MemoryStore};
use outbox_core::sql::DbError;
use outbox_core::{
    BatchReport, Claim, Envelope, Error, Failure, LeaseToken, Message, PublishError, Publisher,
    Relay, Result, Settled, Settlement, Store,
};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(60);

fn messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            Message::bytes("order.created", format!("{i}"))
                .unwrap()
                .key(format!("k{i}"))
                .unwrap()
        })
        .collect()
}

/// A broker that is down.
struct Down;

impl Publisher for Down {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        batch
            .iter()
            .map(|_| {
                Err(PublishError::unavailable(
                    "connection refused (127.0.0.1:4222)",
                ))
            })
            .collect()
    }
}

/// A publisher that returns `extra` outcomes more (or fewer) than it was given messages.
struct Miscounts {
    extra: isize,
}

impl Publisher for Miscounts {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let n = batch.len().saturating_add_signed(self.extra);
        (0..n).map(|_| Ok(())).collect()
    }
}

#[tokio::test]
async fn drain_with_the_broker_down_says_the_broker_is_unavailable() {
    let store = MemoryStore::new();
    store.enqueue_committed(messages(3));
    let relay = Relay::builder(store.clone(), Down).build().unwrap();
    let err = relay.drain().await.unwrap_err();
    let Error::BrokerUnavailable { reason } = &err else {
        panic!("a broker outage must not read as a configuration error: {err:?}");
    };
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(err.to_string().contains("nothing is lost"), "{err}");
    let again = store.claim(10, LEASE).await.unwrap();
    assert_eq!(
        again.messages.len(),
        3,
        "the messages are given back, claimable at once"
    );
}

#[tokio::test]
async fn a_publisher_miscounting_its_outcomes_is_a_typed_error_and_nothing_is_settled() {
    for extra in [-1_isize, -3, 1] {
        let store = MemoryStore::new();
        store.enqueue_committed(messages(3));
        let relay = Relay::builder(store.clone(), Miscounts { extra })
            .build()
            .unwrap();
        let err = one_batch(&relay).await.unwrap_err();
        let returned = 3_usize.saturating_add_signed(extra);
        assert!(
            matches!(
                err,
                Error::PublisherContract { expected: 3, returned: r } if r == returned
            ),
            "{extra:+} outcomes: {err:?}"
        );
        let again = store.claim(10, LEASE).await.unwrap();
        assert_eq!(
            again.messages.len(),
            3,
            "{extra:+} outcomes: no message is acknowledged on an outcome that may be another's, \
             and all are given back at once"
        );
    }
}

/// The in-memory store with faults injected.
#[derive(Clone, Default)]
struct Faulty {
    inner: MemoryStore,
    /// Every call fails as on a database that is down.
    unreachable: bool,
    /// The first claim blocks its thread this long (a synchronous driver, a slow DNS
    /// lookup) and then finds nothing.
    block_first_claim: Option<Duration>,
    /// The first `settle_failures` settles fail with the error `settle_error` builds.
    settle_failures: u32,
    settle_error: Option<fn() -> Error>,
    /// Every lease renewal fails as on a lost connection.
    renewals_fail: bool,
    claims: Arc<AtomicU32>,
    settles: Arc<AtomicU32>,
    unblocked: Arc<AtomicBool>,
}

impl Faulty {
    fn failing_settles(failures: u32, settle_error: fn() -> Error) -> Self {
        Self {
            settle_failures: failures,
            settle_error: Some(settle_error),
            ..Self::default()
        }
    }

    fn down(&self) -> Result<()> {
        match self.unreachable {
            true => Err(DbError::connection("connection refused (127.0.0.1:5432)").into()),
            false => Ok(()),
        }
    }
}

impl Store for Faulty {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim> {
        self.down()?;
        if let Some(block) = self.block_first_claim
            && self.claims.fetch_add(1, Ordering::SeqCst) == 0
        {
            std::thread::sleep(block);
            self.unblocked.store(true, Ordering::SeqCst);
            return Ok(Claim::new(LeaseToken::random(), Vec::new()));
        }
        self.inner.claim(limit, lease).await
    }

    async fn ack(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.down()?;
        self.inner.ack(token, seqs).await
    }

    async fn fail(&self, token: LeaseToken, failures: &[Failure]) -> Result<u64> {
        self.down()?;
        self.inner.fail(token, failures).await
    }

    async fn release(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.down()?;
        self.inner.release(token, seqs).await
    }

    async fn renew(&self, token: LeaseToken, seqs: &[i64], lease: Duration) -> Result<bool> {
        self.down()?;
        if self.renewals_fail {
            return Err(connection_reset());
        }
        self.inner.renew(token, seqs, lease).await
    }

    async fn settle(&self, token: LeaseToken, settlement: &Settlement) -> Result<Settled> {
        self.down()?;
        if let Some(error) = self.settle_error
            && self.settles.fetch_add(1, Ordering::SeqCst) < self.settle_failures
        {
            return Err(error());
        }
        self.inner.settle(token, settlement).await
    }
}

/// One claim → publish → settle cycle.
async fn one_batch<S: Store, P: Publisher>(relay: &Relay<S, P>) -> Result<BatchReport> {
    relay.process_batch(&CancellationToken::new()).await
}

fn connection_reset() -> Error {
    DbError::connection("connection reset by peer").into()
}

fn syntax_error() -> Error {
    DbError::from_database(Some("42601"), "syntax error", "syntax error").into()
}

#[tokio::test]
async fn a_settle_that_fails_once_is_tried_again_and_nothing_is_published_twice() {
    let store = Faulty::failing_settles(1, connection_reset);
    store.inner.enqueue_committed(messages(3));
    let publisher = CollectingPublisher::new();
    let relay = Relay::builder(store.clone(), publisher.clone())
        .build()
        .unwrap();
    let report = one_batch(&relay).await.unwrap();
    assert_eq!(report.published, 3, "{report:?}");
    assert_eq!(store.settles.load(Ordering::SeqCst), 2, "one retry");
    assert!(
        store.inner.is_empty(),
        "the retried settle acknowledged the batch"
    );
    assert_eq!(
        relay.drain().await.unwrap(),
        0,
        "nothing is left to publish again"
    );
    assert_eq!(
        publisher.published().len(),
        3,
        "each message published once"
    );
}

#[tokio::test]
async fn settle_retries_are_bounded_and_only_for_transient_errors() {
    let store = Faulty::failing_settles(u32::MAX, connection_reset);
    store.inner.enqueue_committed(messages(1));
    let relay = Relay::builder(store.clone(), CollectingPublisher::new())
        .build()
        .unwrap();
    let err = one_batch(&relay).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let tries = store.settles.load(Ordering::SeqCst);
    assert_eq!(tries, 4, "settle attempts: the first and three retries");

    let store = Faulty::failing_settles(1, syntax_error);
    store.inner.enqueue_committed(messages(1));
    let relay = Relay::builder(store.clone(), CollectingPublisher::new())
        .build()
        .unwrap();
    let err = one_batch(&relay).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(store.settles.load(Ordering::SeqCst), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_call_that_blocks_its_thread_stalls_only_its_own_loop() {
    let store = Faulty {
        block_first_claim: Some(Duration::from_secs(3)),
        ..Faulty::default()
    };
    store.inner.enqueue_committed(messages(10));
    let publisher = CollectingPublisher::new();
    let relay = Relay::builder(store.clone(), publisher.clone())
        .concurrency(2)
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (relay, shutdown) = (relay.clone(), shutdown.clone());
        async move { relay.run(shutdown.cancelled_owned()).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while publisher.published().len() < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let published_while_blocked = !store.unblocked.load(Ordering::SeqCst);
    assert_eq!(publisher.published().len(), 10, "everything is published");
    assert!(
        published_while_blocked,
        "the other loop published everything while the first was blocked"
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// A broker call that never returns.
struct Hangs;

impl Publisher for Hangs {
    async fn publish(&self, _: &[Envelope]) -> Vec<Result<(), PublishError>> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_hung_publish_is_abandoned_before_the_lease_ends_and_its_messages_given_back() {
    let store = MemoryStore::new();
    store.enqueue_committed(messages(3));
    let lease = Duration::from_secs(2);
    let relay = Relay::builder(store.clone(), Hangs)
        .lease(lease)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(10), one_batch(&relay))
        .await
        .expect("a hung publish must not hang the batch")
        .unwrap();
    let took = started.elapsed();
    assert!(took < lease, "the batch outlived its lease: {took:?}");
    assert!(report.publish_timed_out, "{report:?}");
    assert_eq!((report.published, report.released), (0, 3), "{report:?}");
    let again = store.claim(10, LEASE).await.unwrap();
    assert_eq!(
        again.messages.len(),
        3,
        "released, so another relay need not wait for the lease"
    );
}

#[tokio::test]
async fn an_unreachable_database_shows_in_health_and_ends_the_run_after_give_up_after() {
    let unreachable = Faulty {
        unreachable: true,
        ..Faulty::default()
    };
    let relay = Relay::builder(unreachable, CollectingPublisher::new())
        .unavailable_backoff(Duration::from_millis(10), Duration::from_millis(40))
        .give_up_after(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut watch = relay.watch_health();
    let running = tokio::spawn({
        let relay = relay.clone();
        async move { relay.run(std::future::pending()).await }
    });
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|h| h.error.is_some()),
    )
    .await
    .expect("the failure reaches the health watch")
    .unwrap();
    let health = relay.health();
    assert!(!health.is_healthy(), "{health:?}");
    assert!(
        health.failing_since.is_some() && health.last_claim.is_none(),
        "{health:?}"
    );
    assert!(
        health
            .error
            .as_deref()
            .unwrap()
            .contains("connection refused"),
        "{health:?}"
    );
    let err = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run must give up")
        .unwrap()
        .unwrap_err();
    let Error::GaveUp { after, last_error } = &err else {
        panic!("{err:?}");
    };
    assert!(*after >= Duration::from_millis(300), "{err}");
    assert!(last_error.contains("connection refused"), "{err}");
}

#[tokio::test]
async fn health_reports_successful_claims_and_a_broker_outage() {
    let store = MemoryStore::new();
    store.enqueue_committed(messages(2));
    let relay = Relay::builder(store.clone(), Down)
        .unavailable_backoff(Duration::from_millis(10), Duration::from_millis(40))
        .build()
        .unwrap();
    let mut watch = relay.watch_health();
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (relay, stop) = (relay.clone(), stop.clone());
        async move { relay.run(stop.cancelled_owned()).await }
    });
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|h| h.broker_unavailable_since.is_some()),
    )
    .await
    .expect("the outage reaches the health watch")
    .unwrap();
    let health = relay.health();
    assert!(
        health.last_claim.is_some() && health.failing_since.is_none(),
        "{health:?}"
    );
    assert!(
        health
            .broker_error
            .as_deref()
            .unwrap()
            .contains("connection refused"),
        "{health:?}"
    );
    assert!(!health.is_healthy());
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// A broker that takes 300 ms per batch.
struct Slow(CollectingPublisher);

impl Publisher for Slow {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.publish(batch).await
    }
}

#[tokio::test]
async fn a_relay_that_cannot_renew_its_lease_stops_publishing_before_the_heartbeat_lease_ends() {
    let store = Faulty {
        renewals_fail: true,
        ..Faulty::default()
    };
    // Five messages of one key: five rounds of 300 ms, well past the 1 s heartbeat lease.
    store.inner.enqueue_committed((0..5).map(|i| {
        Message::bytes("order.created", format!("{i}"))
            .unwrap()
            .key("k")
            .unwrap()
    }));
    let publisher = CollectingPublisher::new();
    let relay = Relay::builder(store.clone(), Slow(publisher.clone()))
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let report = one_batch(&relay).await.unwrap();
    let took = started.elapsed();
    assert!(report.lease_expired, "{report:?}");
    assert!(
        took < Duration::from_secs(1),
        "published on an unrenewed lease for {took:?}"
    );
    let published = publisher.published().len() as u64;
    assert!(
        (1..5).contains(&published),
        "{published} of 5 rounds published on an unrenewed lease"
    );
    assert_eq!(
        (report.published, report.released),
        (published, 5 - published),
        "{report:?}"
    );
}
