//! `Outbox`: one outbox table on one database, and the enqueue path.

use std::sync::Arc;

use outbox_core::{Message, Result};
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

    /// A relay store reading this outbox through `pool`.
    pub fn store(&self, pool: Pool<DB>) -> SqlxStore<DB> {
        SqlxStore::with_statements(pool, Arc::clone(self.outbox_table().statements()))
    }
}
