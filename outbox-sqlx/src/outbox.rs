//! `Outbox`: one outbox table on one database, and the enqueue path.

use std::marker::PhantomData;
use std::sync::Arc;

use outbox_core::sql::{Statements, TableName, protocol};
use outbox_core::{DEFAULT_MAX_PAYLOAD_BYTES, Message, Result};
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
    statements: Arc<Statements>,
    max_payload: usize,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: OutboxDatabase> Clone for Outbox<DB> {
    fn clone(&self) -> Self {
        Self {
            statements: Arc::clone(&self.statements),
            max_payload: self.max_payload,
            _db: PhantomData,
        }
    }
}

impl<DB: OutboxDatabase> std::fmt::Debug for Outbox<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dialect", &DB::DIALECT)
            .field("table", &self.statements.table)
            .field("max_payload", &self.max_payload)
            .field("notify", &self.statements.notify)
            .finish()
    }
}

impl<DB: OutboxDatabase> Default for Outbox<DB> {
    fn default() -> Self {
        Self::new()
    }
}

impl<DB: OutboxDatabase> Outbox<DB> {
    /// The default table, `outbox`.
    pub fn new() -> Self {
        Self {
            statements: Statements::default_for(DB::DIALECT),
            max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
            _db: PhantomData,
        }
    }

    /// Another table, optionally schema-qualified (`schema.table`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`](outbox_core::Error::InvalidTableName) unless the name is a plain identifier.
    pub fn with_table(name: &str) -> Result<Self> {
        let table = TableName::new(name)?;
        Ok(Self {
            statements: Arc::new(Statements::new(DB::DIALECT, table)),
            max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
            _db: PhantomData,
        })
    }

    /// The largest payload accepted at enqueue (default 1 MiB).
    #[must_use]
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload = limit;
        self
    }

    /// The table.
    pub fn table(&self) -> &TableName {
        &self.statements.table
    }

    /// The SQL this outbox sends.
    pub fn statements(&self) -> &Statements {
        &self.statements
    }

    /// Writes `message` in the caller's transaction. It becomes visible to relays when the
    /// transaction commits, and disappears with it on rollback.
    ///
    /// # Locking (PostgreSQL)
    ///
    /// So that a key's messages are published in commit order, enqueueing a keyed message
    /// takes a lock on its key that is held until the transaction ends: two transactions that
    /// enqueue the same key run one after the other from that point to commit, as they would
    /// with a row lock on the aggregate. Two concurrent transactions that each `enqueue`
    /// two keys in opposite orders can therefore deadlock (PostgreSQL aborts one with
    /// "deadlock detected"; retry it). [`enqueue_all`](Outbox::enqueue_all) takes all its keys'
    /// locks in one sorted pass, so transactions that enqueue their messages with one
    /// `enqueue_all` call never deadlock on each other's keys. Unkeyed messages take no lock.
    ///
    /// MySQL and MariaDB take the same lock, through a row of `<table>_key_locks` picked by
    /// the key's hash (two keys share a row one time in 65,536, which only makes their
    /// transactions wait for each other; InnoDB reports a deadlock as "Deadlock found when
    /// trying to get lock"). It costs about 1.15x a plain `INSERT` per transaction here;
    /// [`Outbox::lock_keys`] turns it off. SQLite has one writer at a time and needs none.
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
    /// per 8,000 or 4,000 messages).
    ///
    /// On PostgreSQL every distinct key takes a lock that is held until the transaction ends,
    /// so that a key's messages are published in commit order; PostgreSQL's lock table holds
    /// a few thousand such locks across all sessions (`max_locks_per_transaction` times
    /// `max_connections`), and a transaction that enqueues more distinct keys than that fails
    /// with "out of shared memory". Enqueue very large fan-outs in several transactions.
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
        protocol::enqueue(&mut exec, &self.statements, self.max_payload, messages).await
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
        protocol::migrate(&mut SqlxExecutor::<C::Database>(conn), &self.statements).await
    }

    /// A relay store reading this outbox through `pool`.
    pub fn store(&self, pool: Pool<DB>) -> SqlxStore<DB> {
        SqlxStore::with_statements(pool, Arc::clone(&self.statements))
    }

    /// The LISTEN/NOTIFY channel enqueues signal, if enabled.
    pub fn notify_channel(&self) -> Option<String> {
        self.statements
            .notify
            .then(|| self.statements.notify_channel())
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
    pub fn lock_keys(mut self, on: bool) -> Self {
        let statements = (*self.statements).clone().with_key_locks(on);
        self.statements = Arc::new(statements);
        self
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
    pub fn notify_on_commit(mut self, on: bool) -> Self {
        let plain = Statements::new(sqlx::Postgres::DIALECT, self.statements.table.clone());
        self.statements = Arc::new(if on { plain.with_notify() } else { plain });
        self
    }
}
