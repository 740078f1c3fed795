//! `SqlxStore`: the relay's view of an outbox table through a sqlx pool.

use std::future::Future;
use std::time::Duration;

use outbox_core::{
    Claim, Failure, Inspect, LeaseToken, OutboxStats, Result, Settled, Settlement, Store,
    StoredMessage, Uuid,
};
use sqlx::Pool;

use crate::database::{OutboxDatabase, Settle};
use crate::outbox::Outbox;

/// The relay's store on a sqlx pool: PostgreSQL, MySQL/MariaDB or SQLite.
///
/// Cheap to clone (the pool is shared). Published rows are deleted on ack; call
/// [`keep_published`](Self::keep_published) to keep them for a retention window instead.
pub struct SqlxStore<DB: OutboxDatabase> {
    pool: Pool<DB>,
    outbox: Outbox<DB>,
    keep_published: bool,
}

impl<DB: OutboxDatabase> Clone for SqlxStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            outbox: self.outbox.clone(),
            keep_published: self.keep_published,
        }
    }
}

impl<DB: OutboxDatabase> std::fmt::Debug for SqlxStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlxStore")
            .field("outbox", &self.outbox)
            .field("keep_published", &self.keep_published)
            .finish()
    }
}

impl<DB: OutboxDatabase> SqlxStore<DB> {
    /// A store on the default `outbox` table.
    pub fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            outbox: Outbox::new(),
            keep_published: false,
        }
    }

    /// Uses another outbox table.
    #[must_use]
    pub fn with_outbox(mut self, outbox: Outbox<DB>) -> Self {
        self.outbox = outbox;
        self
    }

    /// Keeps published rows (status `published`) instead of deleting them; remove them later
    /// with [`purge_published`](Self::purge_published).
    #[must_use]
    pub fn keep_published(mut self, keep: bool) -> Self {
        self.keep_published = keep;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
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
    pub async fn migrate(&self) -> Result<()>
    where
        DB::Connection: crate::OutboxConnection<Database = DB>,
    {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(outbox_core::Error::database)?;
        self.outbox.migrate(&mut *conn).await
    }

    /// Deletes published rows older than `older_than` (only with
    /// [`keep_published`](Self::keep_published)). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn purge_published(&self, older_than: Duration) -> Result<u64> {
        DB::purge_published(&self.pool, self.outbox.shared_statements(), older_than).await
    }
}

impl<DB: OutboxDatabase> Store for SqlxStore<DB> {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim> {
        let token = LeaseToken::random();
        let s = self.outbox.shared_statements();
        let mut messages = DB::claim(&self.pool, s, limit, lease, token).await?;
        messages.sort_unstable_by_key(|m| m.seq);
        Ok(Claim { token, messages })
    }

    fn ack(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        let kind = if self.keep_published {
            Settle::AckKeep
        } else {
            Settle::AckDelete
        };
        DB::settle(
            &self.pool,
            self.outbox.shared_statements(),
            kind,
            token,
            seqs,
        )
    }

    fn fail(
        &self,
        token: LeaseToken,
        failures: &[Failure],
    ) -> impl Future<Output = Result<u64>> + Send {
        DB::fail(&self.pool, self.outbox.shared_statements(), token, failures)
    }

    fn release(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        DB::settle(
            &self.pool,
            self.outbox.shared_statements(),
            Settle::Release,
            token,
            seqs,
        )
    }

    fn settle(
        &self,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settled>> + Send {
        DB::settle_batch(
            &self.pool,
            self.outbox.shared_statements(),
            self.keep_published,
            token,
            settlement,
        )
    }
}

impl<DB: OutboxDatabase> Inspect for SqlxStore<DB> {
    fn stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send {
        DB::stats(&self.pool, self.outbox.shared_statements())
    }

    fn get(&self, id: Uuid) -> impl Future<Output = Result<Option<StoredMessage>>> + Send {
        DB::get(&self.pool, self.outbox.shared_statements(), id)
    }

    fn retry_dead(&self, id: Option<Uuid>) -> impl Future<Output = Result<u64>> + Send {
        DB::retry_dead(&self.pool, self.outbox.shared_statements(), id)
    }
}
