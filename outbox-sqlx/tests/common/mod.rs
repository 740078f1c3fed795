//! Shared set-up for the database tests: connections from the environment (with defaults for
//! the local services), a fresh outbox table per test, and the conformance backend.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox_core::testing::{Backend, Visibility};
use outbox_sqlx::{Message, Outbox, OutboxConnection, OutboxDatabase, Result, SqlxStore};
use sqlx::{Pool, Transaction};

pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

/// The URL for `service`, from `var` or the local default.
pub fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A unique table name that records when it was made, so old ones can be dropped.
pub fn fresh_table() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("outbox_t_{secs}_{:08x}", fastrand::u32(..))
}

/// Test tables older than an hour, by name.
pub fn stale(tables: Vec<String>) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
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

pub async fn connect_or_explain<T, F>(service: &str, url: &str, connect: F) -> T
where
    F: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(pool)) => pool,
        Ok(Err(err)) => panic!(
            "{service} is not reachable at {url}: {err}. Start it (see .ci/run) or point the \
             environment variable at a running server."
        ),
        Err(_) => panic!("{service} at {url} did not answer within 10s. Start it (see .ci/run)."),
    }
}

/// A conformance backend: one sqlx pool and a fresh outbox table.
pub struct SqlxBackend<DB: OutboxDatabase> {
    pub name: &'static str,
    pub pool: Pool<DB>,
    pub outbox: Outbox<DB>,
    pub visibility: Visibility,
}

impl<DB> SqlxBackend<DB>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
{
    pub async fn new(name: &'static str, pool: Pool<DB>, visibility: Visibility) -> Self {
        let outbox = Outbox::<DB>::with_table(&fresh_table()).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        outbox.migrate(&mut *conn).await.unwrap();
        drop(conn);
        Self {
            name,
            pool,
            outbox,
            visibility,
        }
    }
}

impl<DB> Backend for SqlxBackend<DB>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
{
    type Store = SqlxStore<DB>;
    type Tx = Transaction<'static, DB>;

    fn name(&self) -> String {
        format!("{} {}", self.name, self.outbox.table())
    }

    fn store(&self) -> SqlxStore<DB> {
        self.outbox.store(self.pool.clone())
    }

    async fn begin(&self) -> Result<Transaction<'static, DB>> {
        self.pool
            .begin()
            .await
            .map_err(outbox_sqlx::Error::database)
    }

    async fn enqueue(
        &self,
        tx: &mut Transaction<'static, DB>,
        messages: Vec<Message>,
    ) -> Result<()> {
        self.outbox.enqueue_all(&mut **tx, messages).await
    }

    async fn commit(&self, tx: Transaction<'static, DB>) -> Result<()> {
        tx.commit().await.map_err(outbox_sqlx::Error::database)
    }

    async fn rollback(&self, tx: Transaction<'static, DB>) -> Result<()> {
        tx.rollback().await.map_err(outbox_sqlx::Error::database)
    }

    fn visibility(&self) -> Visibility {
        self.visibility
    }
}

/// Adapter tests shared by every database: what an application sees when input is bad.
///
/// `$pool` is an async expression giving a pool; `$create` creates a business table named by
/// `{}`; `$insert` inserts one id into it (one parameter); `$count` counts its rows.
#[macro_export]
macro_rules! adapter_tests {
    ($pool:expr, $create:expr, $insert:expr, $count:expr, $stamp_later:expr) => {
        async fn business_table(pool: &sqlx::Pool<DbUnderTest>) -> String {
            let table = format!("biz_{}", $crate::common::fresh_table());
            sqlx::query(sqlx::AssertSqlSafe(format!($create, table)))
                .execute(pool)
                .await
                .unwrap();
            table
        }

        async fn business_rows(pool: &sqlx::Pool<DbUnderTest>, table: &str) -> i64 {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!($count, table)))
                .fetch_one(pool)
                .await
                .unwrap()
        }

        /// What an application handler looks like: business write, build and enqueue the
        /// message, commit; any error returns early and drops (rolls back) the transaction.
        async fn place_order(
            pool: &sqlx::Pool<DbUnderTest>,
            outbox: &outbox_sqlx::Outbox<DbUnderTest>,
            table: &str,
            build: impl FnOnce() -> outbox_sqlx::Result<outbox_sqlx::Message>,
        ) -> outbox_sqlx::Result<()> {
            let mut tx = pool.begin().await.map_err(outbox_sqlx::Error::database)?;
            sqlx::query(sqlx::AssertSqlSafe(format!($insert, table)))
                .bind(1_i64)
                .execute(&mut *tx)
                .await
                .map_err(outbox_sqlx::Error::database)?;
            let message = build()?;
            outbox.enqueue(&mut *tx, message).await?;
            tx.commit().await.map_err(outbox_sqlx::Error::database)
        }

        async fn migrated_outbox(pool: &sqlx::Pool<DbUnderTest>) -> outbox_sqlx::Outbox<DbUnderTest> {
            let outbox = outbox_sqlx::Outbox::with_table(&$crate::common::fresh_table()).unwrap();
            let mut conn = pool.acquire().await.unwrap();
            outbox.migrate(&mut *conn).await.unwrap();
            outbox.migrate(&mut *conn).await.expect("migrate is idempotent");
            outbox
        }

        /// A row whose transaction's clock reads later than the claim's (on PostgreSQL `now()`
        /// is the transaction's start, so a producer that starts after a claim and commits
        /// before the claim's snapshot stamps its row "in the future") is still its key's head:
        /// the next row of its key must not be claimed without it.
        #[tokio::test]
        async fn a_row_stamped_after_the_claims_clock_still_heads_its_key() {
            use outbox_sqlx::Store;
            let pool = $pool;
            let outbox = migrated_outbox(&pool).await;
            let message = |n: u32| {
                outbox_sqlx::Message::json("e", &serde_json::json!({ "n": n }))
                    .unwrap()
                    .key("k")
                    .unwrap()
            };
            let (first, second) = (message(1), message(2));
            let order = vec![first.id(), second.id()];
            let mut tx = pool.begin().await.unwrap();
            outbox.enqueue(&mut *tx, first).await.unwrap();
            tx.commit().await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!($stamp_later, outbox.table())))
                .execute(&pool)
                .await
                .unwrap();
            let mut tx = pool.begin().await.unwrap();
            outbox.enqueue(&mut *tx, second).await.unwrap();
            tx.commit().await.unwrap();

            let store = outbox.store(pool.clone());
            let claim = store.claim(10, std::time::Duration::from_secs(30)).await.unwrap();
            let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
            assert_eq!(claimed, order, "a key's later row was claimed without its head");
        }

        #[tokio::test]
        async fn missing_table_error_says_to_migrate() {
            let pool = $pool;
            let outbox = outbox_sqlx::Outbox::<DbUnderTest>::with_table(&$crate::common::fresh_table())
                .unwrap();
            let table = business_table(&pool).await;
            let err = place_order(&pool, &outbox, &table, || {
                outbox_sqlx::Message::json("order.created", &serde_json::json!({}))
            })
            .await
            .unwrap_err();
            assert!(matches!(err, outbox_sqlx::Error::MissingTable { .. }), "{err:?}");
            assert!(err.to_string().contains("outbox migrate"), "{err}");
            assert_eq!(business_rows(&pool, &table).await, 0, "business change committed");

            let store = outbox.store(pool.clone());
            let err = outbox_sqlx::Store::claim(&store, 10, std::time::Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(matches!(err, outbox_sqlx::Error::MissingTable { .. }), "{err:?}");
            let relay = outbox_sqlx::Relay::builder(store, outbox_core::memory::NullPublisher)
                .build()
                .unwrap();
            let err = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                relay.run(std::future::pending()),
            )
            .await
            .expect("relay must stop on a missing table")
            .unwrap_err();
            assert!(matches!(err, outbox_sqlx::Error::MissingTable { .. }), "{err:?}");
        }

        #[test]
        fn invalid_table_names_are_refused_before_any_sql() {
            for bad in ["outbox; DROP TABLE users", "out\"box", "1outbox", "a.b.c", ""] {
                let err = outbox_sqlx::Outbox::<DbUnderTest>::with_table(bad).unwrap_err();
                assert!(
                    matches!(err, outbox_sqlx::Error::InvalidTableName { .. }),
                    "{bad:?}: {err:?}"
                );
                assert!(err.to_string().contains("letters, digits and underscores"), "{err}");
            }
        }

        #[tokio::test]
        async fn oversized_payload_rolls_back_the_business_change() {
            let pool = $pool;
            let outbox = migrated_outbox(&pool).await.max_payload_bytes(1024);
            let table = business_table(&pool).await;
            let err = place_order(&pool, &outbox, &table, || {
                outbox_sqlx::Message::bytes("blob.stored", vec![7_u8; 2048])
            })
            .await
            .unwrap_err();
            assert!(
                matches!(err, outbox_sqlx::Error::PayloadTooLarge { size: 2048, limit: 1024 }),
                "{err:?}"
            );
            assert_eq!(business_rows(&pool, &table).await, 0, "business change committed");
            let stats = outbox_sqlx::Inspect::stats(&outbox.store(pool.clone())).await.unwrap();
            assert_eq!(stats.unpublished(), 0, "half-written outbox row");
        }

        #[tokio::test]
        async fn unserializable_payload_rolls_back_the_business_change() {
            struct Unserializable;
            impl serde::Serialize for Unserializable {
                fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                    Err(serde::ser::Error::custom("a map with non-string keys"))
                }
            }
            let pool = $pool;
            let outbox = migrated_outbox(&pool).await;
            let table = business_table(&pool).await;
            let err = place_order(&pool, &outbox, &table, || {
                outbox_sqlx::Message::json("order.created", &Unserializable)
            })
            .await
            .unwrap_err();
            assert!(matches!(err, outbox_sqlx::Error::Encode { .. }), "{err:?}");
            assert_eq!(business_rows(&pool, &table).await, 0, "business change committed");
        }

        #[tokio::test]
        async fn committed_order_and_message_land_together() {
            let pool = $pool;
            let outbox = migrated_outbox(&pool).await;
            let table = business_table(&pool).await;
            let message = outbox_sqlx::Message::json("order.created", &serde_json::json!({"id": 1}))
                .unwrap()
                .key(1)
                .unwrap();
            let id = message.id();
            place_order(&pool, &outbox, &table, move || Ok(message)).await.unwrap();
            assert_eq!(business_rows(&pool, &table).await, 1);
            let store = outbox.store(pool.clone());
            let stored = outbox_sqlx::Inspect::get(&store, id).await.unwrap().expect("row written");
            assert_eq!(stored.status, outbox_sqlx::Status::Pending);
            assert_eq!(stored.envelope.partition_key.as_deref(), Some("1"));
        }

        #[tokio::test]
        async fn kept_published_rows_are_purged_after_the_retention_window() {
            use outbox_sqlx::{Inspect, Store};
            let pool = $pool;
            let outbox = migrated_outbox(&pool).await;
            let messages: Vec<_> = (0..3)
                .map(|n| outbox_sqlx::Message::json("e", &serde_json::json!({"n": n})).unwrap())
                .collect();
            let first = messages[0].id();
            let mut tx = pool.begin().await.unwrap();
            outbox.enqueue_all(&mut *tx, messages).await.unwrap();
            tx.commit().await.unwrap();
            let store = outbox.store(pool.clone()).keep_published(true);
            let claim = store.claim(10, std::time::Duration::from_secs(30)).await.unwrap();
            let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
            assert_eq!(store.ack(claim.token, &seqs).await.unwrap(), 3);
            let stats = store.stats().await.unwrap();
            assert_eq!((stats.published, stats.unpublished()), (3, 0), "{stats:?}");
            let kept = store.get(first).await.unwrap().expect("published row kept");
            assert_eq!(kept.status, outbox_sqlx::Status::Published);
            assert!(store.claim(10, std::time::Duration::from_secs(30)).await.unwrap().messages.is_empty());
            assert_eq!(store.purge_published(std::time::Duration::from_secs(3600)).await.unwrap(), 0);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(store.purge_published(std::time::Duration::from_millis(1)).await.unwrap(), 3);
            assert_eq!(store.stats().await.unwrap().published, 0);
        }

        #[tokio::test]
        async fn enqueue_all_writes_in_order_with_one_statement_per_batch() {
            let pool = $pool;
            let outbox = migrated_outbox(&pool).await;
            let messages: Vec<_> = (0..25)
                .map(|n| {
                    outbox_sqlx::Message::json("e", &serde_json::json!({"n": n}))
                        .unwrap()
                        .key("k")
                        .unwrap()
                })
                .collect();
            let ids: Vec<_> = messages.iter().map(outbox_sqlx::Message::id).collect();
            let mut tx = pool.begin().await.unwrap();
            outbox.enqueue_all(&mut *tx, messages).await.unwrap();
            tx.commit().await.unwrap();
            let store = outbox.store(pool.clone());
            let claim = outbox_sqlx::Store::claim(&store, 100, std::time::Duration::from_secs(30))
                .await
                .unwrap();
            let claimed: Vec<_> = claim.messages.iter().map(|m| m.id).collect();
            assert_eq!(claimed, ids);
        }
    };
}
