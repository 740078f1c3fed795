//! `SqlStore`: the relay's store on any database adapter, through the [`SqlPool`] seam.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::protocol::{
    ClaimRows, Claims, CountRows, EventTypes, FailRows, Get, List, Migrate, Operation, PurgeInbox,
    PurgePublished, PurgeRows, RenewRows, ReplayRows, RetryDead, RetryRows, Settle, SettleClaim,
    SettleRows, Stats, Uninstall,
};
use super::{Dialect, Statements};
use crate::error::Result;
use crate::store::{
    Claim, EventTypeStats, Failure, Filter, Inspect, LeaseToken, LiveClaim, OutboxStats, Purge,
    Replay, Replayed, Retry, Settled, Settlement, Store, StoredMessage,
};

/// Runs [`Operation`]s on pooled connections: what a database adapter implements for its pool.
///
/// For each call: take a connection, begin the transaction [`Operation::tx_mode`] asks for
/// (running [`TxMode::before_begin`](super::TxMode::before_begin) on the connection first),
/// run the operation on an [`Executor`](super::Executor) over that connection, commit when it
/// returns `Ok` and roll back when it fails or is dropped. Errors of the pool itself (no
/// connection, a failed commit) are returned as [`Error::Database`](crate::Error::Database)
/// around a [`DbError`](super::DbError).
///
/// How the three kinds of adapter do it:
///
/// * async drivers (sqlx, diesel-async): acquire, begin with the driver's transaction guard,
///   `op.run(&mut executor).await`, commit;
/// * synchronous drivers (diesel): move the operation (it owns its inputs) into one
///   `spawn_blocking` closure that takes a pooled connection, runs the transaction with the
///   driver's `transaction` method, and drives the operation with
///   [`block_on_ready`](super::block_on_ready), since every statement completes at once;
/// * sea-orm: `begin()` on the `DatabaseConnection` for a transaction, an executor over
///   `&impl ConnectionTrait`, commit.
pub trait SqlPool: Send + Sync + 'static {
    /// The database the pool's connections are to.
    fn dialect(&self) -> Dialect;

    /// Runs `op` on one pooled connection in the transaction it asks for.
    fn run<O: Operation>(&self, op: O) -> impl Future<Output = Result<O::Output>> + Send;
}

impl<P: SqlPool> SqlPool for Arc<P> {
    fn dialect(&self) -> Dialect {
        (**self).dialect()
    }

    fn run<O: Operation>(&self, op: O) -> impl Future<Output = Result<O::Output>> + Send {
        (**self).run(op)
    }
}

/// The relay's [`Store`] (and [`Inspect`]) on one outbox table, over any adapter's
/// [`SqlPool`]. Every adapter's store is this type (`outbox_sqlx::PgStore` is
/// `SqlStore<SqlxPool<Postgres>>`); the adapter supplies the pool. Cheap to clone when the
/// pool is.
///
/// Published rows are deleted on ack; [`keep_published`](Self::keep_published) keeps them for
/// a retention window instead, and [`Inspect::purge_published`] removes them later.
#[derive(Debug, Clone)]
pub struct SqlStore<P> {
    pool: P,
    statements: Arc<Statements>,
    keep_published: bool,
}

impl<P: SqlPool> SqlStore<P> {
    /// A store on the default `outbox` table, through `pool` (an adapter's pool, or what
    /// converts into one, such as a `sqlx::PgPool` for `outbox_sqlx::PgStore`).
    pub fn new(pool: impl Into<P>) -> Self {
        let pool = pool.into();
        let statements = Statements::default_for(pool.dialect());
        Self::with_statements(pool, statements)
    }

    /// A store reading the table of `statements` through `pool`.
    pub fn with_statements(pool: impl Into<P>, statements: Arc<Statements>) -> Self {
        Self {
            pool: pool.into(),
            statements,
            keep_published: false,
        }
    }

    /// Keeps published rows (status `published`) instead of deleting them; remove them later
    /// with [`purge_published`](Self::purge_published).
    #[must_use]
    pub fn keep_published(mut self, keep: bool) -> Self {
        self.keep_published = keep;
        self
    }

    /// Whether published rows are kept.
    pub fn keeps_published(&self) -> bool {
        self.keep_published
    }

    /// The pool.
    pub fn pool(&self) -> &P {
        &self.pool
    }

    /// The statements this store sends.
    pub fn statements(&self) -> &Arc<Statements> {
        &self.statements
    }

    fn s(&self) -> Arc<Statements> {
        Arc::clone(&self.statements)
    }

    /// Creates the outbox table if it does not exist. Safe to run at every start-up, from
    /// several processes at once.
    ///
    /// Besides the table `<table>` and its indexes, PostgreSQL gets the claims table
    /// `<table>_claims` (one row per live claim) and the claim function `<table>_claim()`;
    /// MySQL, MariaDB and SQLite get the table alone. [`uninstall`](Self::uninstall) removes
    /// them all.
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when a statement fails (for example, no
    /// permission to create tables).
    pub fn migrate(&self) -> impl Future<Output = Result<()>> + Send {
        self.pool.run(Migrate { s: self.s() })
    }

    /// Drops the outbox table with every message in it, and what [`migrate`](Self::migrate)
    /// created beside it; what does not exist is skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when a statement fails.
    pub fn uninstall(&self) -> impl Future<Output = Result<()>> + Send {
        self.pool.run(Uninstall { s: self.s() })
    }

    /// Deletes published rows older than `older_than` (only with
    /// [`keep_published`](Self::keep_published)). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn purge_published(
        &self,
        older_than: Duration,
    ) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(PurgePublished {
            s: self.s(),
            older_than,
        })
    }
}

impl<P: SqlPool> SqlStore<P> {
    /// Deletes the inbox's records of messages processed more than `older_than` ago, in
    /// batches of [`INBOX_PURGE_BATCH`](super::protocol::INBOX_PURGE_BATCH) (each its own
    /// statement, so no lock is held long). Returns how many were deleted.
    ///
    /// A purged record no longer stops a duplicate: keep records for longer than any
    /// redelivery can arrive (the broker's redelivery window plus the outbox's retries).
    ///
    /// # Errors
    ///
    /// A database error; what earlier batches deleted stays deleted.
    pub async fn purge_inbox(&self, older_than: Duration) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = self
                .pool
                .run(PurgeInbox {
                    s: self.s(),
                    older_than,
                })
                .await?;
            total += deleted;
            if deleted < super::protocol::INBOX_PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

impl<P: SqlPool> Store for SqlStore<P> {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim> {
        let token = LeaseToken::random();
        let (messages, corrupt) = self
            .pool
            .run(ClaimRows {
                s: self.s(),
                limit,
                lease,
                token,
            })
            .await?;
        Ok(Claim::new(token, messages).with_corrupt(corrupt))
    }

    fn ack(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(SettleRows {
            s: self.s(),
            kind: Settle::ack(self.keep_published),
            token,
            seqs: seqs.to_vec(),
        })
    }

    fn fail(
        &self,
        token: LeaseToken,
        failures: &[Failure],
    ) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(FailRows {
            s: self.s(),
            token,
            failures: failures.to_vec(),
        })
    }

    fn release(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(SettleRows {
            s: self.s(),
            kind: Settle::Release,
            token,
            seqs: seqs.to_vec(),
        })
    }

    fn renew(
        &self,
        token: LeaseToken,
        seqs: &[i64],
        lease: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.pool.run(RenewRows {
            s: self.s(),
            token,
            seqs: seqs.to_vec(),
            lease,
        })
    }

    fn settle(
        &self,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settled>> + Send {
        self.pool.run(SettleClaim {
            s: self.s(),
            keep_published: self.keep_published,
            token,
            settlement: settlement.clone(),
        })
    }
}

impl<P: SqlPool> Inspect for SqlStore<P> {
    fn stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send {
        self.pool.run(Stats { s: self.s() })
    }

    fn get(&self, id: Uuid) -> impl Future<Output = Result<Option<StoredMessage>>> + Send {
        self.pool.run(Get { s: self.s(), id })
    }

    fn event_types(&self) -> impl Future<Output = Result<Vec<EventTypeStats>>> + Send {
        self.pool.run(EventTypes { s: self.s() })
    }

    fn claims(&self) -> impl Future<Output = Result<Vec<LiveClaim>>> + Send {
        self.pool.run(Claims { s: self.s() })
    }

    fn count(&self, filter: &Filter) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(CountRows {
            s: self.s(),
            filter: filter.clone(),
        })
    }

    fn list(
        &self,
        filter: &Filter,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredMessage>>> + Send {
        self.pool.run(List {
            s: self.s(),
            filter: filter.clone(),
            after,
            limit,
        })
    }

    fn retry(&self, target: &Retry, limit: usize) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(RetryRows {
            s: self.s(),
            target: target.clone(),
            limit,
        })
    }

    fn replay(
        &self,
        target: &Replay,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Replayed>> + Send {
        self.pool.run(ReplayRows {
            s: self.s(),
            target: target.clone(),
            after,
            limit,
        })
    }

    fn purge(&self, target: &Purge, limit: usize) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(PurgeRows {
            s: self.s(),
            target: target.clone(),
            limit,
        })
    }

    fn retry_dead(&self, id: Option<Uuid>) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(RetryDead { s: self.s(), id })
    }

    /// Deletes published rows older than `older_than` (kept with
    /// [`keep_published`](Self::keep_published)).
    fn purge_published(&self, older_than: Duration) -> impl Future<Output = Result<u64>> + Send {
        self.pool.run(PurgePublished {
            s: self.s(),
            older_than,
        })
    }
}
