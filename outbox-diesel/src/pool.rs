//! The relay's store over an r2d2 pool of synchronous diesel connections.

use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use outbox_core::sql::{DbError, Dialect, Operation, Query, SqlPool, SqlStore, block_on_ready};
use outbox_core::{Error, Result};

use crate::backend::{DieselExecutor, OutboxBackend, OutboxConnection};
use crate::error::TxError;

/// An r2d2 pool of diesel connections as the core's [`SqlPool`]. Each operation runs on a
/// blocking thread (`tokio::task::spawn_blocking`), never on the async workers, on one pooled
/// connection, inside `conn.transaction(..)` when it asks for one.
pub struct DieselPool<C: R2D2Connection + 'static>(Pool<ConnectionManager<C>>);

impl<C: R2D2Connection + 'static> DieselPool<C> {
    /// The r2d2 pool.
    pub fn inner(&self) -> &Pool<ConnectionManager<C>> {
        &self.0
    }
}

impl<C: R2D2Connection + 'static> std::fmt::Debug for DieselPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselPool")
            .field("state", &self.0.state())
            .finish()
    }
}

impl<C: R2D2Connection + 'static> Clone for DieselPool<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: R2D2Connection + 'static> From<Pool<ConnectionManager<C>>> for DieselPool<C> {
    fn from(pool: Pool<ConnectionManager<C>>) -> Self {
        Self(pool)
    }
}

impl<C> SqlPool for DieselPool<C>
where
    C: OutboxConnection + R2D2Connection + 'static,
{
    fn dialect(&self) -> Dialect {
        C::Backend::DIALECT
    }

    async fn run<O: Operation>(&self, op: O) -> Result<O::Output> {
        let pool = self.0.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| Error::from(DbError::connection(e)))?;
            run_operation(&mut *conn, op)
        });
        match task.await {
            Ok(output) => output,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => Err(DbError::other(err).into()),
        }
    }
}

/// Runs `op` on `conn` in the transaction it asks for.
pub(crate) fn run_operation<C: OutboxConnection, O: Operation>(
    conn: &mut C,
    op: O,
) -> Result<O::Output> {
    let mode = op.tx_mode();
    if let Some(sql) = mode.before_begin(op.dialect()) {
        C::Backend::execute(conn, &Query::statement(sql))?;
    }
    if !mode.is_transaction() {
        return block_on_ready(op.run(&mut DieselExecutor(conn)));
    }
    let output = conn.transaction::<_, TxError, _>(|conn| {
        block_on_ready(op.run(&mut DieselExecutor(conn))).map_err(TxError::Outbox)
    })?;
    Ok(output)
}

/// The relay's store over an r2d2 pool of diesel connections: PostgreSQL, MySQL/MariaDB or
/// SQLite. It is the core's [`SqlStore`] over a [`DieselPool`]: `PgStore::new(pool)` for the
/// default table, [`Outbox::store`](crate::Outbox::store) for another.
///
/// Cheap to clone (the pool is shared). Published rows are deleted on ack; call
/// [`keep_published`](SqlStore::keep_published) to keep them for a retention window instead.
pub type DieselStore<C> = SqlStore<DieselPool<C>>;

/// Settings for every SQLite connection of an r2d2 pool: a busy timeout, so that a writer waits
/// for another one instead of failing at once with "database is locked" (diesel sets none), and
/// WAL journaling, so that readers do not block the writer.
///
/// ```no_run
/// use diesel::SqliteConnection;
/// use diesel::r2d2::{ConnectionManager, Pool};
/// use outbox_diesel::SqliteSetup;
///
/// let pool = Pool::builder()
///     .connection_customizer(Box::new(SqliteSetup::default()))
///     .build(ConnectionManager::<SqliteConnection>::new("app.db"))?;
/// # Ok::<(), diesel::r2d2::PoolError>(())
/// ```
#[cfg(feature = "sqlite")]
#[derive(Debug, Clone, Copy)]
pub struct SqliteSetup {
    busy_timeout: std::time::Duration,
}

#[cfg(feature = "sqlite")]
impl Default for SqliteSetup {
    /// A 5 s busy timeout.
    fn default() -> Self {
        Self {
            busy_timeout: std::time::Duration::from_secs(5),
        }
    }
}

#[cfg(feature = "sqlite")]
impl SqliteSetup {
    /// How long a statement waits for another connection's write lock before failing.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

#[cfg(feature = "sqlite")]
impl diesel::r2d2::CustomizeConnection<diesel::SqliteConnection, diesel::r2d2::Error>
    for SqliteSetup
{
    fn on_acquire(
        &self,
        conn: &mut diesel::SqliteConnection,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        use diesel::connection::SimpleConnection;
        let millis = self.busy_timeout.as_millis();
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {millis}; PRAGMA journal_mode = WAL;"
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}
