//! `Outbox`: one outbox table on one database, and the enqueue path on diesel connections.

use outbox_core::sql::{Processed, block_on_ready};
use outbox_core::{Message, Result, Uuid};

use crate::backend::{DieselExecutor, OutboxBackend, OutboxConnection};

outbox_core::adapter_outbox! {
    /// An outbox table on a database: where messages are enqueued and what the relay's store reads.
    ///
    /// The free functions [`enqueue`](crate::enqueue) and [`enqueue_all`](crate::enqueue_all) use
    /// the default table `outbox`; build an `Outbox` to use another table or payload limit.
    ///
    /// ```
    /// # #[cfg(feature = "postgres")] {
    /// use outbox_diesel::{Outbox, Pg};
    ///
    /// let outbox = Outbox::<Pg>::with_table("billing.outbox")?.max_payload_bytes(64 * 1024);
    /// assert_eq!(outbox.table().to_string(), "billing.outbox");
    /// assert!(Outbox::<Pg>::with_table("outbox; DROP TABLE users").is_err());
    /// # }
    /// # Ok::<(), outbox_diesel::Error>(())
    /// ```
    pub struct Outbox<DB: OutboxBackend>;
}

impl<DB: OutboxBackend> Outbox<DB> {
    /// Writes `message` in the connection's transaction: call it inside
    /// `conn.transaction(|conn| ...)`. The message becomes visible to relays when the
    /// transaction commits, and disappears with it when the closure returns an error or
    /// panics. On a connection that is not in a transaction, the insert commits at once.
    ///
    /// A keyed message locks its key until the transaction ends, so that a key's messages are
    /// published in commit order: see [`OutboxTable`](crate::sql::OutboxTable#locking) for
    /// what that costs and when it can deadlock.
    ///
    /// # Errors
    ///
    /// [`PayloadTooLarge`](crate::Error::PayloadTooLarge) before anything is written;
    /// [`MissingTable`](crate::Error::MissingTable) when the migration has not run;
    /// [`Database`](crate::Error::Database) for anything else diesel reports. Return the error
    /// from your transaction closure so the business change rolls back with it.
    pub fn enqueue<C>(&self, conn: &mut C, message: Message) -> Result<()>
    where
        C: OutboxConnection<Backend = DB>,
    {
        self.enqueue_slice(conn, std::slice::from_ref(&message))
    }

    /// Writes several messages in one statement, in order (on MySQL and SQLite, one statement
    /// per 8,000 or 4,000 messages), taking their keys' locks in one sorted pass.
    ///
    /// # Errors
    ///
    /// As for [`Outbox::enqueue`]; nothing is written if any message is rejected.
    pub fn enqueue_all<C, I>(&self, conn: &mut C, messages: I) -> Result<()>
    where
        C: OutboxConnection<Backend = DB>,
        I: IntoIterator<Item = Message>,
    {
        let messages: Vec<Message> = messages.into_iter().collect();
        self.enqueue_slice(conn, &messages)
    }

    fn enqueue_slice<C>(&self, conn: &mut C, messages: &[Message]) -> Result<()>
    where
        C: OutboxConnection<Backend = DB>,
    {
        block_on_ready(
            self.outbox_table()
                .enqueue(&mut DieselExecutor(conn), messages),
        )
    }

    /// Creates the outbox table and its indexes if they do not exist; on PostgreSQL also the
    /// claims table `<table>_claims` and the claim function `<table>_claim()`, on MySQL and
    /// MariaDB the key lock table `<table>_key_locks` (65,536 rows of one integer). Safe to
    /// run repeatedly, and from several processes at once.
    ///
    /// # Errors
    ///
    /// [`Database`](crate::Error::Database) when a statement fails (for example, no permission
    /// to create tables).
    pub fn migrate<C>(&self, conn: &mut C) -> Result<()>
    where
        C: OutboxConnection<Backend = DB>,
    {
        block_on_ready(self.outbox_table().migrate(&mut DieselExecutor(conn)))
    }

    /// Runs `handler` on `conn` unless `consumer` already processed message `message_id`,
    /// recording it in this outbox's inbox table (`<table>_inbox`) on the same connection. Call
    /// it inside `conn.transaction(|conn| ...)`: the record and the handler's effect then
    /// commit together, or roll back together, so a redelivered message is processed once.
    ///
    /// ```no_run
    /// # #[cfg(feature = "postgres")]
    /// # fn demo(conn: &mut diesel::PgConnection, message_id: outbox_diesel::Uuid) -> Result<(), outbox_diesel::BoxError> {
    /// use diesel::{Connection, RunQueryDsl};
    ///
    /// let outcome = conn.transaction(|conn| {
    ///     outbox_diesel::process_once(conn, "billing", message_id, |conn| {
    ///         diesel::sql_query("UPDATE accounts SET balance = balance - 100 WHERE id = 7")
    ///             .execute(conn)?;
    ///         Ok::<_, outbox_diesel::BoxError>(())
    ///     })
    /// })?;
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
    /// deliveries of one id can deadlock: roll back and let the message come again). Return it
    /// from the transaction closure so that the transaction rolls back.
    pub fn process_once<C, T, E>(
        &self,
        conn: &mut C,
        consumer: &str,
        message_id: Uuid,
        handler: impl FnOnce(&mut C) -> Result<T, E>,
    ) -> Result<Processed<T>, E>
    where
        C: OutboxConnection<Backend = DB>,
        E: From<outbox_core::Error>,
    {
        let fresh = block_on_ready(self.outbox_table().record_processed(
            &mut DieselExecutor(conn),
            consumer,
            message_id,
        ))?;
        if !fresh {
            return Ok(Processed::AlreadyProcessed);
        }
        handler(conn).map(Processed::New)
    }

    /// A relay store reading this outbox through `pool`.
    #[cfg(feature = "r2d2")]
    pub fn store<C>(
        &self,
        pool: diesel::r2d2::Pool<diesel::r2d2::ConnectionManager<C>>,
    ) -> crate::DieselStore<C>
    where
        C: OutboxConnection<Backend = DB> + diesel::r2d2::R2D2Connection + 'static,
    {
        crate::DieselStore::with_statements(
            pool,
            std::sync::Arc::clone(self.outbox_table().statements()),
        )
    }
}
