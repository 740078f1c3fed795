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

    async fn process_once(
        &self,
        tx: &mut DieselTx<C>,
        consumer: &str,
        id: outbox_core::Uuid,
        effect: &str,
        hold: std::time::Duration,
    ) -> Result<outbox_core::sql::Processed<()>> {
        blocking(|| {
            self.outbox
                .process_once(&mut *tx.conn, consumer, id, |conn| {
                    C::Backend::execute(conn, &Query::statement(effect))?;
                    std::thread::sleep(hold);
                    Ok(())
                })
        })
    }

    async fn purge_inbox(&self, older_than: std::time::Duration) -> Result<u64> {
        self.store().purge_inbox(older_than).await
    }
}

/// Expands to one test per case of diesel's own transactions (`conn.transaction(..)` committing,
/// returning an error, panicking; no transaction at all), each on a backend built by `$make`
/// (an expression producing a [`DieselBackend`]).
#[macro_export]
macro_rules! transaction_suite {
    ($make:expr) => {
        $crate::transaction_suite!(@cases $make;
            a_committed_closure_keeps_the_business_row_and_its_message,
            an_error_returned_from_the_closure_leaves_neither,
            a_panic_inside_the_closure_leaves_neither,
            enqueue_outside_a_transaction_commits_at_once,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = ::tokio::task::block_in_place(|| $make);
                $crate::testing::$case(&backend).await;
            }
        )*
    };
}

/// The error type of an application's transaction closures: diesel's errors and the outbox's
/// both convert into it.
type AppError = Box<dyn std::error::Error + Send + Sync>;

/// A business table beside the outbox, as an application has.
struct Orders(String);

impl Orders {
    fn create<C: R2D2Connection + OutboxConnection + 'static>(backend: &DieselBackend<C>) -> Self {
        let name = format!("orders_{}", fresh_table());
        backend
            .execute_now(&format!("CREATE TABLE {name} (id BIGINT PRIMARY KEY)"))
            .unwrap();
        Self(name)
    }

    fn insert<C: OutboxConnection>(&self, conn: &mut C, id: i64) -> Result<()> {
        let sql = format!("INSERT INTO {} (id) VALUES ({id})", self.0);
        C::Backend::execute(conn, &Query::statement(&sql))?;
        Ok(())
    }

    fn count<C: R2D2Connection + OutboxConnection + 'static>(
        &self,
        backend: &DieselBackend<C>,
    ) -> i64 {
        let ints = backend
            .fetch_ints(&format!("SELECT COUNT(*) AS n FROM {}", self.0))
            .unwrap();
        ints[0]
    }

    fn drop_table<C: R2D2Connection + OutboxConnection + 'static>(
        self,
        backend: &DieselBackend<C>,
    ) {
        let _ = backend.execute_now(&format!("DROP TABLE {}", self.0));
    }
}

impl<C> DieselBackend<C>
where
    C: R2D2Connection + OutboxConnection + 'static,
{
    fn execute_now(&self, sql: &str) -> Result<u64> {
        Ok(C::Backend::execute(
            &mut *self.conn()?,
            &Query::statement(sql),
        )?)
    }

    fn unpublished(&self) -> u64 {
        let store = self.store();
        let stats = tokio::runtime::Handle::current().block_on(outbox_core::Inspect::stats(&store));
        stats.unwrap().unpublished()
    }
}

fn order_created(id: i64) -> Message {
    Message::json("order.created", &serde_json::json!({ "id": id }))
        .unwrap()
        .key(id)
        .unwrap()
}

/// A closure that returns `Ok` commits the business row and the message together, enqueued on
/// the closure's connection (a pooled connection, passed as the pool hands it out).
pub async fn a_committed_closure_keeps_the_business_row_and_its_message<C>(
    backend: &DieselBackend<C>,
) where
    C: R2D2Connection + OutboxConnection + 'static,
{
    use diesel::Connection;
    tokio::task::block_in_place(|| {
        let orders = Orders::create(backend);
        let mut conn = backend.pool.get().unwrap();
        conn.transaction::<_, AppError, _>(|conn| {
            orders.insert(conn, 1)?;
            backend.outbox.enqueue(conn, order_created(1))?;
            backend
                .outbox
                .enqueue_all(conn, [order_created(2), order_created(3)])?;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            orders.count(backend),
            1,
            "[{}] the business row",
            backend.name()
        );
        assert_eq!(
            backend.unpublished(),
            3,
            "[{}] the messages",
            backend.name()
        );
        orders.drop_table(backend);
    });
}

/// A closure that returns an error rolls back the business row and the message it enqueued.
pub async fn an_error_returned_from_the_closure_leaves_neither<C>(backend: &DieselBackend<C>)
where
    C: R2D2Connection + OutboxConnection + 'static,
{
    use diesel::Connection;
    tokio::task::block_in_place(|| {
        let orders = Orders::create(backend);
        let mut conn = backend.pool.get().unwrap();
        let result = conn.transaction::<(), AppError, _>(|conn| {
            orders.insert(conn, 1)?;
            backend.outbox.enqueue(conn, order_created(1))?;
            Err("the payment was declined".into())
        });
        assert_eq!(result.unwrap_err().to_string(), "the payment was declined");
        assert_eq!(
            orders.count(backend),
            0,
            "[{}] the business row",
            backend.name()
        );
        assert_eq!(backend.unpublished(), 0, "[{}] the message", backend.name());
        orders.drop_table(backend);
    });
}

/// A panic inside the closure leaves the transaction open on its connection; the pool discards
/// a connection returned in that state (closing it, which rolls the transaction back), so
/// neither the business row nor the message is ever committed.
pub async fn a_panic_inside_the_closure_leaves_neither<C>(backend: &DieselBackend<C>)
where
    C: R2D2Connection + OutboxConnection + 'static,
{
    use diesel::Connection;
    tokio::task::block_in_place(|| {
        let orders = Orders::create(backend);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut conn = backend.pool.get().unwrap();
            conn.transaction::<(), AppError, _>(|conn| {
                orders.insert(conn, 1)?;
                backend.outbox.enqueue(conn, order_created(1))?;
                panic!("a bug in the handler");
            })
        }));
        assert!(panicked.is_err(), "the closure panicked");
        assert_eq!(
            orders.count(backend),
            0,
            "[{}] the business row",
            backend.name()
        );
        assert_eq!(backend.unpublished(), 0, "[{}] the message", backend.name());
        orders.drop_table(backend);
    });
}

/// On a connection in no transaction, each enqueue commits at once: a rollback on another
/// connection cannot take it back, and relays see it immediately.
pub async fn enqueue_outside_a_transaction_commits_at_once<C>(backend: &DieselBackend<C>)
where
    C: R2D2Connection + OutboxConnection + 'static,
{
    tokio::task::block_in_place(|| {
        let mut conn = backend.pool.get().unwrap();
        backend.outbox.enqueue(&mut conn, order_created(1)).unwrap();
        backend
            .outbox
            .enqueue_all(&mut *conn, [order_created(2), order_created(3)])
            .unwrap();
        drop(conn);
        assert_eq!(
            backend.unpublished(),
            3,
            "[{}] committed at once",
            backend.name()
        );
    });
}

#[cfg(feature = "async")]
pub use self::async_backend::{
    AsyncDieselBackend, a_committed_async_closure_keeps_the_business_row_and_its_message,
    a_panic_inside_the_async_closure_leaves_neither,
    an_error_returned_from_the_async_closure_leaves_neither,
    async_enqueue_outside_a_transaction_commits_at_once, async_pool, async_pool_with,
};

/// As [`transaction_suite!`](crate::transaction_suite), for diesel-async's
/// `conn.transaction(async |conn| ..)`, each case on a backend built by `$make` (an expression
/// producing a future of an [`AsyncDieselBackend`]).
#[cfg(feature = "async")]
#[macro_export]
macro_rules! async_transaction_suite {
    ($make:expr) => {
        $crate::async_transaction_suite!(@cases $make;
            a_committed_async_closure_keeps_the_business_row_and_its_message,
            an_error_returned_from_the_async_closure_leaves_neither,
            a_panic_inside_the_async_closure_leaves_neither,
            async_enqueue_outside_a_transaction_commits_at_once,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = $make.await;
                $crate::testing::$case(&backend).await;
            }
        )*
    };
}

#[cfg(feature = "async")]
mod async_backend {
    use deadpool::managed::Manager;
    use diesel_async::AsyncConnection;
    use diesel_async::pooled_connection::deadpool::Pool;
    use diesel_async::pooled_connection::{
        AsyncDieselConnectionManager, PoolError, PoolableConnection,
    };
    use outbox_core::sql::{Cell, CellType, Column, DbError, Query, Statements, TransactionPool};
    use outbox_core::testing::{Backend, SqlBackend, Visibility, fresh_table};
    use outbox_core::{Error, Message, Result};

    use crate::Outbox;
    use crate::asynchronous::{
        AsyncDieselPool, AsyncDieselStore, AsyncDieselTransaction, AsyncOutboxConnection,
    };
    use crate::backend::OutboxBackend;

    /// A backend for the core's suites: a deadpool pool of diesel-async connections `C` and a
    /// fresh outbox table.
    pub struct AsyncDieselBackend<C>
    where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        /// For failure messages.
        pub name: &'static str,
        /// The pool every store and transaction of the backend uses.
        pub pool: Pool<C>,
        /// The table under test.
        pub outbox: Outbox<C::Backend>,
        /// How the database orders visibility.
        pub visibility: Visibility,
    }

    /// A deadpool pool of at most `max` connections to `url`, or a panic naming `service`
    /// when it does not answer.
    pub async fn async_pool<C>(service: &str, url: &str, max: usize) -> Pool<C>
    where
        C: PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        async_pool_with(
            service,
            url,
            AsyncDieselConnectionManager::<C>::new(url),
            max,
        )
        .await
    }

    /// As [`async_pool`], with connections from `manager`.
    pub async fn async_pool_with<C>(
        service: &str,
        url: &str,
        manager: AsyncDieselConnectionManager<C>,
        max: usize,
    ) -> Pool<C>
    where
        C: PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        let pool = Pool::builder(manager).max_size(max).build().unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), pool.get()).await;
        match first {
            Ok(Ok(_)) => pool,
            Ok(Err(err)) => panic!(
                "{service} is not reachable at {url}: {err}. Start it (see .ci/run) or point \
                 the environment variable at a running server."
            ),
            Err(_) => {
                panic!("{service} at {url} did not answer within 10s. Start it (see .ci/run).")
            }
        }
    }

    fn pool_error(err: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::from(DbError::connection(err))
    }

    impl<C> AsyncDieselBackend<C>
    where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        /// A backend on a fresh, migrated table (migrated twice: `migrate` is idempotent).
        pub async fn new(name: &'static str, pool: Pool<C>, visibility: Visibility) -> Self {
            let outbox = Outbox::<C::Backend>::with_table(&fresh_table()).unwrap();
            let mut conn = pool.get().await.unwrap();
            outbox.migrate_async(&mut *conn).await.unwrap();
            outbox
                .migrate_async(&mut *conn)
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

        /// Runs `sql`, which returns one integer column `n`, and returns every row's value.
        pub async fn fetch_ints(&self, sql: &str) -> Result<Vec<i64>> {
            static N: &[Column] = &[Column::new("n", CellType::Int)];
            let mut conn = self.pool.get().await.map_err(pool_error)?;
            let rows = C::Backend::fetch_async(&mut *conn, &Query::new(sql, N)).await?;
            rows.cells()
                .iter()
                .map(|cell| match cell {
                    Cell::Int(n) => Ok(*n),
                    other => Err(Error::from(DbError::decode(format!(
                        "expected an integer, got {other:?}"
                    )))),
                })
                .collect()
        }
    }

    impl<C> Backend for AsyncDieselBackend<C>
    where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        type Store = AsyncDieselStore<C>;
        /// The adapter's own request transaction: dropped uncommitted, its connection leaves
        /// the pool and closes, which rolls the transaction back.
        type Tx = AsyncDieselTransaction<C>;

        fn name(&self) -> String {
            format!("{} {}", self.name, self.outbox.table())
        }

        fn store(&self) -> AsyncDieselStore<C> {
            self.outbox.async_store(self.pool.clone())
        }

        async fn begin(&self) -> Result<AsyncDieselTransaction<C>> {
            Ok(AsyncDieselPool::from(self.pool.clone()).begin().await?)
        }

        async fn enqueue(
            &self,
            tx: &mut AsyncDieselTransaction<C>,
            messages: Vec<Message>,
        ) -> Result<()> {
            self.outbox.enqueue_all_async(&mut **tx, messages).await
        }

        async fn commit(&self, tx: AsyncDieselTransaction<C>) -> Result<()> {
            Ok(AsyncDieselPool::<C>::commit(tx).await?)
        }

        async fn rollback(&self, tx: AsyncDieselTransaction<C>) -> Result<()> {
            Ok(AsyncDieselPool::<C>::rollback(tx).await?)
        }

        fn visibility(&self) -> Visibility {
            self.visibility
        }
    }

    impl<C> SqlBackend for AsyncDieselBackend<C>
    where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
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
            let mut conn = self.pool.get().await.map_err(pool_error)?;
            self.outbox.migrate_async(&mut *conn).await
        }

        async fn uninstall(&self) -> Result<()> {
            self.store().uninstall().await
        }

        async fn execute(&self, sql: &str) -> Result<u64> {
            let mut conn = self.pool.get().await.map_err(pool_error)?;
            Ok(C::Backend::execute_async(&mut *conn, &Query::statement(sql)).await?)
        }

        async fn execute_in(&self, tx: &mut AsyncDieselTransaction<C>, sql: &str) -> Result<u64> {
            Ok(C::Backend::execute_async(&mut **tx, &Query::statement(sql)).await?)
        }

        async fn fetch_count(&self, sql: &str) -> Result<i64> {
            let ints = self.fetch_ints(sql).await?;
            match ints[..] {
                [n] => Ok(n),
                _ => Err(Error::from(DbError::decode(format!(
                    "expected one row, got {}",
                    ints.len()
                )))),
            }
        }

        fn store_keeping_published(&self) -> AsyncDieselStore<C> {
            self.store().keep_published(true)
        }

        async fn process_once(
            &self,
            tx: &mut AsyncDieselTransaction<C>,
            consumer: &str,
            id: outbox_core::Uuid,
            effect: &str,
            hold: std::time::Duration,
        ) -> Result<outbox_core::sql::Processed<()>> {
            self.outbox
                .process_once_async(&mut **tx, consumer, id, async |conn| {
                    C::Backend::execute_async(conn, &Query::statement(effect)).await?;
                    tokio::time::sleep(hold).await;
                    Ok(())
                })
                .await
        }

        async fn purge_inbox(&self, older_than: std::time::Duration) -> Result<u64> {
            self.store().purge_inbox(older_than).await
        }
    }

    type AppError = Box<dyn std::error::Error + Send + Sync>;

    /// A business table beside the outbox, as an application has.
    struct Orders(String);

    impl Orders {
        async fn create<C>(backend: &AsyncDieselBackend<C>) -> Self
        where
            C: AsyncOutboxConnection + PoolableConnection + 'static,
            AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
        {
            let name = format!("orders_{}", fresh_table());
            let sql = format!("CREATE TABLE {name} (id BIGINT PRIMARY KEY)");
            backend.execute(&sql).await.unwrap();
            Self(name)
        }

        async fn insert<C: AsyncOutboxConnection>(&self, conn: &mut C, id: i64) -> Result<()> {
            let sql = format!("INSERT INTO {} (id) VALUES ({id})", self.0);
            C::Backend::execute_async(conn, &Query::statement(&sql)).await?;
            Ok(())
        }

        async fn count<C>(&self, backend: &AsyncDieselBackend<C>) -> i64
        where
            C: AsyncOutboxConnection + PoolableConnection + 'static,
            AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
        {
            let sql = format!("SELECT COUNT(*) AS n FROM {}", self.0);
            backend.fetch_count(&sql).await.unwrap()
        }

        async fn drop_table<C>(self, backend: &AsyncDieselBackend<C>)
        where
            C: AsyncOutboxConnection + PoolableConnection + 'static,
            AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
        {
            let _ = backend.execute(&format!("DROP TABLE {}", self.0)).await;
        }
    }

    async fn unpublished<C>(backend: &AsyncDieselBackend<C>) -> u64
    where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        outbox_core::Inspect::stats(&backend.store())
            .await
            .unwrap()
            .unpublished()
    }

    fn order_created(id: i64) -> Message {
        Message::json("order.created", &serde_json::json!({ "id": id }))
            .unwrap()
            .key(id)
            .unwrap()
    }

    /// A closure that returns `Ok` commits the business row and its messages together.
    pub async fn a_committed_async_closure_keeps_the_business_row_and_its_message<C>(
        backend: &AsyncDieselBackend<C>,
    ) where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        let orders = Orders::create(backend).await;
        let mut conn = backend.pool.get().await.unwrap();
        let (outbox, table) = (&backend.outbox, &orders);
        conn.transaction::<_, AppError, _>(async |conn| {
            table.insert(conn, 1).await?;
            outbox.enqueue_async(conn, order_created(1)).await?;
            outbox
                .enqueue_all_async(conn, [order_created(2), order_created(3)])
                .await?;
            Ok(())
        })
        .await
        .unwrap();
        drop(conn);
        let name = backend.name();
        assert_eq!(orders.count(backend).await, 1, "[{name}] the business row");
        assert_eq!(unpublished(backend).await, 3, "[{name}] the messages");
        orders.drop_table(backend).await;
    }

    /// A closure that returns an error rolls back the business row and its message.
    pub async fn an_error_returned_from_the_async_closure_leaves_neither<C>(
        backend: &AsyncDieselBackend<C>,
    ) where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        let orders = Orders::create(backend).await;
        let mut conn = backend.pool.get().await.unwrap();
        let (outbox, table) = (&backend.outbox, &orders);
        let result = conn
            .transaction::<(), AppError, _>(async |conn| {
                table.insert(conn, 1).await?;
                outbox.enqueue_async(conn, order_created(1)).await?;
                Err("the payment was declined".into())
            })
            .await;
        drop(conn);
        assert_eq!(result.unwrap_err().to_string(), "the payment was declined");
        let name = backend.name();
        assert_eq!(orders.count(backend).await, 0, "[{name}] the business row");
        assert_eq!(unpublished(backend).await, 0, "[{name}] the message");
        orders.drop_table(backend).await;
    }

    /// A panic inside the closure (here in a task of its own, as in a request handler) leaves
    /// the transaction open on its connection; the pool discards a connection in that state
    /// before handing it out again, so neither the row nor the message is ever committed.
    pub async fn a_panic_inside_the_async_closure_leaves_neither<C>(backend: &AsyncDieselBackend<C>)
    where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        let orders = Orders::create(backend).await;
        let (pool, outbox, table) = (
            backend.pool.clone(),
            backend.outbox.clone(),
            Orders(orders.0.clone()),
        );
        let handler = tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            conn.transaction::<(), AppError, _>(async |conn| {
                table.insert(conn, 1).await?;
                outbox.enqueue_async(conn, order_created(1)).await?;
                panic!("a bug in the handler");
            })
            .await
        });
        assert!(
            handler.await.unwrap_err().is_panic(),
            "the closure panicked"
        );
        let name = backend.name();
        assert_eq!(orders.count(backend).await, 0, "[{name}] the business row");
        assert_eq!(unpublished(backend).await, 0, "[{name}] the message");
        orders.drop_table(backend).await;
    }

    /// On a connection in no transaction, each enqueue commits at once.
    pub async fn async_enqueue_outside_a_transaction_commits_at_once<C>(
        backend: &AsyncDieselBackend<C>,
    ) where
        C: AsyncOutboxConnection + PoolableConnection + 'static,
        AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
    {
        let mut conn = backend.pool.get().await.unwrap();
        backend
            .outbox
            .enqueue_async(&mut *conn, order_created(1))
            .await
            .unwrap();
        backend
            .outbox
            .enqueue_all_async(&mut *conn, [order_created(2), order_created(3)])
            .await
            .unwrap();
        drop(conn);
        let name = backend.name();
        assert_eq!(unpublished(backend).await, 3, "[{name}] committed at once");
    }
}
