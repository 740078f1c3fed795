//! The backend the core's suites run on for this crate (feature `testing`): an r2d2 pool of
//! diesel connections and a fresh outbox table. Other crates use it for interop tests.

use std::time::Duration;

use diesel::connection::TransactionManager;
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, Pool, PooledConnection, R2D2Connection,
};
use outbox_core::sql::{Cell, CellType, Column, Query, Statements};
use outbox_core::testing::{Backend, SqlBackend, Visibility, fresh_table};
use outbox_core::{Error, Message, Result};

use crate::backend::{OutboxBackend, OutboxConnection};
use crate::error::db_error;
use crate::{DieselStore, Outbox};

/// A backend for the core's suites: an r2d2 pool of `C` and a fresh outbox table.
pub struct DieselBackend<C: R2D2Connection + OutboxConnection + 'static> {
    /// For failure messages.
    pub name: &'static str,
    /// The pool every store and transaction of the backend uses.
    pub pool: Pool<ConnectionManager<C>>,
    /// The table under test.
    pub outbox: Outbox<C::Backend>,
    /// How the database orders visibility.
    pub visibility: Visibility,
}

/// An r2d2 pool of at most `max` connections to `url`, or a panic naming `service` when it
/// does not answer.
pub fn pool<C: R2D2Connection + 'static>(
    service: &str,
    url: &str,
    max: u32,
) -> Pool<ConnectionManager<C>> {
    pool_with(service, url, max, NoCustomizer)
}

/// As [`pool`], with `customizer` run on every new connection.
pub fn pool_with<C: R2D2Connection + 'static>(
    service: &str,
    url: &str,
    max: u32,
    customizer: impl CustomizeConnection<C, diesel::r2d2::Error> + 'static,
) -> Pool<ConnectionManager<C>> {
    Pool::builder()
        .max_size(max)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(customizer))
        .build(ConnectionManager::new(url))
        .unwrap_or_else(|err| {
            panic!(
                "{service} is not reachable at {url}: {err}. Start it (see .ci/run) or point the \
                 environment variable at a running server."
            )
        })
}

#[derive(Debug)]
struct NoCustomizer;

impl<C> CustomizeConnection<C, diesel::r2d2::Error> for NoCustomizer {}

/// Sets a busy timeout and WAL journaling on each SQLite connection, as an application would.
#[derive(Debug, Clone, Copy)]
pub struct SqliteSettings;

#[cfg(feature = "sqlite")]
impl CustomizeConnection<diesel::SqliteConnection, diesel::r2d2::Error> for SqliteSettings {
    fn on_acquire(
        &self,
        conn: &mut diesel::SqliteConnection,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// An open transaction on a pooled connection; rolled back when dropped uncommitted.
pub struct DieselTx<C: R2D2Connection + 'static> {
    conn: PooledConnection<ConnectionManager<C>>,
    open: bool,
}

impl<C: R2D2Connection + 'static> DieselTx<C> {
    /// The connection, inside the transaction.
    pub fn conn(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C: R2D2Connection + 'static> Drop for DieselTx<C> {
    fn drop(&mut self) {
        if self.open {
            let _ = C::TransactionManager::rollback_transaction(&mut self.conn);
        }
    }
}

fn blocking<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    tokio::task::block_in_place(f)
}

impl<C> DieselBackend<C>
where
    C: R2D2Connection + OutboxConnection + 'static,
{
    /// A backend on a fresh, migrated table (migrated twice: `migrate` is idempotent).
    pub fn new(
        name: &'static str,
        pool: Pool<ConnectionManager<C>>,
        visibility: Visibility,
    ) -> Self {
        let outbox = Outbox::<C::Backend>::with_table(&fresh_table()).unwrap();
        let mut conn = pool.get().unwrap();
        outbox.migrate(&mut *conn).unwrap();
        outbox.migrate(&mut *conn).expect("migrate is idempotent");
        Self {
            name,
            pool,
            outbox,
            visibility,
        }
    }

    fn conn(&self) -> Result<PooledConnection<ConnectionManager<C>>> {
        self.pool
            .get()
            .map_err(|e| Error::from(outbox_core::sql::DbError::connection(e)))
    }

    /// Runs `sql`, which returns one integer column `n`, and returns every row's value.
    pub fn fetch_ints(&self, sql: &str) -> Result<Vec<i64>> {
        static N: &[Column] = &[Column::new("n", CellType::Int)];
        let rows = C::Backend::fetch(&mut *self.conn()?, &Query::new(sql, N))?;
        rows.cells()
            .iter()
            .map(|cell| match cell {
                Cell::Int(n) => Ok(*n),
                other => Err(Error::from(outbox_core::sql::DbError::decode(format!(
                    "expected an integer, got {other:?}"
                )))),
            })
            .collect()
    }
}

impl<C> Backend for DieselBackend<C>
where
    C: R2D2Connection + OutboxConnection + 'static,
{
    type Store = DieselStore<C>;
    type Tx = DieselTx<C>;

    fn name(&self) -> String {
        format!("{} {}", self.name, self.outbox.table())
    }

    fn store(&self) -> DieselStore<C> {
        self.outbox.store(self.pool.clone())
    }

    async fn begin(&self) -> Result<DieselTx<C>> {
        blocking(|| {
            let mut conn = self.conn()?;
            C::TransactionManager::begin_transaction(&mut *conn)
                .map_err(|e| Error::from(db_error(e)))?;
            Ok(DieselTx { conn, open: true })
        })
    }

    async fn enqueue(&self, tx: &mut DieselTx<C>, messages: Vec<Message>) -> Result<()> {
        blocking(|| self.outbox.enqueue_all(&mut *tx.conn, messages))
    }

    async fn commit(&self, mut tx: DieselTx<C>) -> Result<()> {
        tx.open = false;
        blocking(|| {
            C::TransactionManager::commit_transaction(&mut *tx.conn)
                .map_err(|e| Error::from(db_error(e)))
        })
    }

    async fn rollback(&self, mut tx: DieselTx<C>) -> Result<()> {
        tx.open = false;
        blocking(|| {
            C::TransactionManager::rollback_transaction(&mut *tx.conn)
                .map_err(|e| Error::from(db_error(e)))
        })
    }

    fn visibility(&self) -> Visibility {
        self.visibility
    }
}

impl<C> SqlBackend for DieselBackend<C>
where
    C: R2D2Connection + OutboxConnection + 'static,
{
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
        blocking(|| self.outbox.migrate(&mut *self.conn()?))
    }

    async fn uninstall(&self) -> Result<()> {
        self.store().uninstall().await
    }

    async fn execute(&self, sql: &str) -> Result<u64> {
        blocking(|| {
            Ok(C::Backend::execute(
                &mut *self.conn()?,
                &Query::statement(sql),
            )?)
        })
    }

    async fn execute_in(&self, tx: &mut DieselTx<C>, sql: &str) -> Result<u64> {
        blocking(|| Ok(C::Backend::execute(&mut *tx.conn, &Query::statement(sql))?))
    }

    async fn fetch_count(&self, sql: &str) -> Result<i64> {
        blocking(|| {
            let ints = self.fetch_ints(sql)?;
            match ints[..] {
                [n] => Ok(n),
                _ => Err(Error::from(outbox_core::sql::DbError::decode(format!(
                    "expected one row, got {}",
                    ints.len()
                )))),
            }
        })
    }

    fn store_keeping_published(&self) -> DieselStore<C> {
        self.store().keep_published(true)
    }
}
