//! `Outbox`: one outbox table on whichever database the connection is to, and the enqueue path.

use std::sync::{Arc, LazyLock};

use outbox_core::sql::{Dialect, OutboxTable, Processed, Statements, TableName};
use outbox_core::{Message, Result, Uuid};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend};

use crate::executor::{SeaExecutor, dialect};
use crate::store::SeaOrmStore;

/// An outbox table: where messages are enqueued and what the relay's store reads, on
/// PostgreSQL, MySQL/MariaDB or SQLite, whichever the connection it is given is to (as with
/// sea-orm, the database is chosen at run time, by the URL).
///
/// The free functions [`enqueue`](crate::enqueue) and [`enqueue_all`](crate::enqueue_all) use
/// the default table `outbox`; build an `Outbox` to use another table or payload limit.
///
/// ```
/// use outbox_seaorm::{DbBackend, Outbox};
///
/// let outbox = Outbox::with_table("billing.outbox")?.max_payload_bytes(64 * 1024);
/// assert_eq!(outbox.table().to_string(), "billing.outbox");
/// assert!(outbox.statements(DbBackend::MySql)?.insert_one.contains("`billing`.`outbox`"));
/// assert!(Outbox::with_table("outbox; DROP TABLE users").is_err());
/// # Ok::<(), outbox_seaorm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    /// The table on PostgreSQL, MySQL and SQLite, in that order.
    tables: [OutboxTable; 3],
}

const DIALECTS: [Dialect; 3] = [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite];

/// The default table, shared by the free functions.
pub(crate) static DEFAULT: LazyLock<Outbox> = LazyLock::new(Outbox::new);

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// The default table, `outbox`.
    pub fn new() -> Self {
        Self {
            tables: DIALECTS.map(OutboxTable::new),
        }
    }

    /// Another table, optionally schema-qualified (`schema.table`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`](crate::Error::InvalidTableName) unless the name is a plain
    /// identifier.
    pub fn with_table(name: &str) -> Result<Self> {
        TableName::new(name)?;
        Ok(Self {
            tables: DIALECTS.map(|d| OutboxTable::with_table(d, name).expect("a valid name")),
        })
    }

    fn map(self, f: impl Fn(OutboxTable) -> OutboxTable) -> Self {
        Self {
            tables: self.tables.map(f),
        }
    }

    /// The largest payload accepted at enqueue (default 1 MiB).
    #[must_use]
    pub fn max_payload_bytes(self, limit: usize) -> Self {
        self.map(|t| t.max_payload_bytes(limit))
    }

    /// Whether enqueueing a keyed message locks its key until the transaction ends (MySQL and
    /// MariaDB; default `true`). See
    /// [`OutboxTable::lock_keys`](crate::sql::OutboxTable::lock_keys) for what it costs and
    /// what turning it off gives up.
    #[must_use]
    pub fn lock_keys(self, on: bool) -> Self {
        self.map(|t| t.lock_keys(on))
    }

    /// Also sends `NOTIFY` on the table's channel from every transaction that enqueues
    /// (PostgreSQL). See
    /// [`OutboxTable::notify_on_commit`](crate::sql::OutboxTable::notify_on_commit).
    #[must_use]
    pub fn notify_on_commit(self, on: bool) -> Self {
        self.map(|t| t.notify_on_commit(on))
    }

    /// The table.
    pub fn table(&self) -> &TableName {
        self.tables[0].table()
    }

    /// The table and its settings on `backend`, as the core sees them.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for a backend other than PostgreSQL,
    /// MySQL/MariaDB and SQLite.
    pub fn outbox_table(&self, backend: DbBackend) -> Result<&OutboxTable> {
        let index = match dialect(backend)? {
            Dialect::Postgres => 0,
            Dialect::MySql => 1,
            _ => 2,
        };
        Ok(&self.tables[index])
    }

    /// The SQL this outbox sends on `backend`.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::outbox_table`].
    pub fn statements(&self, backend: DbBackend) -> Result<&Arc<Statements>> {
        Ok(self.outbox_table(backend)?.statements())
    }

    /// Writes `message` through `conn`: a [`DatabaseTransaction`](sea_orm::DatabaseTransaction)
    /// (the `txn` of `db.transaction(|txn| ...)`, or what `db.begin()` returned), where it
    /// becomes visible to relays when the transaction commits and disappears with it on
    /// rollback; or a [`DatabaseConnection`], where the insert commits at once.
    ///
    /// A keyed message locks its key until the transaction ends, so that a key's messages are
    /// published in commit order: see [`OutboxTable`](crate::sql::OutboxTable#locking) for
    /// what that costs and when it can deadlock.
    ///
    /// # Errors
    ///
    /// [`PayloadTooLarge`](crate::Error::PayloadTooLarge) before anything is written;
    /// [`MissingTable`](crate::Error::MissingTable) when the migration has not run;
    /// [`Database`](crate::Error::Database) for anything else the driver reports. Return the
    /// error from your transaction closure so the business change rolls back with it.
    pub async fn enqueue<C: ConnectionTrait>(&self, conn: &C, message: Message) -> Result<()> {
        self.enqueue_slice(conn, std::slice::from_ref(&message))
            .await
    }

    /// Writes several messages in one statement, in order (on MySQL and SQLite, one statement
    /// per 8,000 or 4,000 messages), taking their keys' locks in one sorted pass.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::enqueue`]; nothing is written if any message is rejected.
    pub async fn enqueue_all<C, I>(&self, conn: &C, messages: I) -> Result<()>
    where
        C: ConnectionTrait,
        I: IntoIterator<Item = Message>,
    {
        let messages: Vec<Message> = messages.into_iter().collect();
        self.enqueue_slice(conn, &messages).await
    }

    async fn enqueue_slice<C: ConnectionTrait>(
        &self,
        conn: &C,
        messages: &[Message],
    ) -> Result<()> {
        self.outbox_table(conn.get_database_backend())?
            .enqueue(&mut SeaExecutor(conn), messages)
            .await
    }

    /// Runs `handler` on `txn` unless `consumer` already processed message `message_id`,
    /// recording it in this outbox's inbox table (`<table>_inbox`) in the same transaction: the
    /// record and the handler's effect commit together, or roll back together, so a
    /// redelivered message is processed once.
    ///
    /// ```no_run
    /// # async fn demo(db: sea_orm::DatabaseConnection, message_id: outbox_seaorm::Uuid) -> Result<(), outbox_seaorm::BoxError> {
    /// use sea_orm::{ConnectionTrait, TransactionTrait};
    ///
    /// let txn = db.begin().await?;
    /// let outcome = outbox_seaorm::process_once(&txn, "billing", message_id, async |txn| {
    ///     txn.execute_unprepared("UPDATE accounts SET balance = balance - 100 WHERE id = 7")
    ///         .await?;
    ///     Ok::<_, outbox_seaorm::BoxError>(())
    /// })
    /// .await?;
    /// txn.commit().await?;
    /// println!("{message_id}: {outcome}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A concurrent delivery of the same id waits for the first one's transaction: when that
    /// commits, this one finds the record and skips the handler; when it rolls back, this one
    /// runs the handler. Remove old records with
    /// [`SqlStore::purge_inbox`](crate::sql::SqlStore::purge_inbox).
    ///
    /// # Errors
    ///
    /// The handler's error, or the outbox's converted into it:
    /// [`InvalidConsumer`](crate::Error::InvalidConsumer) before anything is written,
    /// [`MissingTable`](crate::Error::MissingTable) when the migration has not run,
    /// [`Database`](crate::Error::Database) for anything else (on MySQL and MariaDB, two
    /// deliveries of one id can deadlock: roll back and let the message come again). Roll the
    /// transaction back on any error.
    pub async fn process_once<T, E>(
        &self,
        txn: &DatabaseTransaction,
        consumer: &str,
        message_id: Uuid,
        handler: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    ) -> Result<Processed<T>, E>
    where
        E: From<outbox_core::Error>,
    {
        let fresh = self
            .outbox_table(txn.get_database_backend())?
            .record_processed(&mut SeaExecutor(txn), consumer, message_id)
            .await?;
        if !fresh {
            return Ok(Processed::AlreadyProcessed);
        }
        handler(txn).await.map(Processed::New)
    }

    /// Creates the outbox table and its indexes if they do not exist; on PostgreSQL also the
    /// claims table `<table>_claims` and the claim function `<table>_claim()`, on MySQL and
    /// MariaDB the key lock table `<table>_key_locks` (65,536 rows of one integer).
    /// [`SqlStore::uninstall`](crate::sql::SqlStore::uninstall) removes them all. Safe to run
    /// repeatedly. With the `migration` feature, [`OutboxMigration`](crate::OutboxMigration)
    /// runs it from your `Migrator`.
    ///
    /// # Errors
    ///
    /// [`Database`](crate::Error::Database) when a statement fails (for example, no permission
    /// to create tables).
    pub async fn migrate<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        self.outbox_table(conn.get_database_backend())?
            .migrate(&mut SeaExecutor(conn))
            .await
    }

    /// Drops the outbox table with every message in it, and what [`migrate`](Self::migrate)
    /// created beside it; what does not exist is skipped.
    ///
    /// # Errors
    ///
    /// [`Database`](crate::Error::Database) when a statement fails.
    pub async fn uninstall<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        self.outbox_table(conn.get_database_backend())?
            .uninstall(&mut SeaExecutor(conn))
            .await
    }

    /// A relay store reading this outbox through `db`.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::outbox_table`].
    pub fn store(&self, db: DatabaseConnection) -> Result<SeaOrmStore> {
        let statements = Arc::clone(self.statements(db.get_database_backend())?);
        Ok(SeaOrmStore::with_statements(db, statements))
    }
}
