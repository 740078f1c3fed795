//! `Outbox`: one outbox table on one database, and the enqueue path.

use std::marker::PhantomData;
use std::sync::Arc;

use outbox_core::sql::{OutboxTable, Statements, TableName};
use outbox_core::{Message, Result};
use sqlx::Pool;

use crate::database::{OutboxConnection, OutboxDatabase};
use crate::store::{SqlxExecutor, SqlxStore};

/// An outbox table on a database: where messages are enqueued and what the relay's store reads.
///
/// The free functions [`enqueue`](crate::enqueue) and [`enqueue_all`](crate::enqueue_all) use
/// the default table `outbox`; build an `Outbox` to use another table or payload limit.
///
/// ```
/// use outbox_sqlx::{Outbox, Postgres};
///
/// let outbox = Outbox::<Postgres>::with_table("billing.outbox")?.max_payload_bytes(64 * 1024);
/// assert_eq!(outbox.table().to_string(), "billing.outbox");
/// assert!(Outbox::<Postgres>::with_table("outbox; DROP TABLE users").is_err());
/// # Ok::<(), outbox_sqlx::Error>(())
/// ```
pub struct Outbox<DB: OutboxDatabase> {
    table: OutboxTable,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: OutboxDatabase> Clone for Outbox<DB> {
    fn clone(&self) -> Self {
        Self::from_table(self.table.clone())
    }
}

impl<DB: OutboxDatabase> std::fmt::Debug for Outbox<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Outbox").field(&self.table).finish()
    }
}

impl<DB: OutboxDatabase> Default for Outbox<DB> {
    fn default() -> Self {
        Self::new()
    }
}

impl<DB: OutboxDatabase> Outbox<DB> {
    fn from_table(table: OutboxTable) -> Self {
        Self {
            table,
            _db: PhantomData,
        }
    }

    /// The default table, `outbox`.
    pub fn new() -> Self {
        Self::from_table(OutboxTable::new(DB::DIALECT))
    }

    /// Another table, optionally schema-qualified (`schema.table`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`](outbox_core::Error::InvalidTableName) unless the name is a plain identifier.
    pub fn with_table(name: &str) -> Result<Self> {
        OutboxTable::with_table(DB::DIALECT, name).map(Self::from_table)
    }

    /// The largest payload accepted at enqueue (default 1 MiB).
    #[must_use]
    pub fn max_payload_bytes(self, limit: usize) -> Self {
        Self::from_table(self.table.max_payload_bytes(limit))
    }

    /// The table.
    pub fn table(&self) -> &TableName {
        self.table.table()
    }

    /// The SQL this outbox sends.
    pub fn statements(&self) -> &Statements {
        self.table.statements()
    }

    /// Writes `message` in the caller's transaction. It becomes visible to relays when the
    /// transaction commits, and disappears with it on rollback. On a connection that is not
    /// in a transaction, the insert commits at once.
    ///
    /// A keyed message locks its key until the transaction ends, so that a key's messages are
    /// published in commit order: see [`OutboxTable`](crate::sql::OutboxTable#locking) for
    /// what that costs and when it can deadlock. [`Outbox::lock_keys`] turns it off on MySQL.
    ///
    /// # Errors
    ///
    /// [`PayloadTooLarge`](crate::Error::PayloadTooLarge) before anything is written;
    /// [`MissingTable`](crate::Error::MissingTable) when the migration has not run;
    /// [`Database`](crate::Error::Database) for anything else the driver reports. Return
    /// the error from your transaction block so the business change rolls back with it.
    pub async fn enqueue<C>(&self, conn: &mut C, message: Message) -> Result<()>
    where
        C: OutboxConnection,
    {
        self.enqueue_slice(conn, std::slice::from_ref(&message))
            .await
    }

    /// Writes several messages in one statement, in order (on MySQL and SQLite, one statement
    /// per 8,000 or 4,000 messages), taking their keys' locks in one sorted pass.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::enqueue`]; nothing is written if any message is rejected.
    pub async fn enqueue_all<C, I>(&self, conn: &mut C, messages: I) -> Result<()>
    where
        C: OutboxConnection,
        I: IntoIterator<Item = Message>,
    {
        let messages: Vec<Message> = messages.into_iter().collect();
        self.enqueue_slice(conn, &messages).await
    }

    async fn enqueue_slice<C: OutboxConnection>(
        &self,
        conn: &mut C,
        messages: &[Message],
    ) -> Result<()> {
        let mut exec = SqlxExecutor::<C::Database>(conn);
        self.table.enqueue(&mut exec, messages).await
    }

    /// Creates the outbox table and its indexes if they do not exist; on PostgreSQL also the
    /// claims table `<table>_claims` and the claim function `<table>_claim()`, on MySQL and
    /// MariaDB the key lock table `<table>_key_locks` (65,536 rows of one integer).
    /// [`SqlStore::uninstall`](crate::sql::SqlStore::uninstall) removes them all. Safe to run
    /// repeatedly.
    ///
    /// # Errors
    ///
    /// [`Database`](crate::Error::Database) when a statement fails (for example, no permission to create
    /// tables).
    pub async fn migrate<C: OutboxConnection>(&self, conn: &mut C) -> Result<()> {
        self.table
            .migrate(&mut SqlxExecutor::<C::Database>(conn))
            .await
    }

    /// A relay store reading this outbox through `pool`.
    pub fn store(&self, pool: Pool<DB>) -> SqlxStore<DB> {
        SqlxStore::with_statements(pool, Arc::clone(self.table.statements()))
    }

    /// The LISTEN/NOTIFY channel enqueues signal, if enabled.
    pub fn notify_channel(&self) -> Option<String> {
        self.table.notify_channel()
    }
}

#[cfg(feature = "mysql")]
impl Outbox<sqlx::MySql> {
    /// Whether enqueueing a keyed message locks its key until the transaction ends (default
    /// `true`), so that transactions enqueueing the same key commit one after the other and the
    /// key's messages are published in commit order, as on PostgreSQL (see
    /// [`Outbox::enqueue`]).
    ///
    /// Turning it off saves the lock: about 13-17% of a transaction of one business `INSERT`
    /// and one enqueue with 8 producers on MariaDB here (`cargo run --release -p
    /// outbox-bench -- enqueue --db mysql`). The price: two transactions that enqueue the same
    /// key and commit in the opposite order of their inserts are published in insert order.
    /// Turn it off only where a key's transactions never overlap (one writer per key), or
    /// where that order does not matter.
    #[must_use]
    pub fn lock_keys(self, on: bool) -> Self {
        Self::from_table(self.table.lock_keys(on))
    }
}

#[cfg(feature = "postgres")]
impl Outbox<sqlx::Postgres> {
    /// Also sends `NOTIFY` on the table's channel (its name, such as `outbox`) from every
    /// transaction that enqueues, so relays in other processes wake at once instead of at
    /// their next poll. Listen with [`NotifyListener`](crate::NotifyListener). The
    /// notification rides in the insert statement itself (no extra round trip), and identical
    /// notifications in one transaction are delivered once.
    ///
    /// Off by default: PostgreSQL serialises the commits of transactions that notified, which
    /// cost about 36% of producer throughput with 8 producers here
    /// (`cargo run --release -p outbox-bench -- notify`: 0.64x the commits per second).
    #[must_use]
    pub fn notify_on_commit(self, on: bool) -> Self {
        Self::from_table(self.table.notify_on_commit(on))
    }
}
