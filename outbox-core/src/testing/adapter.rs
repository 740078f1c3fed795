//! The adapter suite: what an application sees through an adapter on a real database (bad
//! input, a missing table, rollbacks, retention, statement boundaries). Every SQL adapter runs
//! it with [`adapter_suite!`](crate::adapter_suite) beside the conformance suite.

use std::future::Future;
use std::time::Duration;

use super::{Backend, Shared, commit_messages};
use crate::Uuid;
use crate::error::{Error, Result};
use crate::memory::NullPublisher;
use crate::message::Message;
use crate::relay::Relay;
use crate::sql::protocol::rows_per_statement;
use crate::sql::{Dialect, KeyLockSql, Processed, Statements, TableName};
use crate::status::Status;
use crate::store::{Failure, Inspect, Purge, Replay, Settlement, Store};

const LEASE: Duration = Duration::from_secs(60);

/// A SQL adapter's backend: the conformance [`Backend`] plus plain SQL on the same database and
/// other outbox tables beside this one.
pub trait SqlBackend: Backend + Sized {
    /// The statements of this backend's outbox table.
    fn statements(&self) -> &Statements;

    /// A backend on the same database for the outbox table `table`, with a payload limit of
    /// `max_payload` bytes, not migrated.
    ///
    /// # Errors
    ///
    /// Whatever the adapter says of the table name.
    fn with_table(&self, table: &str, max_payload: usize) -> Result<Self>;

    /// Runs the adapter's own `migrate` for this backend's table.
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;

    /// Runs the adapter's own `uninstall` for this backend's table.
    fn uninstall(&self) -> impl Future<Output = Result<()>> + Send;

    /// Runs `sql` (no parameters) outside any transaction; returns the rows it changed.
    fn execute(&self, sql: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Runs `sql` (no parameters) in `tx`.
    fn execute_in(&self, tx: &mut Self::Tx, sql: &str) -> impl Future<Output = Result<u64>> + Send;

    /// Runs `sql`, which returns one row with one integer column `n`.
    fn fetch_count(&self, sql: &str) -> impl Future<Output = Result<i64>> + Send;

    /// A store on this backend's table that keeps published rows.
    fn store_keeping_published(&self) -> Self::Store;

    /// Runs the adapter's own `process_once` in `tx` for `consumer` and message `id`, with a
    /// handler that runs `effect` (SQL, no parameters) on the transaction's connection and then
    /// holds the transaction open for `hold`.
    fn process_once(
        &self,
        tx: &mut Self::Tx,
        consumer: &str,
        id: Uuid,
        effect: &str,
        hold: Duration,
    ) -> impl Future<Output = Result<Processed<()>>> + Send;

    /// Runs the store's own `purge_inbox` for this backend's table.
    fn purge_inbox(&self, older_than: Duration) -> impl Future<Output = Result<u64>> + Send;
}

/// A unique table name that records when it was made, so that tests can drop old ones.
///
/// The process id and a count within the process keep apart, by construction, the names of
/// tests that run at once (each test is a process of its own under nextest) and of several
/// tables in one test.
pub fn fresh_table() -> String {
    static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("outbox_t_{secs}_{:x}_{made}", std::process::id())
}

/// A new SQLite database file for one test, in the directory `dir` of the system's temporary
/// directory.
pub fn sqlite_file(dir: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}.db", fresh_table()))
}

/// The names among `tables` that [`fresh_table`] made more than an hour ago.
pub fn stale_tables(tables: Vec<String>) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tables
        .into_iter()
        .filter(|t| {
            t.strip_prefix("outbox_t_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok())
                .is_some_and(|secs| secs + 3600 < now)
        })
        .collect()
}

/// A business table of the application's own, beside the outbox.
pub(crate) struct BusinessTable {
    pub(crate) quoted: String,
}

impl BusinessTable {
    pub(crate) async fn create<B: SqlBackend>(backend: &B) -> Self {
        let s = backend.statements();
        let name = TableName::new(&format!("biz_{}", fresh_table())).unwrap();
        let quoted = name.quoted(if s.dialect == Dialect::MySql {
            '`'
        } else {
            '"'
        });
        let sql = match s.dialect {
            Dialect::MySql => {
                format!("CREATE TABLE {quoted} (id BIGINT PRIMARY KEY) ENGINE=InnoDB")
            }
            Dialect::Postgres => format!("CREATE TABLE {quoted} (id bigint PRIMARY KEY)"),
            Dialect::Sqlite => format!("CREATE TABLE {quoted} (id INTEGER PRIMARY KEY)"),
        };
        backend.execute(&sql).await.unwrap();
        Self { quoted }
    }

    pub(crate) async fn rows<B: SqlBackend>(&self, backend: &B) -> i64 {
        let sql = format!("SELECT count(*) AS n FROM {}", self.quoted);
        backend.fetch_count(&sql).await.unwrap()
    }

    pub(crate) async fn drop<B: SqlBackend>(self, backend: &B) {
        let _ = backend
            .execute(&format!("DROP TABLE {}", self.quoted))
            .await;
    }
}

/// What an application handler looks like: business write, build and enqueue the message,
/// commit; any error returns early and drops (rolls back) the transaction.
async fn place_order<B: SqlBackend>(
    backend: &B,
    table: &BusinessTable,
    build: impl FnOnce() -> Result<Message>,
) -> Result<()> {
    let mut tx = backend.begin().await?;
    let insert = format!("INSERT INTO {} (id) VALUES (1)", table.quoted);
    backend.execute_in(&mut tx, &insert).await?;
    let message = build()?;
    backend.enqueue(&mut tx, vec![message]).await?;
    backend.commit(tx).await
}

fn keyed(n: usize, key: &str) -> Message {
    Message::json("e", &serde_json::json!({ "n": n }))
        .unwrap()
        .key(key)
        .unwrap()
}

/// A row whose transaction's clock reads later than the claim's (on PostgreSQL `now()` is the
/// transaction's start, so a producer that starts after a claim and commits before the claim's
/// snapshot stamps its row "in the future") is still its key's head: the next row of its key
/// must not be claimed without it.
pub async fn a_row_stamped_after_the_claims_clock_still_heads_its_key<B: SqlBackend>(
    backend: Shared<B>,
) {
    let name = backend.name();
    let (first, second) = (keyed(1, "k"), keyed(2, "k"));
    let order = vec![first.id(), second.id()];
    commit_messages(&*backend, vec![first]).await.unwrap();
    let s = backend.statements();
    let t = s.quoted_table();
    let later = match s.dialect {
        Dialect::Postgres => "+ interval '1 minute'",
        Dialect::MySql => "+ INTERVAL 1 MINUTE",
        Dialect::Sqlite => "+ 60000000",
    };
    let stamp = format!(
        "UPDATE {t} SET created_at = created_at {later}, available_at = available_at {later}"
    );
    backend.execute(&stamp).await.unwrap();
    commit_messages(&*backend, vec![second]).await.unwrap();

    let claim = backend.store().claim(10, LEASE).await.unwrap();
    let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
    assert_eq!(
        claimed, order,
        "[{name}] a key's later row was claimed without its head"
    );
}

/// Enqueueing into a table that was never migrated fails with advice to migrate, rolls back
/// the business change, and stops a relay.
pub async fn missing_table_error_says_to_migrate<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let unmigrated = backend.with_table(&fresh_table(), 1024 * 1024).unwrap();
    let table = BusinessTable::create(&*backend).await;
    let err = place_order(&unmigrated, &table, || {
        Message::json("order.created", &serde_json::json!({}))
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::MissingTable { .. }),
        "[{name}] {err:?}"
    );
    let advice = err.to_string();
    assert!(
        advice.contains("`migrate()` on the outbox store") && !advice.contains("outbox migrate"),
        "[{name}] the advice names what exists: {advice}"
    );
    assert_eq!(
        table.rows(&*backend).await,
        0,
        "[{name}] business change committed"
    );

    let store = unmigrated.store();
    let err = store.claim(10, LEASE).await.unwrap_err();
    assert!(
        matches!(err, Error::MissingTable { .. }),
        "[{name}] claim: {err:?}"
    );
    let err = store.stats().await.unwrap_err();
    assert!(
        matches!(err, Error::MissingTable { .. }),
        "[{name}] stats: {err:?}"
    );
    let relay = Relay::builder(store, NullPublisher).build().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), relay.run(std::future::pending()))
        .await
        .expect("relay must stop on a missing table")
        .unwrap_err();
    assert!(
        matches!(err, Error::MissingTable { .. }),
        "[{name}] relay: {err:?}"
    );
    table.drop(&*backend).await;
}

/// Table names that are not plain identifiers are refused before any SQL is built.
pub async fn invalid_table_names_are_refused_before_any_sql<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    for bad in [
        "outbox; DROP TABLE users",
        "out\"box",
        "1outbox",
        "a.b.c",
        "",
    ] {
        let Err(err) = backend.with_table(bad, 1024) else {
            panic!("[{name}] table name {bad:?} was accepted");
        };
        assert!(
            matches!(err, Error::InvalidTableName { .. }),
            "[{name}] {bad:?}: {err:?}"
        );
        assert!(
            err.to_string().contains("letters, digits and underscores"),
            "[{name}] {err}"
        );
    }
    let limit = crate::sql::MAX_TABLE_NAME_BYTES;
    let longest = "t".repeat(limit);
    assert!(
        backend.with_table(&longest, 1024).is_ok(),
        "[{name}] a {limit}-byte name is refused"
    );
    let Err(err) = backend.with_table(&format!("{longest}t"), 1024) else {
        panic!("[{name}] a table name over {limit} bytes was accepted");
    };
    assert!(
        err.to_string().contains(&format!("at most {limit} bytes")),
        "[{name}] the error states the real limit: {err}"
    );
}

/// A payload over the adapter's limit fails the enqueue, and the business change rolls back
/// with it.
pub async fn oversized_payload_rolls_back_the_business_change<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let limited = backend.with_table(&fresh_table(), 1024).unwrap();
    limited.migrate().await.unwrap();
    let table = BusinessTable::create(&*backend).await;
    let err = place_order(&limited, &table, || {
        Message::bytes("blob.stored", vec![7_u8; 2048])
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PayloadTooLarge {
                size: 2048,
                limit: 1024
            }
        ),
        "[{name}] {err:?}"
    );
    assert_eq!(
        table.rows(&*backend).await,
        0,
        "[{name}] business change committed"
    );
    let stats = limited.store().stats().await.unwrap();
    assert_eq!(stats.unpublished(), 0, "[{name}] half-written outbox row");
    table.drop(&*backend).await;
}

/// A store whose limit is raised above the default takes a JSON payload that large, and the
/// relay reads it back whole: the message constructors leave the limit to the store.
pub async fn a_raised_payload_limit_takes_larger_messages<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let limit = 4 * crate::DEFAULT_MAX_PAYLOAD_BYTES;
    let raised = backend.with_table(&fresh_table(), limit).unwrap();
    raised.migrate().await.unwrap();
    let text = "x".repeat(2 * crate::DEFAULT_MAX_PAYLOAD_BYTES);
    let msg = Message::json("blob.stored", &text).unwrap();
    let size = msg.payload().len();
    commit_messages(&raised, vec![msg]).await.unwrap();
    let claim = raised.store().claim(10, LEASE).await.unwrap();
    assert_eq!(
        claim.messages.len(),
        1,
        "[{name}] the large message is enqueued"
    );
    assert_eq!(
        claim.messages[0].payload.len(),
        size,
        "[{name}] the payload comes back whole"
    );
}

/// A row whose headers are not a JSON object of strings is dead-lettered with an error naming the column;
/// the rest of the batch, its own key's later rows included, is published, and the relay goes
/// on.
pub async fn a_corrupt_row_is_dead_lettered_and_the_rest_publish<B: SqlBackend>(
    backend: Shared<B>,
) {
    let name = backend.name();
    let written: Vec<Message> = (0..3).map(|n| keyed(n, "k")).collect();
    let ids: Vec<_> = written.iter().map(Message::id).collect();
    commit_messages(&*backend, written).await.unwrap();
    let s = backend.statements();
    let table = s.quoted_table();
    let corrupt = format!(
        "UPDATE {table} SET headers = '[1]' WHERE message_id = '{}'",
        ids[1]
    );
    assert_eq!(
        backend.execute(&corrupt).await.unwrap(),
        1,
        "[{name}] row corrupted"
    );

    let publisher = crate::memory::CollectingPublisher::new();
    let relay = Relay::builder(backend.store(), publisher.clone())
        .build()
        .unwrap();
    let published = relay.drain().await.unwrap();
    assert_eq!(published, 2, "[{name}] the readable rows are published");
    let order: Vec<_> = publisher.published().iter().map(|m| m.id).collect();
    assert_eq!(order, vec![ids[0], ids[2]], "[{name}] in key order");
    let dead = format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE state = {} AND last_error LIKE '%headers%'",
        crate::sql::state::DEAD
    );
    assert_eq!(
        backend.fetch_count(&dead).await.unwrap(),
        1,
        "[{name}] the corrupt row is dead, and its error names the column"
    );
    let stats = backend.store().stats().await.unwrap();
    assert_eq!(
        (stats.unpublished(), stats.dead),
        (0, 1),
        "[{name}] only the dead row is left: {stats:?}"
    );
    assert_eq!(
        relay.drain().await.unwrap(),
        0,
        "[{name}] the relay goes on"
    );
}

/// `uninstall` removes the table and everything `migrate` created beside it (the claims
/// table and claim function on PostgreSQL, the key lock table on MySQL), and can run again.
pub async fn uninstall_removes_what_migrate_created<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let own = backend.with_table(&fresh_table(), 1024).unwrap();
    own.migrate().await.unwrap();
    commit_messages(&own, vec![keyed(0, "k")]).await.unwrap();
    let s = own.statements();
    let base = s.table.table();
    let left = match s.dialect {
        Dialect::Postgres => format!(
            "SELECT (SELECT COUNT(*) FROM pg_class WHERE relname LIKE '{base}%') \
             + (SELECT COUNT(*) FROM pg_proc WHERE proname LIKE '{base}%') AS n"
        ),
        Dialect::MySql => format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name LIKE '{base}%'"
        ),
        Dialect::Sqlite => {
            format!("SELECT COUNT(*) AS n FROM sqlite_master WHERE name LIKE '{base}%'")
        }
    };
    let created = own.fetch_count(&left).await.unwrap();
    // PostgreSQL: the table, its claims table, the claim function; MySQL: the table and its
    // key lock table; every database: the inbox table.
    let expected = match s.dialect {
        Dialect::Postgres => 4,
        Dialect::MySql => 3,
        Dialect::Sqlite => 2,
    };
    assert!(
        created >= expected,
        "[{name}] migrate created {created} objects"
    );

    own.uninstall().await.unwrap();
    assert_eq!(
        own.fetch_count(&left).await.unwrap(),
        0,
        "[{name}] objects left"
    );
    let err = own.store().claim(10, LEASE).await.unwrap_err();
    assert!(
        matches!(err, Error::MissingTable { .. }),
        "[{name}] {err:?}"
    );
    own.uninstall().await.unwrap();
}

/// Every byte value of a payload, headers, key and aggregate type come back as written through
/// each insert statement: one message with and without a key, a delayed one, and a batch.
pub async fn every_insert_path_keeps_payloads_and_headers_whole<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let message = |key: Option<&str>| {
        let m = Message::bytes("blob.stored", bytes.clone())
            .unwrap()
            .aggregate_type("blob")
            .unwrap()
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .unwrap()
            .header("note", "caf\u{e9} \"quoted\" \\ slash")
            .unwrap();
        match key {
            Some(k) => m.key(k).unwrap(),
            None => m,
        }
    };
    let mut written = vec![message(Some("one")), message(None)];
    let delayed = message(Some("delayed")).deliver_after(Duration::from_millis(1));
    written.push(delayed.clone());
    let batch = vec![
        message(Some("b1")),
        message(None),
        message(Some("b2")),
        message(Some("b1")),
    ];
    written.extend(batch.iter().cloned());
    for single in &written[..3] {
        commit_messages(&*backend, vec![single.clone()])
            .await
            .unwrap();
    }
    commit_messages(&*backend, batch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claim = backend.store().claim(100, LEASE).await.unwrap();
    assert_eq!(claim.messages.len(), written.len(), "[{name}] claimed");
    for (got, sent) in claim.messages.iter().zip(&written) {
        assert_eq!(got.id, sent.id(), "[{name}] order");
        assert_eq!(
            got.payload,
            *sent.payload(),
            "[{name}] payload of {:?}",
            sent.partition_key()
        );
        assert_eq!(got.headers, *sent.headers(), "[{name}] headers");
        assert_eq!(
            got.partition_key.as_deref(),
            sent.partition_key(),
            "[{name}] key"
        );
        assert_eq!(
            got.aggregate_type.as_deref(),
            Some("blob"),
            "[{name}] aggregate type"
        );
        assert_eq!(got.event_type, "blob.stored", "[{name}] event type");
    }
}

/// A batch that enqueues keyed messages holds the locks of its keys until it ends, and no
/// other key's: on MySQL, a lock slot of another key can be taken at once while the batch's
/// transaction is open, and its own keys' slots cannot. (PostgreSQL's advisory locks are
/// checked by `sequence_visibility_skips_nothing`; SQLite takes no key locks.)
pub async fn a_batch_locks_its_own_keys_and_no_others<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let s = backend.statements();
    let Some(locks) = s.enabled_key_locks() else {
        assert_ne!(
            s.dialect,
            Dialect::MySql,
            "[{name}] MySQL without key locks"
        );
        return;
    };
    let keys = ["a", "b", "c"];
    let mut tx = backend.begin().await.unwrap();
    let batch = keys.iter().enumerate().map(|(n, k)| keyed(n, k)).collect();
    backend.enqueue(&mut tx, batch).await.unwrap();
    let mine: Vec<i64> = keys.iter().map(|k| KeyLockSql::slot(k)).collect();
    let other = (0..KeyLockSql::SLOTS as i64)
        .find(|slot| !mine.contains(slot))
        .unwrap();
    let take = |slot: i64| {
        format!(
            "SELECT slot FROM {} WHERE slot = {slot} FOR UPDATE NOWAIT",
            locks.table
        )
    };
    assert!(
        backend.execute(&take(other)).await.is_ok(),
        "[{name}] the batch holds a lock slot of none of its keys"
    );
    // The slot of the highest key: the batch held every slot up to it if it scanned.
    let last = *mine.iter().max().unwrap();
    assert!(
        backend.execute(&take(last)).await.is_err(),
        "[{name}] the batch does not hold its own key's lock"
    );
    // A scan in slot order would have locked the slots below it on its way.
    let step = (last as usize / 40).max(1);
    for slot in (0..last).step_by(step).filter(|s| !mine.contains(s)) {
        assert!(
            backend.execute(&take(slot)).await.is_ok(),
            "[{name}] the batch holds slot {slot}, which none of its keys has"
        );
    }
    backend.commit(tx).await.unwrap();
}

/// A payload that cannot be serialized fails before anything is written.
pub async fn unserializable_payload_rolls_back_the_business_change<B: SqlBackend>(
    backend: Shared<B>,
) {
    struct Unserializable;
    impl serde::Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("a map with non-string keys"))
        }
    }
    let name = backend.name();
    let table = BusinessTable::create(&*backend).await;
    let err = place_order(&*backend, &table, || {
        Message::json("order.created", &Unserializable)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "[{name}] {err:?}");
    assert_eq!(
        table.rows(&*backend).await,
        0,
        "[{name}] business change committed"
    );
    table.drop(&*backend).await;
}

/// The business row and its message commit together, and the message reads back whole.
pub async fn committed_order_and_message_land_together<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let table = BusinessTable::create(&*backend).await;
    let message = Message::json("order.created", &serde_json::json!({ "id": 1 }))
        .unwrap()
        .key(1)
        .unwrap()
        .aggregate_type("order")
        .unwrap()
        .header("tenant", "acme")
        .unwrap();
    let expected = message.clone();
    place_order(&*backend, &table, move || Ok(message))
        .await
        .unwrap();
    assert_eq!(table.rows(&*backend).await, 1, "[{name}] business row");
    let stored = backend
        .store()
        .get(expected.id())
        .await
        .unwrap()
        .expect("row written");
    assert_eq!(stored.status, Status::Pending, "[{name}]");
    assert_eq!(stored.last_error, None, "[{name}]");
    let e = &stored.envelope;
    assert_eq!(e.partition_key.as_deref(), Some("1"), "[{name}]");
    assert_eq!(e.aggregate_type.as_deref(), Some("order"), "[{name}]");
    assert_eq!(&e.headers, expected.headers(), "[{name}]");
    assert_eq!(&e.payload[..], &expected.payload()[..], "[{name}]");
    assert_eq!(e.attempts, 0, "[{name}]");
    table.drop(&*backend).await;
}

/// Published rows kept for retention are not claimed again and are purged once older than
/// the window.
pub async fn kept_published_rows_are_purged_after_the_retention_window<B: SqlBackend>(
    backend: Shared<B>,
) {
    let name = backend.name();
    let messages: Vec<Message> = (0..3)
        .map(|n| Message::json("e", &serde_json::json!({ "n": n })).unwrap())
        .collect();
    let first = messages[0].id();
    commit_messages(&*backend, messages).await.unwrap();
    let store = backend.store_keeping_published();
    let claim = store.claim(10, LEASE).await.unwrap();
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        store.ack(claim.token, &seqs).await.unwrap(),
        3,
        "[{name}] ack"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.published, stats.unpublished()),
        (3, 0),
        "[{name}] {stats:?}"
    );
    let kept = store.get(first).await.unwrap().expect("published row kept");
    assert_eq!(kept.status, Status::Published, "[{name}]");
    assert!(
        store.claim(10, LEASE).await.unwrap().messages.is_empty(),
        "[{name}] reclaimed"
    );
    assert_eq!(
        store
            .purge_published(Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "[{name}]"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store
            .purge_published(Duration::from_millis(1))
            .await
            .unwrap(),
        3,
        "[{name}]"
    );
    assert_eq!(store.stats().await.unwrap().published, 0, "[{name}]");
}

/// Published messages kept for retention are replayed as new copies: new ids, the original's
/// key, type, payload and headers plus a header naming it, page by page, never past the
/// highest sequence the replay started with; published dead and published-purge work by age.
pub async fn kept_published_rows_are_replayed_as_new_copies<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let messages = vec![
        Message::json("e1", &serde_json::json!({ "n": 0 }))
            .unwrap()
            .key("k")
            .unwrap()
            .header("tenant", "acme")
            .unwrap(),
        Message::json("e1", &serde_json::json!({ "n": 1 }))
            .unwrap()
            .key("k")
            .unwrap(),
        Message::json("e2", &serde_json::json!({ "n": 2 })).unwrap(),
    ];
    let originals = messages.clone();
    commit_messages(&*backend, messages).await.unwrap();
    let store = backend.store_keeping_published();
    let claim = store.claim(10, LEASE).await.unwrap();
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    assert_eq!(store.ack(claim.token, &seqs).await.unwrap(), 3, "[{name}]");

    let hour = Duration::from_secs(3600);
    let later = Replay::since(std::time::SystemTime::now() + hour);
    let nothing = store.replay(&later, 0, 10).await.unwrap();
    assert_eq!(nothing.replayed, 0, "[{name}] replayed the future");
    assert!(nothing.through >= seqs[2], "[{name}] {nothing:?}");

    let mut target = Replay::since(std::time::SystemTime::now() - hour).event_type("e1");
    let first = store.replay(&target, 0, 1).await.unwrap();
    assert_eq!(
        (first.replayed, first.last_seq),
        (1, Some(seqs[0])),
        "[{name}] first page"
    );
    target.through = Some(first.through);
    let second = store.replay(&target, seqs[0], 1).await.unwrap();
    assert_eq!(
        (second.replayed, second.last_seq),
        (1, Some(seqs[1])),
        "[{name}] second page"
    );
    let third = store.replay(&target, seqs[1], 1).await.unwrap();
    assert_eq!(third.replayed, 0, "[{name}] the copies were replayed too");

    let copies = store.claim(10, LEASE).await.unwrap();
    assert_eq!(copies.messages.len(), 2, "[{name}] copies");
    for (copy, original) in copies.messages.iter().zip(&originals) {
        assert_ne!(
            copy.id,
            original.id(),
            "[{name}] a copy kept its original's id"
        );
        assert!(copy.seq > seqs[2], "[{name}] copies go to the end");
        assert_eq!(copy.event_type, original.event_type(), "[{name}]");
        assert_eq!(copy.partition_key.as_deref(), Some("k"), "[{name}]");
        assert_eq!(&copy.payload[..], &original.payload()[..], "[{name}]");
        let mut expected = original.headers().clone();
        expected.insert(
            crate::store::REPLAY_OF_HEADER.to_owned(),
            original.id().to_string(),
        );
        assert_eq!(copy.headers, expected, "[{name}] headers");
    }
    let copy_seqs: Vec<i64> = copies.messages.iter().map(|m| m.seq).collect();
    store.ack(copies.token, &copy_seqs).await.unwrap();

    // Five published rows now: purge by age takes them in batches.
    let published = Purge::Published { older_than: hour };
    assert_eq!(
        store.purge(&published, 2).await.unwrap(),
        0,
        "[{name}] young"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let old = Purge::Published {
        older_than: Duration::from_millis(1),
    };
    assert_eq!(store.purge(&old, 2).await.unwrap(), 2, "[{name}] batch");
    assert_eq!(store.purge(&old, 10).await.unwrap(), 3, "[{name}] rest");
    assert_eq!(store.stats().await.unwrap().published, 0, "[{name}]");
}

/// `enqueue_all` writes its messages in order.
pub async fn enqueue_all_writes_in_order<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let messages: Vec<Message> = (0..25).map(|n| keyed(n, "k")).collect();
    let ids: Vec<_> = messages.iter().map(Message::id).collect();
    commit_messages(&*backend, messages).await.unwrap();
    let claim = backend.store().claim(100, LEASE).await.unwrap();
    let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
    assert_eq!(claimed, ids, "[{name}] claim order");
}

/// Every batch size up to 40, keyed (the insert that locks its keys first on MySQL) and not,
/// writes exactly its messages, in order: where the statement is padded to a size shared by
/// several batch sizes, no padding row is written.
pub async fn every_batch_size_writes_exactly_its_messages<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let store = backend.store();
    for n in 1..=40 {
        for with_keys in [true, false] {
            let messages: Vec<Message> = (0..n)
                .map(|i| match with_keys {
                    true => keyed(i, &format!("k{}", i % 3)),
                    false => Message::json("e", &serde_json::json!({ "n": i })).unwrap(),
                })
                .collect();
            let ids: Vec<_> = messages.iter().map(Message::id).collect();
            commit_messages(&*backend, messages).await.unwrap();
            let claim = store.claim(100, LEASE).await.unwrap();
            let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
            assert_eq!(claimed, ids, "[{name}] {n} messages, keyed: {with_keys}");
            let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
            store.ack(claim.token, &seqs).await.unwrap();
        }
    }
    assert_eq!(
        store.stats().await.unwrap().unpublished(),
        0,
        "[{name}] nothing left over"
    );
}

/// One more row than a statement carries, through every path that splits rows over
/// statements: enqueue, claim, release, a settle that fails every row, and ack.
pub async fn batches_cross_every_statement_boundary<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let n = rows_per_statement(backend.statements().dialect) + 1;
    // Half of them keyed, so the keyed insert (which locks its keys first on MySQL) crosses
    // the boundary too.
    let messages: Vec<Message> = (0..n)
        .map(|i| {
            let m = Message::json("e", &serde_json::json!({ "n": i })).unwrap();
            match i % 2 {
                0 => m.key(format!("k{}", i % 7)).unwrap(),
                _ => m,
            }
        })
        .collect();
    commit_messages(&*backend, messages).await.unwrap();
    let store = backend.store();
    let count = n as u64;

    let claim = store.claim(n, LEASE).await.unwrap();
    assert_eq!(claim.messages.len(), n, "[{name}] first claim");
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        store.release(claim.token, &seqs).await.unwrap(),
        count,
        "[{name}] release"
    );

    let claim = store.claim(n, LEASE).await.unwrap();
    assert_eq!(claim.messages.len(), n, "[{name}] claim after release");
    let failed = Settlement {
        failed: claim
            .messages
            .iter()
            .map(|m| Failure {
                seq: m.seq,
                error: "try again".into(),
                retry_after: Some(Duration::ZERO),
            })
            .collect(),
        ..Settlement::default()
    };
    let settled = store.settle(claim.token, &failed).await.unwrap();
    assert_eq!(
        settled.failed, count,
        "[{name}] settle with every row failed"
    );

    let claim = store.claim(n, LEASE).await.unwrap();
    assert_eq!(claim.messages.len(), n, "[{name}] claim after failure");
    assert!(
        claim.messages.iter().all(|m| m.attempts == 1),
        "[{name}] attempts counted"
    );
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        store.ack(claim.token, &seqs).await.unwrap(),
        count,
        "[{name}] ack"
    );
    assert_eq!(
        store.stats().await.unwrap().unpublished(),
        0,
        "[{name}] left over"
    );
}

/// More keys waiting for a retry than a statement may carry placeholders (MySQL's limit is
/// 65,535): the claim still runs, and still takes the one key that is free.
pub async fn more_busy_keys_than_placeholders_still_claim<B: SqlBackend>(backend: Shared<B>) {
    let name = backend.name();
    let busy = 65_536;
    // In transactions of 1,000 keys: PostgreSQL takes a lock per key until commit, and its
    // lock table (`max_locks_per_transaction`) holds a few thousand.
    for start in (0..busy).step_by(1000) {
        let messages = (start..busy.min(start + 1000))
            .map(|n| keyed(n, &format!("busy-{n}")))
            .collect();
        commit_messages(&*backend, messages).await.unwrap();
    }
    let s = backend.statements();
    let later = match s.dialect {
        Dialect::Postgres => "now() + interval '1 hour'",
        Dialect::MySql => "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR",
        Dialect::Sqlite => "available_at + 3600000000",
    };
    let retrying = format!(
        "UPDATE {} SET attempts = 1, available_at = {later}",
        s.quoted_table()
    );
    let changed = backend.execute(&retrying).await.unwrap();
    assert_eq!(
        changed, busy as u64,
        "[{name}] rows made to wait for a retry"
    );
    let free = keyed(0, "free");
    let id = free.id();
    commit_messages(&*backend, vec![free]).await.unwrap();

    let claim = backend.store().claim(10, LEASE).await.unwrap();
    let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
    assert_eq!(claimed, vec![id], "[{name}] only the free key is claimable");
}

/// The claim leaves out every busy key's rows and nothing else, with as many busy keys as each
/// statement form takes and one more (MySQL lists short busy-key lists as parameters, padded
/// to a few fixed lengths, and binds longer ones as one JSON array).
pub async fn busy_keys_on_each_side_of_every_list_length<B: SqlBackend>(backend: Shared<B>) {
    use std::collections::BTreeSet;

    let name = backend.name();
    let lengths = crate::sql::MySqlClaimSql::LISTED_BUSY_KEYS;
    let keys = lengths[lengths.len() - 1] + 1;
    let mut first = Vec::new();
    let mut second = Vec::new();
    for n in 0..keys {
        first.push(keyed(n, &format!("busy-{n:04}")));
        second.push(keyed(n, &format!("busy-{n:04}")));
    }
    let firsts: Vec<_> = first.iter().map(Message::id).collect();
    let mut everything: BTreeSet<_> = firsts.iter().copied().collect();
    everything.extend(second.iter().map(Message::id));
    commit_messages(&*backend, first).await.unwrap();
    commit_messages(&*backend, second).await.unwrap();
    let free = Message::bytes("free", "x").unwrap();
    everything.insert(free.id());
    commit_messages(&*backend, vec![free]).await.unwrap();

    let store = backend.store();
    let all = keys * 2 + 1;
    let claim = store.claim(all, LEASE).await.unwrap();
    assert_eq!(claim.messages.len(), all, "[{name}] nothing is busy yet");
    let seq_of = |id| claim.messages.iter().find(|m| m.id == id).unwrap().seq;
    let first_seqs: Vec<i64> = firsts.iter().map(|&id| seq_of(id)).collect();
    let release = Settlement {
        released: claim.messages.iter().map(|m| m.seq).collect(),
        ..Settlement::default()
    };
    store.settle(claim.token, &release).await.unwrap();

    let s = backend.statements();
    let later = match s.dialect {
        Dialect::Postgres => "now() + interval '1 hour'",
        Dialect::MySql => "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR",
        Dialect::Sqlite => "available_at + 3600000000",
    };
    let mut busy = 0;
    for count in lengths.iter().flat_map(|&len| [len, len + 1]) {
        if count == 0 || count == busy {
            continue;
        }
        // The first rows of keys `0..count` wait for a retry, so those keys are busy.
        let retrying = format!(
            "UPDATE {} SET attempts = 1, available_at = {later} WHERE id > {} AND id <= {}",
            s.quoted_table(),
            if busy == 0 { 0 } else { first_seqs[busy - 1] },
            first_seqs[count - 1]
        );
        let changed = backend.execute(&retrying).await.unwrap();
        assert_eq!(changed, (count - busy) as u64, "[{name}] rows made to wait");
        busy = count;

        let claim = store.claim(all, LEASE).await.unwrap();
        let claimed: BTreeSet<_> = claim.messages.iter().map(|m| m.id).collect();
        let busy_keys: BTreeSet<String> = (0..busy).map(|n| format!("busy-{n:04}")).collect();
        let leaked: Vec<_> = claim
            .messages
            .iter()
            .filter(|m| {
                m.partition_key
                    .as_ref()
                    .is_some_and(|k| busy_keys.contains(k))
            })
            .map(|m| m.partition_key.clone())
            .collect();
        assert!(
            leaked.is_empty(),
            "[{name}] {busy} busy keys: claimed rows of {leaked:?}"
        );
        assert_eq!(
            claimed.len(),
            everything.len() - 2 * busy,
            "[{name}] {busy} busy keys: every row of the other keys is claimed"
        );
        let release = Settlement {
            released: claim.messages.iter().map(|m| m.seq).collect(),
            ..Settlement::default()
        };
        store.settle(claim.token, &release).await.unwrap();
    }
}

/// Rows that one adapter writes are claimed and settled by another adapter's store on the same
/// table, and the other way round: the adapters share one protocol, so they share a table.
/// `writer` is migrated; `reader` is pointed at its table.
pub async fn rows_cross_between_adapters<A: SqlBackend, B: SqlBackend>(
    writer: Shared<A>,
    reader: Shared<B>,
) {
    let table = writer.statements().table.to_string();
    let reader = reader
        .with_table(&table, crate::DEFAULT_MAX_PAYLOAD_BYTES)
        .unwrap();
    let name = format!("{} -> {}", writer.name(), reader.name());
    let written: Vec<Message> = (0..3).map(|n| keyed(n, "k")).collect();
    let ids: Vec<_> = written.iter().map(Message::id).collect();
    commit_messages(&*writer, written).await.unwrap();

    let store = reader.store();
    let claim = store.claim(10, LEASE).await.unwrap();
    let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
    assert_eq!(
        claimed, ids,
        "[{name}] the reader claims the writer's rows in order"
    );
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    let settlement = Settlement {
        published: vec![seqs[0]],
        failed: vec![Failure {
            seq: seqs[1],
            error: "later".into(),
            retry_after: Some(Duration::ZERO),
        }],
        released: vec![seqs[2]],
    };
    let settled = store.settle(claim.token, &settlement).await.unwrap();
    assert_eq!(
        (settled.published, settled.failed, settled.released),
        (1, 1, 1),
        "[{name}] the reader settles the writer's rows"
    );

    let more: Vec<Message> = (3..5).map(|n| keyed(n, "k")).collect();
    let more_ids: Vec<_> = more.iter().map(Message::id).collect();
    commit_messages(&reader, more).await.unwrap();
    let store = writer.store();
    let claim = store.claim(10, LEASE).await.unwrap();
    let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
    let expected = [&ids[1..], &more_ids[..]].concat();
    assert_eq!(
        claimed, expected,
        "[{name}] the writer claims both adapters' rows in order"
    );
    assert_eq!(
        claim.messages[0].attempts, 1,
        "[{name}] the reader's failure counted"
    );
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        store.ack(claim.token, &seqs).await.unwrap(),
        4,
        "[{name}] ack"
    );
    let (w, r) = (
        store.stats().await.unwrap(),
        reader.store().stats().await.unwrap(),
    );
    assert_eq!(
        (w.unpublished(), r.unpublished()),
        (0, 0),
        "[{name}] {w:?} {r:?}"
    );
}

/// Expands to one `#[tokio::test]` running [`rows_cross_between_adapters`] both ways between
/// two adapters' backends. `$pair` is an expression giving a future of `(A, B)`: two
/// [`SqlBackend`]s on the same database (for SQLite, the same file).
#[macro_export]
macro_rules! interop_suite {
    ($pair:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn rows_cross_between_adapters() {
            let (a, b) = $pair.await;
            $crate::testing::rows_cross_between_adapters(
                ::std::sync::Arc::new(a),
                ::std::sync::Arc::new(b),
            )
            .await;
            let (a, b) = $pair.await;
            $crate::testing::rows_cross_between_adapters(
                ::std::sync::Arc::new(b),
                ::std::sync::Arc::new(a),
            )
            .await;
        }
    };
}

/// Expands to one `#[tokio::test]` per adapter case, each on a fresh [`SqlBackend`] built by
/// `$make` (an expression producing a future of one).
#[macro_export]
macro_rules! adapter_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            a_row_stamped_after_the_claims_clock_still_heads_its_key,
            missing_table_error_says_to_migrate,
            invalid_table_names_are_refused_before_any_sql,
            oversized_payload_rolls_back_the_business_change,
            unserializable_payload_rolls_back_the_business_change,
            committed_order_and_message_land_together,
            kept_published_rows_are_purged_after_the_retention_window,
            kept_published_rows_are_replayed_as_new_copies,
            enqueue_all_writes_in_order,
            every_batch_size_writes_exactly_its_messages,
            batches_cross_every_statement_boundary,
            more_busy_keys_than_placeholders_still_claim,
            busy_keys_on_each_side_of_every_list_length,
            a_raised_payload_limit_takes_larger_messages,
            a_corrupt_row_is_dead_lettered_and_the_rest_publish,
            uninstall_removes_what_migrate_created,
            every_insert_path_keeps_payloads_and_headers_whole,
            a_batch_locks_its_own_keys_and_no_others,
            inbox_runs_a_message_once_per_consumer,
            inbox_record_rolls_back_with_its_transaction,
            concurrent_duplicate_deliveries_have_one_effect,
            inbox_refuses_a_bad_consumer_before_any_sql,
            inbox_records_are_purged_after_the_retention_window,
        );
    };
}
