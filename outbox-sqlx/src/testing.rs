//! The backend the core's suites run on for this crate (feature `testing`): connections from
//! the environment (with defaults for the local services), a fresh outbox table per test.
//! Other crates use it for interop tests.

use std::future::Future;
use std::time::Duration;

use crate::{Message, Outbox, OutboxConnection, OutboxDatabase, Result, SqlxStore};
use outbox_core::Uuid;
use outbox_core::sql::{Processed, Statements};
use outbox_core::testing::{Backend, SqlBackend, Visibility, fresh_table};
use sqlx::{Pool, Transaction};

/// The PostgreSQL test database when `OUTBOX_TEST_POSTGRES_URL` is not set.
pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The MySQL/MariaDB test database when `OUTBOX_TEST_MYSQL_URL` is not set.
pub const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

/// The URL for `service`, from `var` or the local default.
pub fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Awaits `connect`, or panics naming `service` and how to start it.
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

fn db(err: sqlx::Error) -> crate::Error {
    crate::Error::database(err)
}

/// A backend for the core's suites: one sqlx pool and a fresh outbox table.
pub struct SqlxBackend<DB: OutboxDatabase> {
    /// For failure messages.
    pub name: &'static str,
    /// The pool every store and transaction of the backend uses.
    pub pool: Pool<DB>,
    /// The table under test.
    pub outbox: Outbox<DB>,
    /// How the database orders visibility.
    pub visibility: Visibility,
}

impl<DB> SqlxBackend<DB>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
{
    /// A backend on a fresh, migrated table (migrated twice: `migrate` is idempotent).
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

            async fn process_once(
                &self,
                tx: &mut Transaction<'static, $db>,
                consumer: &str,
                id: Uuid,
                effect: &str,
                hold: Duration,
            ) -> Result<Processed<()>> {
                self.outbox
                    .process_once(&mut **tx, consumer, id, async |conn| {
                        sqlx::query(sqlx::AssertSqlSafe(effect))
                            .execute(&mut *conn)
                            .await
                            .map_err(db)?;
                        tokio::time::sleep(hold).await;
                        Ok(())
                    })
                    .await
            }

            async fn purge_inbox(&self, older_than: Duration) -> Result<u64> {
                self.store().purge_inbox(older_than).await
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

/// A pool on the PostgreSQL test database (`OUTBOX_TEST_POSTGRES_URL`), after dropping the
/// tables tests left there more than an hour ago.
#[cfg(feature = "postgres")]
pub async fn postgres_pool() -> sqlx::PgPool {
    use sqlx::Executor;
    let url = url("OUTBOX_TEST_POSTGRES_URL", POSTGRES_DEFAULT);
    let pool = connect_or_explain(
        "PostgreSQL",
        &url,
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(32)
            .connect(&url),
    )
    .await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'outbox\\_t\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in outbox_core::testing::stale_tables(tables) {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS \"{table}\""
            )))
            .await;
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP FUNCTION IF EXISTS \"{table}_claim\""
            )))
            .await;
    }
    pool
}

/// A pool on the MySQL/MariaDB test database (`OUTBOX_TEST_MYSQL_URL`), after dropping the
/// tables tests left there more than an hour ago.
#[cfg(feature = "mysql")]
pub async fn mysql_pool() -> sqlx::MySqlPool {
    use sqlx::Executor;
    let url = url("OUTBOX_TEST_MYSQL_URL", MYSQL_DEFAULT);
    let pool = connect_or_explain(
        "MariaDB/MySQL",
        &url,
        sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(32)
            .connect(&url),
    )
    .await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name LIKE 'outbox\\_t\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in outbox_core::testing::stale_tables(tables) {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{table}`"
            )))
            .await;
    }
    pool
}

/// A pool on the SQLite database file `path` (created if missing), in WAL mode with a 30 s
/// busy timeout.
#[cfg(feature = "sqlite")]
pub async fn sqlite_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap()
}
