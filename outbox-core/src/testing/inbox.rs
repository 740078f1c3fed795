//! The inbox cases of the adapter suite: a message processed once per consumer, its record
//! committed and rolled back with the handler's effect, concurrent duplicate deliveries, bad
//! consumer names and retention.

use std::time::Duration;

use super::Shared;
use super::adapter::{BusinessTable, SqlBackend, fresh_table};
use crate::Uuid;
use crate::error::Error;
use crate::sql::Processed;

/// A consumer name no other test uses.
fn consumer(role: &str) -> String {
    format!("{role}-{}", fresh_table())
}

fn insert(table: &BusinessTable, id: i64) -> String {
    format!("INSERT INTO {} (id) VALUES ({id})", table.quoted)
}

/// A message is processed once by each consumer: a second delivery to the same consumer skips
/// the handler, and another consumer processes it on its own.
pub async fn inbox_runs_a_message_once_per_consumer<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let table = BusinessTable::create(&*backend).await;
    let (billing, audit) = (consumer("billing"), consumer("audit"));
    let id = Uuid::now_v7();
    let deliver = async |consumer: &str, id: Uuid, effect: i64| {
        let mut tx = backend.begin().await.unwrap();
        let outcome = backend
            .process_once(
                &mut tx,
                consumer,
                id,
                &insert(&table, effect),
                Duration::ZERO,
            )
            .await
            .unwrap();
        backend.commit(tx).await.unwrap();
        outcome
    };

    assert_eq!(
        deliver(&billing, id, 1).await,
        Processed::New(()),
        "[{name}]"
    );
    let again = deliver(&billing, id, 2).await;
    assert!(again.is_duplicate(), "[{name}] {again:?}");
    assert_eq!(again.to_string(), "already processed");
    assert_eq!(table.rows(&*backend).await, 1, "[{name}] the duplicate ran");
    assert_eq!(
        deliver(&audit, id, 3).await,
        Processed::New(()),
        "[{name}] another consumer's record stopped this one"
    );
    assert_eq!(
        deliver(&billing, Uuid::now_v7(), 4).await,
        Processed::New(()),
        "[{name}] another message's record stopped this one"
    );
    assert_eq!(table.rows(&*backend).await, 3, "[{name}]");
    table.drop(&*backend).await;
}

/// The inbox record is written in the consumer's transaction: rolled back (after the handler
/// ran, or when the handler failed), it is gone with the effect, and the next delivery runs.
pub async fn inbox_record_rolls_back_with_its_transaction<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let table = BusinessTable::create(&*backend).await;
    let billing = consumer("billing");
    let id = Uuid::now_v7();

    let mut tx = backend.begin().await.unwrap();
    let outcome = backend
        .process_once(&mut tx, &billing, id, &insert(&table, 1), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(outcome, Processed::New(()), "[{name}]");
    backend.rollback(tx).await.unwrap();
    assert_eq!(
        table.rows(&*backend).await,
        0,
        "[{name}] the effect outlived its rollback"
    );

    // The handler fails: the caller rolls back, and neither record nor effect remains.
    let mut tx = backend.begin().await.unwrap();
    let failing = format!("INSERT INTO {}_missing (id) VALUES (1)", fresh_table());
    let err = backend
        .process_once(&mut tx, &billing, id, &failing, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Database(_)), "[{name}] {err:?}");
    backend.rollback(tx).await.unwrap();

    let mut tx = backend.begin().await.unwrap();
    let outcome = backend
        .process_once(&mut tx, &billing, id, &insert(&table, 2), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Processed::New(()),
        "[{name}] a rolled-back record stopped the redelivery"
    );
    backend.commit(tx).await.unwrap();
    assert_eq!(table.rows(&*backend).await, 1, "[{name}]");
    table.drop(&*backend).await;
}

/// Sixteen concurrent deliveries of one message, each in its own transaction that stays open a
/// while after its handler ran, produce exactly one effect. A delivery that fails (a deadlock or
/// a busy database) is rolled back and delivered again, as a broker would.
pub async fn concurrent_duplicate_deliveries_have_one_effect<B: SqlBackend>(backend: Shared<B>) {
    const DELIVERIES: i64 = 16;
    const ATTEMPTS: usize = 20;
    let name = backend.name();
    let table = std::sync::Arc::new(BusinessTable::create(&*backend).await);
    let billing = consumer("billing");
    let id = Uuid::now_v7();
    let mut tasks = Vec::new();
    for delivery in 0..DELIVERIES {
        let (backend, table, billing) = (backend.clone(), table.clone(), billing.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for _ in 0..ATTEMPTS {
                let mut tx = backend.begin().await.unwrap();
                let effect = insert(&table, delivery);
                let hold = Duration::from_millis(20);
                match backend
                    .process_once(&mut tx, &billing, id, &effect, hold)
                    .await
                {
                    Ok(outcome) => match backend.commit(tx).await {
                        Ok(()) => return (outcome, errors),
                        Err(err) => errors.push(err.to_string()),
                    },
                    Err(err) => {
                        errors.push(err.to_string());
                        let _ = backend.rollback(tx).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5 + fastrand::u64(..20))).await;
            }
            panic!("a delivery failed {ATTEMPTS} times: {errors:?}");
        }));
    }
    let mut new = 0;
    let mut retried = Vec::new();
    for task in tasks {
        let (outcome, errors) = task.await.unwrap();
        new += usize::from(!outcome.is_duplicate());
        retried.extend(errors);
    }
    assert_eq!(
        new, 1,
        "[{name}] deliveries that ran the handler (retries: {retried:?})"
    );
    assert_eq!(
        table.rows(&*backend).await,
        1,
        "[{name}] effects committed (retries: {retried:?})"
    );
    let inbox = &backend.statements().inbox.table;
    let records = format!("SELECT count(*) AS n FROM {inbox} WHERE consumer = '{billing}'");
    assert_eq!(backend.fetch_count(&records).await.unwrap(), 1, "[{name}]");
    if let Ok(table) = std::sync::Arc::try_unwrap(table) {
        table.drop(&*backend).await;
    }
}

/// A consumer name that is empty, too long or not plain text is refused before anything is
/// written, with an error that says what a consumer name is.
pub async fn inbox_refuses_a_bad_consumer_before_any_sql<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let table = BusinessTable::create(&*backend).await;
    for bad in [String::new(), "b".repeat(201), "bill\ning".into()] {
        let mut tx = backend.begin().await.unwrap();
        let err = backend
            .process_once(
                &mut tx,
                &bad,
                Uuid::now_v7(),
                &insert(&table, 1),
                Duration::ZERO,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidConsumer { .. }),
            "[{name}] {bad:?}: {err:?}"
        );
        assert!(err.to_string().contains("1 to 200 bytes"), "[{name}] {err}");
        backend.commit(tx).await.unwrap();
    }
    assert_eq!(table.rows(&*backend).await, 0, "[{name}] a handler ran");
    table.drop(&*backend).await;
}

/// `purge_inbox` deletes the records older than its window and keeps the newer ones; the
/// inbox table is made by the same `migrate` as the outbox table.
pub async fn inbox_records_are_purged_after_the_retention_window<B: SqlBackend>(
    backend: Shared<B>,
) {
    let name = backend.name();
    let own = backend.with_table(&fresh_table(), 1024).unwrap();
    own.migrate().await.unwrap();
    let table = BusinessTable::create(&*backend).await;
    let billing = consumer("billing");
    for n in 0..3 {
        let mut tx = own.begin().await.unwrap();
        let outcome = own
            .process_once(
                &mut tx,
                &billing,
                Uuid::now_v7(),
                &insert(&table, n),
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert_eq!(outcome, Processed::New(()), "[{name}]");
        own.commit(tx).await.unwrap();
    }
    let records = format!(
        "SELECT count(*) AS n FROM {} AS i",
        own.statements().inbox.table
    );
    assert_eq!(own.fetch_count(&records).await.unwrap(), 3, "[{name}]");
    assert_eq!(
        own.purge_inbox(Duration::from_secs(3600)).await.unwrap(),
        0,
        "[{name}] purged records inside the window"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        own.purge_inbox(Duration::from_millis(5)).await.unwrap(),
        3,
        "[{name}]"
    );
    assert_eq!(own.fetch_count(&records).await.unwrap(), 0, "[{name}]");
    own.uninstall().await.unwrap();
    table.drop(&*backend).await;
}
