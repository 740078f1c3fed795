//! `SqlxStore`: the core's SQL store on a sqlx pool.

use std::future::Future;

use outbox_core::Result;
use outbox_core::sql::{
    DbError, Dialect, Executor, Operation, Query, Rows, SqlPool, SqlStore, TransactionPool,
};
use sqlx::{Connection, Pool, Transaction};

use crate::database::OutboxDatabase;
use crate::error::db_error;

/// The core's [`Executor`] over one sqlx connection.
pub(crate) struct SqlxExecutor<'c, DB: OutboxDatabase>(pub(crate) &'c mut DB::Connection);

impl<DB: OutboxDatabase> Executor for SqlxExecutor<'_, DB> {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        DB::fetch(self.0, query)
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        DB::execute(self.0, query)
    }
}

/// A sqlx pool as the core's [`SqlPool`]: each operation on one pooled connection, inside a
/// sqlx transaction when it asks for one (rolled back if the operation fails or is dropped).
#[derive(Debug)]
pub struct SqlxPool<DB: OutboxDatabase>(Pool<DB>);

impl<DB: OutboxDatabase> SqlxPool<DB> {
    /// The sqlx pool.
    pub fn inner(&self) -> &Pool<DB> {
        &self.0
    }
}

impl<DB: OutboxDatabase> From<Pool<DB>> for SqlxPool<DB> {
    fn from(pool: Pool<DB>) -> Self {
        Self(pool)
    }
}

impl<DB: OutboxDatabase> Clone for SqlxPool<DB> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<DB: OutboxDatabase> SqlPool for SqlxPool<DB> {
    fn dialect(&self) -> Dialect {
        DB::DIALECT
    }

    async fn run<O: Operation>(&self, op: O) -> Result<O::Output> {
        let db = |e: sqlx::Error| outbox_core::Error::from(db_error(e));
        let mut conn = self.0.acquire().await.map_err(db)?;
        let mode = op.tx_mode();
        if let Some(sql) = mode.before_begin(op.dialect()) {
            DB::execute(&mut conn, &Query::statement(sql)).await?;
        }
        if !mode.is_transaction() {
            return op.run(&mut SqlxExecutor::<DB>(&mut conn)).await;
        }
        let mut tx = conn.begin().await.map_err(db)?;
        let output = op.run(&mut SqlxExecutor::<DB>(&mut tx)).await?;
        tx.commit().await.map_err(db)?;
        Ok(output)
    }
}

/// Request transactions for the web layers: a [`UnitOfWork`](outbox_core::sql::UnitOfWork)
/// over a `SqlxPool` hands out a `sqlx::Transaction`, which dereferences to the driver's
/// connection (`&mut PgConnection`, ...), so the caller's `sqlx::query(..).execute(&mut *tx)`
/// works unchanged.
impl<DB: OutboxDatabase> TransactionPool for SqlxPool<DB> {
    type Transaction = Transaction<'static, DB>;
    type Connection = DB::Connection;

    fn dialect(&self) -> Dialect {
        DB::DIALECT
    }

    async fn begin(&self) -> Result<Self::Transaction, DbError> {
        self.0.begin().await.map_err(db_error)
    }

    fn connection(tx: &Self::Transaction) -> &Self::Connection {
        tx
    }

    fn connection_mut(tx: &mut Self::Transaction) -> &mut Self::Connection {
        tx
    }

    fn executor(tx: &mut Self::Transaction) -> impl Executor + '_ {
        SqlxExecutor::<DB>(tx)
    }

    async fn commit(tx: Self::Transaction) -> Result<(), DbError> {
        tx.commit().await.map_err(db_error)
    }

    async fn rollback(tx: Self::Transaction) -> Result<(), DbError> {
        tx.rollback().await.map_err(db_error)
    }
}

/// The relay's store on a sqlx pool: PostgreSQL, MySQL/MariaDB or SQLite. It is the core's
/// [`SqlStore`] over a [`SqlxPool`]: `PgStore::new(pool)` for the default table,
/// [`Outbox::store`](crate::Outbox::store) for another.
///
/// Cheap to clone (the pool is shared). Published rows are deleted on ack; call
/// [`keep_published`](SqlStore::keep_published) to keep them for a retention window instead.
pub type SqlxStore<DB> = SqlStore<SqlxPool<DB>>;
