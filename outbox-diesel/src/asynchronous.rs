//! diesel-async (feature `async`): enqueue on `AsyncPgConnection`, `AsyncMysqlConnection` and
//! `SyncConnectionWrapper<SqliteConnection>`, inside `conn.transaction(async |conn| ...)`, and
//! the relay's store over a deadpool pool of them.
//!
//! ```no_run
//! # async fn demo(conn: &mut diesel_async::AsyncPgConnection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use diesel_async::AsyncConnection;
//! use outbox_diesel::Message;
//!
//! conn.transaction(async |conn| {
//!     // ... the business change, on `conn` ...
//!     let message = Message::json("order.created", &serde_json::json!({"id": 7}))?.key(7)?;
//!     outbox_diesel::asynchronous::enqueue(conn, message).await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! })
//! .await?;
//! # Ok(()) }
//! ```

use std::future::Future;

use deadpool::managed::Manager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, PoolError, PoolableConnection,
};
use diesel_async::{AsyncConnection, TransactionManager};
use outbox_core::sql::{
    DbError, Dialect, Executor, Operation, Processed, Query, Rows, SqlPool, SqlStore,
    TransactionPool,
};
use outbox_core::{Error, Message, Result, Uuid};

use crate::Outbox;
use crate::backend::OutboxBackend;
use crate::error::{TxError, db_error};

/// A diesel-async connection the outbox can enqueue on and read through: `AsyncPgConnection`,
/// `AsyncMysqlConnection`, `SyncConnectionWrapper<SqliteConnection>`, or another connection on
/// those backends. Inside `conn.transaction(async |conn| ...)`, pass the closure's `conn`.
pub trait AsyncOutboxConnection: AsyncConnection<Backend: OutboxBackend> + Send {}

impl<C> AsyncOutboxConnection for C
where
    C: AsyncConnection + Send,
    C::Backend: OutboxBackend,
{
}

/// The core's [`Executor`] over one diesel-async connection.
pub(crate) struct AsyncDieselExecutor<'c, C>(pub(crate) &'c mut C);

impl<C: AsyncOutboxConnection> Executor for AsyncDieselExecutor<'_, C> {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        C::Backend::fetch_async(self.0, query)
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        C::Backend::execute_async(self.0, query)
    }
}

impl<DB: OutboxBackend> Outbox<DB> {
    /// [`Outbox::enqueue`] on a diesel-async connection: call it inside
    /// `conn.transaction(async |conn| ...)` with the closure's `conn`.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::enqueue`].
    pub async fn enqueue_async<C>(&self, conn: &mut C, message: Message) -> Result<()>
    where
        C: AsyncOutboxConnection<Backend = DB>,
    {
        let messages = std::slice::from_ref(&message);
        self.outbox_table()
            .enqueue(&mut AsyncDieselExecutor(conn), messages)
            .await
    }

    /// [`Outbox::enqueue_all`] on a diesel-async connection.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::enqueue`]; nothing is written if any message is rejected.
    pub async fn enqueue_all_async<C, I>(&self, conn: &mut C, messages: I) -> Result<()>
    where
        C: AsyncOutboxConnection<Backend = DB>,
        I: IntoIterator<Item = Message>,
    {
        let messages: Vec<Message> = messages.into_iter().collect();
        self.outbox_table()
            .enqueue(&mut AsyncDieselExecutor(conn), &messages)
            .await
    }

    /// [`Outbox::migrate`] on a diesel-async connection.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::migrate`].
    pub async fn migrate_async<C>(&self, conn: &mut C) -> Result<()>
    where
        C: AsyncOutboxConnection<Backend = DB>,
    {
        self.outbox_table()
            .migrate(&mut AsyncDieselExecutor(conn))
            .await
    }

    /// [`Outbox::process_once`] on a diesel-async connection: call it inside
    /// `conn.transaction(async |conn| ...)` with the closure's `conn`.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::process_once`].
    pub async fn process_once_async<C, T, E>(
        &self,
        conn: &mut C,
        consumer: &str,
        message_id: Uuid,
        handler: impl AsyncFnOnce(&mut C) -> Result<T, E>,
    ) -> Result<Processed<T>, E>
    where
        C: AsyncOutboxConnection<Backend = DB>,
        E: From<Error>,
    {
        let fresh = self
            .outbox_table()
            .record_processed(&mut AsyncDieselExecutor(conn), consumer, message_id)
            .await?;
        if !fresh {
            return Ok(Processed::AlreadyProcessed);
        }
        handler(conn).await.map(Processed::New)
    }

    /// A relay store reading this outbox through a deadpool pool of diesel-async connections.
    pub fn async_store<C>(&self, pool: Pool<C>) -> AsyncDieselStore<C>
    where
        C: AsyncOutboxConnection<Backend = DB> + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        SqlStore::with_statements(
            pool,
            std::sync::Arc::clone(self.outbox_table().statements()),
        )
    }
}

/// Writes `message` to the default `outbox` table in the connection's transaction.
///
/// # Errors
///
/// See [`Outbox::enqueue`].
pub async fn enqueue<C: AsyncOutboxConnection>(conn: &mut C, message: Message) -> Result<()> {
    Outbox::<C::Backend>::new()
        .enqueue_async(conn, message)
        .await
}

/// Writes several messages to the default `outbox` table in one statement, in order.
///
/// # Errors
///
/// See [`Outbox::enqueue_all`].
pub async fn enqueue_all<C, I>(conn: &mut C, messages: I) -> Result<()>
where
    C: AsyncOutboxConnection,
    I: IntoIterator<Item = Message>,
{
    Outbox::<C::Backend>::new()
        .enqueue_all_async(conn, messages)
        .await
}

/// Runs `handler` unless `consumer` already processed message `message_id`, recording it in
/// the default inbox table `outbox_inbox` in the connection's transaction.
///
/// ```no_run
/// # async fn demo(conn: &mut diesel_async::AsyncPgConnection, message_id: outbox_diesel::Uuid) -> Result<(), outbox_diesel::BoxError> {
/// use diesel_async::{AsyncConnection, RunQueryDsl};
///
/// let outcome = conn
///     .transaction(async |conn| {
///         outbox_diesel::asynchronous::process_once(conn, "billing", message_id, async |conn| {
///             diesel::sql_query("UPDATE accounts SET balance = balance - 100 WHERE id = 7")
///                 .execute(conn)
///                 .await?;
///             Ok::<_, outbox_diesel::BoxError>(())
///         })
///         .await
///     })
///     .await?;
/// println!("{message_id}: {outcome}");
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// See [`Outbox::process_once`].
pub async fn process_once<C, T, E>(
    conn: &mut C,
    consumer: &str,
    message_id: Uuid,
    handler: impl AsyncFnOnce(&mut C) -> Result<T, E>,
) -> Result<Processed<T>, E>
where
    C: AsyncOutboxConnection,
    E: From<Error>,
{
    Outbox::<C::Backend>::new()
        .process_once_async(conn, consumer, message_id, handler)
        .await
}

/// Creates the default `outbox` table and its indexes if they do not exist.
///
/// # Errors
///
/// See [`Outbox::migrate`].
pub async fn migrate<C: AsyncOutboxConnection>(conn: &mut C) -> Result<()> {
    Outbox::<C::Backend>::new().migrate_async(conn).await
}

/// A deadpool pool of diesel-async connections as the core's [`SqlPool`]: each operation on
/// one pooled connection, inside `conn.transaction(..)` when it asks for one (rolled back when
/// the operation fails; a connection dropped mid-transaction is discarded by the pool).
pub struct AsyncDieselPool<C: PoolableConnection + 'static>(Pool<C>)
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>;

impl<C: PoolableConnection + 'static> AsyncDieselPool<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    /// The deadpool pool.
    pub fn inner(&self) -> &Pool<C> {
        &self.0
    }
}

impl<C: PoolableConnection + 'static> std::fmt::Debug for AsyncDieselPool<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDieselPool")
            .field("status", &self.0.status())
            .finish()
    }
}

impl<C: PoolableConnection + 'static> Clone for AsyncDieselPool<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: PoolableConnection + 'static> From<Pool<C>> for AsyncDieselPool<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn from(pool: Pool<C>) -> Self {
        Self(pool)
    }
}

impl<C> SqlPool for AsyncDieselPool<C>
where
    C: AsyncOutboxConnection + PoolableConnection + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn dialect(&self) -> Dialect {
        C::Backend::DIALECT
    }

    async fn run<O: Operation>(&self, op: O) -> Result<O::Output> {
        let mut conn = self
            .0
            .get()
            .await
            .map_err(|e| Error::from(DbError::connection(e)))?;
        let conn: &mut C = &mut conn;
        let mode = op.tx_mode();
        if let Some(sql) = mode.before_begin(op.dialect()) {
            C::Backend::execute_async(conn, &Query::statement(sql)).await?;
        }
        if !mode.is_transaction() {
            return op.run(&mut AsyncDieselExecutor(conn)).await;
        }
        let output = conn
            .transaction::<_, TxError, _>(async move |conn| {
                op.run(&mut AsyncDieselExecutor(conn))
                    .await
                    .map_err(TxError::Outbox)
            })
            .await?;
        Ok(output)
    }
}

/// A transaction begun on a pooled diesel-async connection by [`AsyncDieselPool`], for the web
/// layers' request transactions: it dereferences to the connection, so the caller's
/// `diesel::insert_into(..).execute(&mut *tx)` runs unchanged. Dropped before its commit or
/// rollback, it takes its connection out of the pool and closes it, so that the server rolls
/// the transaction back at once instead of the connection idling in the pool inside it.
pub struct AsyncDieselTransaction<C: PoolableConnection + 'static>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    conn: Option<Object<C>>,
}

impl<C: PoolableConnection + 'static> AsyncDieselTransaction<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn conn(&mut self) -> &mut C {
        self.conn
            .as_mut()
            .expect("an open transaction has its connection")
    }

    /// Commits or rolls back; the connection goes back to the pool when that succeeds, and
    /// is closed when it fails.
    async fn end(mut self, commit: bool) -> Result<(), DbError>
    where
        C: AsyncConnection,
    {
        let conn = self.conn();
        let ended = if commit {
            C::TransactionManager::commit_transaction(conn).await
        } else {
            C::TransactionManager::rollback_transaction(conn).await
        };
        if ended.is_ok() {
            drop(self.conn.take());
        }
        ended.map_err(db_error)
    }
}

impl<C: PoolableConnection + 'static> Drop for AsyncDieselTransaction<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

impl<C: PoolableConnection + 'static> std::ops::Deref for AsyncDieselTransaction<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    type Target = C;

    fn deref(&self) -> &C {
        self.conn
            .as_ref()
            .expect("an open transaction has its connection")
    }
}

impl<C: PoolableConnection + 'static> std::ops::DerefMut for AsyncDieselTransaction<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn deref_mut(&mut self) -> &mut C {
        self.conn()
    }
}

impl<C> TransactionPool for AsyncDieselPool<C>
where
    C: AsyncOutboxConnection + PoolableConnection + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    type Transaction = AsyncDieselTransaction<C>;
    type Connection = C;

    fn dialect(&self) -> Dialect {
        C::Backend::DIALECT
    }

    async fn begin(&self) -> Result<Self::Transaction, DbError> {
        let conn = self.0.get().await.map_err(DbError::connection)?;
        let mut tx = AsyncDieselTransaction { conn: Some(conn) };
        C::TransactionManager::begin_transaction(tx.conn())
            .await
            .map_err(db_error)?;
        Ok(tx)
    }

    fn connection(tx: &Self::Transaction) -> &C {
        tx
    }

    fn connection_mut(tx: &mut Self::Transaction) -> &mut C {
        tx
    }

    fn executor(tx: &mut Self::Transaction) -> impl Executor + '_ {
        AsyncDieselExecutor(tx.conn())
    }

    async fn commit(tx: Self::Transaction) -> Result<(), DbError> {
        tx.end(true).await
    }

    async fn rollback(tx: Self::Transaction) -> Result<(), DbError> {
        tx.end(false).await
    }
}

/// The relay's store over a deadpool pool of diesel-async connections: PostgreSQL,
/// MySQL/MariaDB or SQLite (through `SyncConnectionWrapper`). `PgStore::new(pool)` for the
/// default table, [`Outbox::async_store`] for another.
pub type AsyncDieselStore<C> = SqlStore<AsyncDieselPool<C>>;

/// The relay store on PostgreSQL over `AsyncPgConnection`s.
#[cfg(feature = "postgres")]
pub type PgStore = AsyncDieselStore<diesel_async::AsyncPgConnection>;
/// The relay store on MySQL or MariaDB over `AsyncMysqlConnection`s.
#[cfg(feature = "mysql")]
pub type MysqlStore = AsyncDieselStore<diesel_async::AsyncMysqlConnection>;
/// The relay store on SQLite over `SyncConnectionWrapper<SqliteConnection>`s.
#[cfg(feature = "sqlite")]
pub type SqliteStore = AsyncDieselStore<SqliteConnection>;

/// SQLite through diesel-async: `SyncConnectionWrapper<SqliteConnection>`.
#[cfg(feature = "sqlite")]
pub type SqliteConnection =
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;

/// A pool manager for SQLite connections (through `SyncConnectionWrapper`) that gives each
/// new connection a busy timeout, so that a writer waits for another one instead of failing
/// at once with "database is locked" (diesel sets none), and WAL journaling, so that readers
/// do not block the writer.
///
/// ```no_run
/// use std::time::Duration;
/// use diesel_async::pooled_connection::deadpool::Pool;
/// use outbox_diesel::asynchronous::{SqliteStore, sqlite_manager};
///
/// let pool = Pool::builder(sqlite_manager("app.db", Duration::from_secs(5))).build()?;
/// let store = SqliteStore::new(pool);
/// # Ok::<(), diesel_async::pooled_connection::deadpool::BuildError>(())
/// ```
#[cfg(feature = "sqlite")]
pub fn sqlite_manager(
    url: impl Into<String>,
    busy_timeout: std::time::Duration,
) -> AsyncDieselConnectionManager<SqliteConnection> {
    use diesel_async::SimpleAsyncConnection;
    let setup = format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL;",
        busy_timeout.as_millis()
    );
    let mut config = diesel_async::pooled_connection::ManagerConfig::default();
    config.custom_setup = Box::new(move |url| {
        let (url, setup) = (url.to_owned(), setup.clone());
        Box::pin(async move {
            let mut conn = SqliteConnection::establish(&url).await?;
            conn.batch_execute(&setup)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    AsyncDieselConnectionManager::new_with_config(url, config)
}
