//! `OutboxTable`: one outbox table as producers see it, shared by every adapter's `Outbox`.

use std::sync::Arc;

use super::{Dialect, Executor, Statements, TableName, protocol};
use crate::error::Result;
use crate::message::{DEFAULT_MAX_PAYLOAD_BYTES, Message};

/// An outbox table on one database: its statements and the largest payload it accepts. Each
/// adapter's `Outbox` is this type with the adapter's connection types in its signatures.
///
/// # Locking
///
/// So that a key's messages are published in commit order, enqueueing a keyed message takes a
/// lock on its key that is held until the transaction ends: two transactions that enqueue the
/// same key run one after the other from that point to commit, as they would with a row lock
/// on the aggregate. Two concurrent transactions that each enqueue two keys in opposite orders
/// can therefore deadlock (the database aborts one; retry it). An `enqueue` of several
/// messages takes all its keys' locks in one sorted pass, so transactions that enqueue their
/// messages with one call never deadlock on each other's keys. Unkeyed messages take no lock.
///
/// PostgreSQL takes a transaction-scoped advisory lock per key. Its lock table holds a few
/// thousand such locks across all sessions (`max_locks_per_transaction` times
/// `max_connections`): a transaction that enqueues more distinct keys than that fails with
/// "out of shared memory", so enqueue very large fan-outs in several transactions. MySQL and
/// MariaDB lock a row of `<table>_key_locks` picked by the key's hash (two keys share a row
/// one time in 65,536, which only makes their transactions wait for each other); it costs
/// about 1.15x a plain `INSERT` per transaction, and [`lock_keys`](Self::lock_keys) turns it
/// off. SQLite has one writer at a time and needs none.
#[derive(Debug, Clone)]
pub struct OutboxTable {
    statements: Arc<Statements>,
    max_payload: usize,
}

impl OutboxTable {
    /// The default table, `outbox`, on `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            statements: Statements::default_for(dialect),
            max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    /// Another table, optionally schema-qualified (`schema.table`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`](crate::Error::InvalidTableName) unless the name is a plain
    /// identifier.
    pub fn with_table(dialect: Dialect, name: &str) -> Result<Self> {
        let table = TableName::new(name)?;
        Ok(Self {
            statements: Arc::new(Statements::new(dialect, table)),
            max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
        })
    }

    /// The largest payload accepted at enqueue (default 1 MiB).
    #[must_use]
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload = limit;
        self
    }

    /// The largest payload accepted at enqueue.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The table.
    pub fn table(&self) -> &TableName {
        &self.statements.table
    }

    /// The SQL this table is written and read with.
    pub fn statements(&self) -> &Arc<Statements> {
        &self.statements
    }

    /// Whether enqueueing a keyed message locks its key until the transaction ends (MySQL and
    /// MariaDB; default `true`; other databases are unchanged). See [`Statements::with_key_locks`].
    #[must_use]
    pub fn lock_keys(mut self, on: bool) -> Self {
        self.statements = Arc::new((*self.statements).clone().with_key_locks(on));
        self
    }

    /// Whether every inserting statement also sends `NOTIFY` on the table's channel
    /// (PostgreSQL; other databases are unchanged).
    #[must_use]
    pub fn notify_on_commit(mut self, on: bool) -> Self {
        let plain = Statements::new(self.statements.dialect, self.statements.table.clone())
            .with_key_locks(self.statements.enabled_key_locks().is_some());
        self.statements = Arc::new(if on { plain.with_notify() } else { plain });
        self
    }

    /// The LISTEN/NOTIFY channel enqueues signal, if enabled.
    pub fn notify_channel(&self) -> Option<String> {
        self.statements
            .notify
            .then(|| self.statements.notify_channel())
    }

    /// Writes `messages` in order through `exec`, the caller's connection (inside the caller's
    /// transaction): one statement on PostgreSQL, one per 8,000 (MySQL) or 4,000 (SQLite)
    /// messages elsewhere. Nothing is written if any message is rejected.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge) before anything is written;
    /// [`Error::MissingTable`](crate::Error::MissingTable) when the migration has not run;
    /// [`Error::Database`](crate::Error::Database) for anything else the database reports.
    pub async fn enqueue<E: Executor>(&self, exec: &mut E, messages: &[Message]) -> Result<()> {
        protocol::enqueue(exec, &self.statements, self.max_payload, messages).await
    }

    /// Records in this table's inbox that `consumer` processed message `id` (see
    /// [`protocol::record_processed`]): `true` when it is new for the consumer.
    ///
    /// # Errors
    ///
    /// As for [`protocol::record_processed`].
    pub async fn record_processed<E: Executor>(
        &self,
        exec: &mut E,
        consumer: &str,
        id: crate::Uuid,
    ) -> Result<bool> {
        protocol::record_processed(exec, &self.statements, consumer, id).await
    }

    /// Whether this table's inbox holds a record of `consumer` processing message `id`.
    ///
    /// # Errors
    ///
    /// As for [`protocol::record_processed`].
    pub async fn processed<E: Executor>(
        &self,
        exec: &mut E,
        consumer: &str,
        id: crate::Uuid,
    ) -> Result<bool> {
        protocol::processed(exec, &self.statements, consumer, id).await
    }

    /// Creates the table and what the protocol needs beside it, if missing. See
    /// [`protocol::migrate`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when a statement fails.
    pub async fn migrate<E: Executor>(&self, exec: &mut E) -> Result<()> {
        protocol::migrate(exec, &self.statements).await
    }

    /// Drops the table with every message in it, and what [`migrate`](Self::migrate) created
    /// beside it. See [`protocol::uninstall`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when a statement fails.
    pub async fn uninstall<E: Executor>(&self, exec: &mut E) -> Result<()> {
        protocol::uninstall(exec, &self.statements).await
    }
}

/// Defines an adapter's `Outbox<DB>`: an [`OutboxTable`] typed by the adapter's database
/// marker (`DB: $bound`, a trait with a `DIALECT` constant), with the constructors and getters
/// every adapter shares. The adapter adds `enqueue`, `enqueue_all`, `migrate` and `store` over
/// its own connection and pool types, reaching the table through `self.outbox_table()`.
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_outbox {
    ($(#[$meta:meta])* pub struct $name:ident<$db:ident: $bound:path>;) => {
        $(#[$meta])*
        pub struct $name<$db: $bound> {
            table: $crate::sql::OutboxTable,
            _db: ::std::marker::PhantomData<fn() -> $db>,
        }

        impl<$db: $bound> ::std::clone::Clone for $name<$db> {
            fn clone(&self) -> Self {
                Self::from_table(self.table.clone())
            }
        }

        impl<$db: $bound> ::std::fmt::Debug for $name<$db> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.table).finish()
            }
        }

        impl<$db: $bound> ::std::default::Default for $name<$db> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<$db: $bound> $name<$db> {
            fn from_table(table: $crate::sql::OutboxTable) -> Self {
                Self {
                    table,
                    _db: ::std::marker::PhantomData,
                }
            }

            /// The default table, `outbox`.
            pub fn new() -> Self {
                Self::from_table($crate::sql::OutboxTable::new(<$db as $bound>::DIALECT))
            }

            /// Another table, optionally schema-qualified (`schema.table`).
            ///
            /// # Errors
            ///
            /// [`Error::InvalidTableName`](crate::Error::InvalidTableName) unless the name is
            /// a plain identifier.
            pub fn with_table(name: &str) -> $crate::Result<Self> {
                $crate::sql::OutboxTable::with_table(<$db as $bound>::DIALECT, name)
                    .map(Self::from_table)
            }

            /// The largest payload accepted at enqueue (default 1 MiB).
            #[must_use]
            pub fn max_payload_bytes(self, limit: usize) -> Self {
                Self::from_table(self.table.max_payload_bytes(limit))
            }

            /// The table.
            pub fn table(&self) -> &$crate::sql::TableName {
                self.table.table()
            }

            /// The SQL this outbox sends.
            pub fn statements(&self) -> &$crate::sql::Statements {
                self.table.statements()
            }

            /// The table and its settings, as the core sees them.
            pub fn outbox_table(&self) -> &$crate::sql::OutboxTable {
                &self.table
            }

            /// The LISTEN/NOTIFY channel enqueues signal, if enabled.
            pub fn notify_channel(&self) -> Option<String> {
                self.table.notify_channel()
            }

            /// Whether enqueueing a keyed message locks its key until the transaction ends
            /// (MySQL and MariaDB; default `true`; other databases are unchanged), so that
            /// transactions enqueueing the same key commit one after the other and the key's
            /// messages are published in commit order, as on PostgreSQL.
            ///
            /// Turning it off saves the lock: about 13-17% of a transaction of one business
            /// `INSERT` and one enqueue with 8 producers on MariaDB (`cargo run --release -p
            /// outbox-bench -- enqueue --db mysql`). The price: two transactions that enqueue
            /// the same key and commit in the opposite order of their inserts are published in
            /// insert order. Turn it off only where a key's transactions never overlap (one
            /// writer per key), or where that order does not matter.
            #[must_use]
            pub fn lock_keys(self, on: bool) -> Self {
                Self::from_table(self.table.lock_keys(on))
            }

            /// Also sends `NOTIFY` on the table's channel (its name, such as `outbox`) from
            /// every transaction that enqueues (PostgreSQL; other databases are unchanged), so
            /// relays in other processes that `LISTEN` wake at once instead of at their next
            /// poll. The notification rides in the insert statement itself (no extra round
            /// trip), and identical notifications in one transaction are delivered once.
            ///
            /// Off by default: PostgreSQL serialises the commits of transactions that
            /// notified, which cost about 36% of producer throughput with 8 producers
            /// (`cargo run --release -p outbox-bench -- notify`: 0.64x the commits per second).
            #[must_use]
            pub fn notify_on_commit(self, on: bool) -> Self {
                Self::from_table(self.table.notify_on_commit(on))
            }
        }
    };
}
