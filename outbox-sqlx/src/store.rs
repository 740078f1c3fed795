//! `SqlxStore`: the core's SQL store on a sqlx pool.

use std::future::Future;
use std::time::Duration;

use outbox_core::sql::{DbError, Executor, Operation, Query, Rows, SqlPool, SqlStore};
use outbox_core::{
    Claim, Failure, Inspect, LeaseToken, OutboxStats, Result, Settled, Settlement, Status, Store,
    StoredMessage, Uuid,
};
use sqlx::{Connection, Pool};

use crate::database::OutboxDatabase;
use crate::error::db_error;
use crate::outbox::Outbox;

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

impl<DB: OutboxDatabase> Clone for SqlxPool<DB> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<DB: OutboxDatabase> SqlPool for SqlxPool<DB> {
    async fn run<O: Operation>(&self, op: O) -> Result<O::Output> {
        let db = |e: sqlx::Error| outbox_core::Error::Database(Box::new(db_error(e)));
        let mut conn = self.0.acquire().await.map_err(db)?;
        let mode = op.tx_mode();
        if let Some(sql) = mode.before_begin(op.dialect()) {
            DB::execute(&mut conn, &Query::statement(sql))
                .await
                .map_err(|e| outbox_core::Error::Database(Box::new(e)))?;
        }
        if !mode.is_transaction() {
            return op.run(&mut SqlxExecutor::<DB>(&mut conn)).await;
        }
        let mut tx = match mode.begin_statement(op.dialect()) {
            Some(begin) => conn.begin_with(begin).await,
            None => conn.begin().await,
        }
        .map_err(db)?;
        let output = op.run(&mut SqlxExecutor::<DB>(&mut tx)).await?;
        tx.commit().await.map_err(db)?;
        Ok(output)
    }
}

/// The relay's store on a sqlx pool: PostgreSQL, MySQL/MariaDB or SQLite.
///
/// Cheap to clone (the pool is shared). Published rows are deleted on ack; call
/// [`keep_published`](Self::keep_published) to keep them for a retention window instead.
pub struct SqlxStore<DB: OutboxDatabase> {
    inner: SqlStore<SqlxPool<DB>>,
    outbox: Outbox<DB>,
}

impl<DB: OutboxDatabase> Clone for SqlxStore<DB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            outbox: self.outbox.clone(),
        }
    }
}

impl<DB: OutboxDatabase> std::fmt::Debug for SqlxStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlxStore")
            .field("outbox", &self.outbox)
            .field("keep_published", &self.inner.keeps_published())
            .finish()
    }
}

impl<DB: OutboxDatabase> SqlxStore<DB> {
    /// A store on the default `outbox` table.
    pub fn new(pool: Pool<DB>) -> Self {
        Outbox::new().store(pool)
    }

    pub(crate) fn with_parts(pool: Pool<DB>, outbox: Outbox<DB>) -> Self {
        let statements = outbox.shared_statements().clone();
        Self {
            inner: SqlStore::new(SqlxPool(pool), statements),
            outbox,
        }
    }

    /// Uses another outbox table.
    #[must_use]
    pub fn with_outbox(self, outbox: Outbox<DB>) -> Self {
        let keep = self.inner.keeps_published();
        Self::with_parts(self.inner.pool().0.clone(), outbox).keep_published(keep)
    }

    /// Keeps published rows (status `published`) instead of deleting them; remove them later
    /// with [`Inspect::purge_published`].
    #[must_use]
    pub fn keep_published(mut self, keep: bool) -> Self {
        self.inner = self.inner.keep_published(keep);
        self
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<DB> {
        &self.inner.pool().0
    }

    /// The outbox table this store reads.
    pub fn outbox(&self) -> &Outbox<DB> {
        &self.outbox
    }

    /// Creates the outbox table if it does not exist.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::migrate`].
    pub async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }
}

impl<DB: OutboxDatabase> Store for SqlxStore<DB> {
    fn claim(&self, limit: usize, lease: Duration) -> impl Future<Output = Result<Claim>> + Send {
        self.inner.claim(limit, lease)
    }

    fn ack(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        self.inner.ack(token, seqs)
    }

    fn fail(
        &self,
        token: LeaseToken,
        failures: &[Failure],
    ) -> impl Future<Output = Result<u64>> + Send {
        self.inner.fail(token, failures)
    }

    fn release(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        self.inner.release(token, seqs)
    }

    fn settle(
        &self,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settled>> + Send {
        self.inner.settle(token, settlement)
    }
}

impl<DB: OutboxDatabase> Inspect for SqlxStore<DB> {
    fn stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send {
        self.inner.stats()
    }

    fn get(&self, id: Uuid) -> impl Future<Output = Result<Option<StoredMessage>>> + Send {
        self.inner.get(id)
    }

    fn list(
        &self,
        status: Option<Status>,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredMessage>>> + Send {
        self.inner.list(status, after, limit)
    }

    fn retry_dead(&self, id: Option<Uuid>) -> impl Future<Output = Result<u64>> + Send {
        self.inner.retry_dead(id)
    }

    fn purge_published(&self, older_than: Duration) -> impl Future<Output = Result<u64>> + Send {
        self.inner.purge_published(older_than)
    }
}
