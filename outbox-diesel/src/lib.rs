#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "async")]
pub mod asynchronous;
mod backend;
mod error;
mod migration;
mod outbox;
#[cfg(feature = "r2d2")]
mod pool;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "mysql")]
pub use diesel::mysql::Mysql;
#[cfg(feature = "postgres")]
pub use diesel::pg::Pg;
#[cfg(feature = "sqlite")]
pub use diesel::sqlite::Sqlite;
pub use outbox_core::memory;
pub use outbox_core::relay;
pub use outbox_core::sql;
pub use outbox_core::sql::Processed;
pub use outbox_core::{
    BatchReport, BoxError, Claim, Codec, CorruptRow, Envelope, Error, EventTypeStats, Failure,
    Filter, Headers, Health, Inspect, Json, LeaseToken, LiveClaim, Message, OutboxStats,
    ParseStatusError, PublishError, Publisher, Purge, REPLAY_OF_HEADER, Relay, RelayBuilder,
    RelayConfig, Replay, Replayed, Result, Retry, RetryDecision, RetryPolicy, Settled, Settlement,
    Status, Store, StoredMessage, TRACEPARENT_HEADER, Uuid, WakeHandle,
};

pub use self::backend::{OutboxBackend, OutboxConnection};
pub use self::migration::OutboxMigrations;
pub use self::outbox::Outbox;
#[cfg(all(feature = "r2d2", feature = "sqlite"))]
pub use self::pool::SqliteSetup;
#[cfg(feature = "r2d2")]
pub use self::pool::{DieselPool, DieselStore};

/// The relay store on PostgreSQL, over an r2d2 pool of `PgConnection`s.
#[cfg(all(feature = "r2d2", feature = "postgres"))]
pub type PgStore = DieselStore<diesel::PgConnection>;
/// The relay store on MySQL or MariaDB, over an r2d2 pool of `MysqlConnection`s.
#[cfg(all(feature = "r2d2", feature = "mysql"))]
pub type MysqlStore = DieselStore<diesel::MysqlConnection>;
/// The relay store on SQLite, over an r2d2 pool of `SqliteConnection`s.
#[cfg(all(feature = "r2d2", feature = "sqlite"))]
pub type SqliteStore = DieselStore<diesel::SqliteConnection>;

/// Writes `message` to the default `outbox` table in the connection's transaction.
///
/// Call it inside `conn.transaction(|conn| ...)` with the closure's `conn`. The message
/// becomes visible to relays when the transaction commits and vanishes with it on rollback.
///
/// # Errors
///
/// See [`Outbox::enqueue`].
pub fn enqueue<C: OutboxConnection>(conn: &mut C, message: Message) -> Result<()> {
    Outbox::<C::Backend>::new().enqueue(conn, message)
}

/// Writes several messages to the default `outbox` table in one statement, in order.
///
/// # Errors
///
/// See [`Outbox::enqueue_all`].
pub fn enqueue_all<C, I>(conn: &mut C, messages: I) -> Result<()>
where
    C: OutboxConnection,
    I: IntoIterator<Item = Message>,
{
    Outbox::<C::Backend>::new().enqueue_all(conn, messages)
}

/// Runs `handler` unless `consumer` already processed message `message_id`, recording it in
/// the default inbox table `outbox_inbox` in the connection's transaction.
///
/// # Errors
///
/// See [`Outbox::process_once`].
pub fn process_once<C, T, E>(
    conn: &mut C,
    consumer: &str,
    message_id: Uuid,
    handler: impl FnOnce(&mut C) -> Result<T, E>,
) -> Result<Processed<T>, E>
where
    C: OutboxConnection,
    E: From<Error>,
{
    Outbox::<C::Backend>::new().process_once(conn, consumer, message_id, handler)
}

/// Creates the default `outbox` table and its indexes if they do not exist.
///
/// # Errors
///
/// See [`Outbox::migrate`].
pub fn migrate<C: OutboxConnection>(conn: &mut C) -> Result<()> {
    Outbox::<C::Backend>::new().migrate(conn)
}
