//! The relay under publisher faults, on the in-memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use outbox_core::memory::{CollectingPublisher, MemoryStore};
use outbox_core::sql::DbError;
use outbox_core::{
    Claim, Envelope, Error, Failure, LeaseToken, Message, PublishError, Publisher, Relay, Result,
    Settled, Settlement, Store,
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
        let err = relay
            .process_batch(&CancellationToken::new())
            .await
            .unwrap_err();
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

/// A store whose first `failures` settles fail with the error `make` builds.
#[derive(Clone)]
struct FlakySettle {
    inner: MemoryStore,
    failures: u32,
    make: fn() -> Error,
    settles: Arc<AtomicU32>,
}

impl FlakySettle {
    fn new(failures: u32, make: fn() -> Error) -> Self {
        Self {
            inner: MemoryStore::new(),
            failures,
            make,
            settles: Arc::default(),
        }
    }
}

impl Store for FlakySettle {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim> {
        self.inner.claim(limit, lease).await
    }

    async fn ack(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.inner.ack(token, seqs).await
    }

    async fn fail(&self, token: LeaseToken, failures: &[Failure]) -> Result<u64> {
        self.inner.fail(token, failures).await
    }

    async fn release(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.inner.release(token, seqs).await
    }

    async fn settle(&self, token: LeaseToken, settlement: &Settlement) -> Result<Settled> {
        if self.settles.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err((self.make)());
        }
        self.inner.settle(token, settlement).await
    }
}

fn connection_reset() -> Error {
    DbError::connection("connection reset by peer").into()
}

fn syntax_error() -> Error {
    DbError::from_database(Some("42601"), "syntax error", "syntax error").into()
}

#[tokio::test]
async fn a_settle_that_fails_once_is_tried_again_and_nothing_is_published_twice() {
    let store = FlakySettle::new(1, connection_reset);
    store.inner.enqueue_committed(messages(3));
    let publisher = CollectingPublisher::new();
    let relay = Relay::builder(store.clone(), publisher.clone())
        .build()
        .unwrap();
    let report = relay
        .process_batch(&CancellationToken::new())
        .await
        .unwrap();
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
    let store = FlakySettle::new(u32::MAX, connection_reset);
    store.inner.enqueue_committed(messages(1));
    let relay = Relay::builder(store.clone(), CollectingPublisher::new())
        .build()
        .unwrap();
    let err = relay
        .process_batch(&CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let tries = store.settles.load(Ordering::SeqCst);
    assert_eq!(tries, 4, "settle attempts: the first and three retries");

    let store = FlakySettle::new(1, syntax_error);
    store.inner.enqueue_committed(messages(1));
    let relay = Relay::builder(store.clone(), CollectingPublisher::new())
        .build()
        .unwrap();
    let err = relay
        .process_batch(&CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(store.settles.load(Ordering::SeqCst), 1, "not retried");
}

/// A store whose first claim blocks its thread for `block` (a synchronous driver, a slow
/// DNS lookup) and then finds nothing.
#[derive(Clone)]
struct BlockingFirstClaim {
    inner: MemoryStore,
    block: Duration,
    claims: Arc<AtomicU32>,
    unblocked: Arc<std::sync::atomic::AtomicBool>,
}

impl Store for BlockingFirstClaim {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim> {
        if self.claims.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(self.block);
            self.unblocked.store(true, Ordering::SeqCst);
            return Ok(Claim::new(LeaseToken::random(), Vec::new()));
        }
        self.inner.claim(limit, lease).await
    }

    async fn ack(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.inner.ack(token, seqs).await
    }

    async fn fail(&self, token: LeaseToken, failures: &[Failure]) -> Result<u64> {
        self.inner.fail(token, failures).await
    }

    async fn release(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.inner.release(token, seqs).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_call_that_blocks_its_thread_stalls_only_its_own_loop() {
    let store = BlockingFirstClaim {
        inner: MemoryStore::new(),
        block: Duration::from_secs(3),
        claims: Arc::default(),
        unblocked: Arc::default(),
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
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        relay.process_batch(&CancellationToken::new()),
    )
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

/// A store whose database is unreachable.
#[derive(Clone)]
struct Unreachable;

impl Store for Unreachable {
    async fn claim(&self, _: usize, _: Duration) -> Result<Claim> {
        Err(DbError::connection("connection refused (127.0.0.1:5432)").into())
    }

    async fn ack(&self, _: LeaseToken, _: &[i64]) -> Result<u64> {
        Err(DbError::connection("connection refused").into())
    }

    async fn fail(&self, _: LeaseToken, _: &[Failure]) -> Result<u64> {
        Err(DbError::connection("connection refused").into())
    }

    async fn release(&self, _: LeaseToken, _: &[i64]) -> Result<u64> {
        Err(DbError::connection("connection refused").into())
    }
}

#[tokio::test]
async fn an_unreachable_database_shows_in_health_and_ends_the_run_after_give_up_after() {
    let relay = Relay::builder(Unreachable, CollectingPublisher::new())
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
