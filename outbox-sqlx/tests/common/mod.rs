//! Shared set-up for the database tests: connections from the environment (with defaults for
//! the local services), a fresh outbox table per test, and the backend both of the core's
//! suites run on.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use outbox_core::sql::Statements;
use outbox_core::testing::{Backend, SqlBackend, Visibility, fresh_table};
use outbox_sqlx::{Message, Outbox, OutboxConnection, OutboxDatabase, Result, SqlxStore};
use sqlx::{Pool, Transaction};

pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

/// The URL for `service`, from `var` or the local default.
pub fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
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

fn db(err: sqlx::Error) -> outbox_sqlx::Error {
    outbox_sqlx::Error::database(err)
}

/// A backend for the core's suites: one sqlx pool and a fresh outbox table.
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
        outbox
            .migrate(&mut *conn)
            .await
            .expect("migrate is idempotent");
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
        self.pool.begin().await.map_err(db)
    }

    async fn enqueue(
        &self,
        tx: &mut Transaction<'static, DB>,
        messages: Vec<Message>,
    ) -> Result<()> {
        self.outbox.enqueue_all(&mut **tx, messages).await
    }

    async fn commit(&self, tx: Transaction<'static, DB>) -> Result<()> {
        tx.commit().await.map_err(db)
    }

    async fn rollback(&self, tx: Transaction<'static, DB>) -> Result<()> {
        tx.rollback().await.map_err(db)
    }

    fn visibility(&self) -> Visibility {
        self.visibility
    }
}

/// The suite's plain SQL, on one concrete database (sqlx's generic bounds for it would be
/// longer than the code).
macro_rules! sql_backend {
    ($db:ty) => {
        impl SqlBackend for SqlxBackend<$db> {
            fn statements(&self) -> &Statements {
                self.outbox.statements()
            }

            fn with_table(&self, table: &str, max_payload: usize) -> Result<Self> {
                Ok(Self {
                    name: self.name,
                    pool: self.pool.clone(),
                    outbox: Outbox::with_table(table)?.max_payload_bytes(max_payload),
                    visibility: self.visibility,
                })
            }

            async fn migrate(&self) -> Result<()> {
                let mut conn = self.pool.acquire().await.map_err(db)?;
                self.outbox.migrate(&mut *conn).await
            }

            async fn uninstall(&self) -> Result<()> {
                self.store().uninstall().await
            }

            async fn execute(&self, sql: &str) -> Result<u64> {
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                Ok(done.rows_affected())
            }

            async fn execute_in(
                &self,
                tx: &mut Transaction<'static, $db>,
                sql: &str,
            ) -> Result<u64> {
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                Ok(done.rows_affected())
            }

            async fn fetch_count(&self, sql: &str) -> Result<i64> {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db)
            }

            fn store_keeping_published(&self) -> SqlxStore<$db> {
                self.store().keep_published(true)
            }
        }
    };
}

#[cfg(feature = "postgres")]
sql_backend!(sqlx::Postgres);
#[cfg(feature = "mysql")]
sql_backend!(sqlx::MySql);
#[cfg(feature = "sqlite")]
sql_backend!(sqlx::Sqlite);
