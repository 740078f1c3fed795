//! `Outbox`: one outbox table on one database, and the enqueue path.

use std::sync::Arc;

use outbox_core::sql::Processed;
use outbox_core::{Message, Result, Uuid};
use sqlx::Pool;

use crate::database::{OutboxConnection, OutboxDatabase};
use crate::store::{SqlxExecutor, SqlxStore};

outbox_core::adapter_outbox! {
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
    pub struct Outbox<DB: OutboxDatabase>;
}

impl<DB: OutboxDatabase> Outbox<DB> {
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
        self.outbox_table().enqueue(&mut exec, messages).await
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
        self.outbox_table()
            .migrate(&mut SqlxExecutor::<C::Database>(conn))
            .await
    }

    /// Runs `handler` on `conn` unless `consumer` already processed message `message_id`,
    /// recording it in this outbox's inbox table (`<table>_inbox`) on the same connection. Call
    /// it inside your transaction: the record and the handler's effect then commit together,
    /// or roll back together, so a redelivered message is processed once.
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool, message_id: outbox_sqlx::Uuid) -> Result<(), outbox_sqlx::BoxError> {
    /// let mut tx = pool.begin().await?;
    /// let outcome = outbox_sqlx::process_once(&mut *tx, "billing", message_id, async |conn| {
    ///     sqlx::query("UPDATE accounts SET balance = balance - 100 WHERE id = 7")
    ///         .execute(&mut *conn)
    ///         .await?;
    ///     Ok::<_, outbox_sqlx::BoxError>(())
    /// })
    /// .await?;
    /// tx.commit().await?;
    /// if outcome.is_duplicate() {
    ///     println!("{message_id}: already processed");
    /// }
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
    pub async fn process_once<C, T, E>(
        &self,
        conn: &mut C,
        consumer: &str,
        message_id: Uuid,
        handler: impl AsyncFnOnce(&mut C) -> Result<T, E>,
    ) -> Result<Processed<T>, E>
    where
        C: OutboxConnection,
        E: From<outbox_core::Error>,
    {
        let fresh = self
            .outbox_table()
            .record_processed(&mut SqlxExecutor::<C::Database>(conn), consumer, message_id)
            .await?;
        if !fresh {
            return Ok(Processed::AlreadyProcessed);
        }
        handler(conn).await.map(Processed::New)
    }

    /// Whether `consumer` has processed message `message_id` (its record is in this outbox's
    /// inbox table and committed, or written by `conn`'s own transaction).
    ///
    /// # Errors
    ///
    /// As for [`Outbox::process_once`].
    pub async fn processed<C: OutboxConnection>(
        &self,
        conn: &mut C,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<bool> {
        self.outbox_table()
            .processed(&mut SqlxExecutor::<C::Database>(conn), consumer, message_id)
            .await
    }

    /// A relay store reading this outbox through `pool`.
    pub fn store(&self, pool: Pool<DB>) -> SqlxStore<DB> {
        SqlxStore::with_statements(pool, Arc::clone(self.outbox_table().statements()))
    }
}
