//! The conformance suite and adapter tests on PostgreSQL (`OUTBOX_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`).

use outbox_sqlx::testing::{SqlxBackend, postgres_pool as pool};
use sqlx::Postgres;

async fn backend() -> SqlxBackend<Postgres> {
    SqlxBackend::new(
        "postgres",
        pool().await,
        outbox_core::testing::Visibility::KeySerialized,
    )
    .await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

/// A relay whose poll interval is far away is woken by a commit from another connection (as
/// from another process) through LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_relay_in_another_process() {
    use std::time::{Duration, Instant};

    use outbox_core::memory::CollectingPublisher;
    use outbox_sqlx::{Message, NotifyListener, Outbox, Relay};

    let relay_pool = pool().await;
    let producer_pool = pool().await;
    let outbox = Outbox::<Postgres>::with_table(&outbox_core::testing::fresh_table())
        .unwrap()
        .notify_on_commit(true);
    outbox
        .migrate(&mut *relay_pool.acquire().await.unwrap())
        .await
        .unwrap();
    let publisher = CollectingPublisher::new();
    let relay = Relay::builder(outbox.store(relay_pool.clone()), publisher.clone())
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    let _listener = NotifyListener::start(&relay_pool, &outbox, relay.wake_handle())
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let relay = relay.clone();
        let stop = stop.clone();
        async move { relay.run(stop.cancelled_owned()).await }
    });
    // Let the relay reach its idle wait.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for round in 0..3 {
        let mut tx = producer_pool.begin().await.unwrap();
        let message = Message::json("e", &serde_json::json!({ "round": round })).unwrap();
        outbox.enqueue(&mut *tx, message).await.unwrap();
        tx.commit().await.unwrap();
        let committed = Instant::now();
        while publisher.published().len() < round + 1 {
            assert!(
                committed.elapsed() < Duration::from_secs(5),
                "relay was not woken by NOTIFY (poll interval is 30s)"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.cancel();
    running.await.unwrap().unwrap();
}
