//! Shared set-up for the database tests: connections from the environment (with defaults for
//! the local services), a fresh outbox table per test, and the conformance backend.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox_core::testing::Backend;
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
    pub concurrent_writers: bool,
}

impl<DB> SqlxBackend<DB>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
{
    pub async fn new(name: &'static str, pool: Pool<DB>, concurrent_writers: bool) -> Self {
        let outbox = Outbox::<DB>::with_table(&fresh_table()).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        outbox.migrate(&mut *conn).await.unwrap();
        drop(conn);
        Self {
            name,
            pool,
            outbox,
            concurrent_writers,
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

    fn concurrent_writers(&self) -> bool {
        self.concurrent_writers
    }
}
