#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod database;
mod error;
#[cfg(feature = "postgres")]
mod notify;
mod outbox;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

/// Not public API: what outbox-seaorm, whose driver is sqlx, shares with this crate.
#[doc(hidden)]
pub mod __private {
    pub use crate::error::classify;
}

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
#[cfg(feature = "mysql")]
pub use sqlx::MySql;
#[cfg(feature = "postgres")]
pub use sqlx::Postgres;
#[cfg(feature = "sqlite")]
pub use sqlx::Sqlite;

pub use self::database::{OutboxConnection, OutboxDatabase};
#[cfg(feature = "postgres")]
pub use self::notify::NotifyListener;
pub use self::outbox::Outbox;
pub use self::store::{SqlxPool, SqlxStore};

/// The relay store on PostgreSQL.
#[cfg(feature = "postgres")]
pub type PgStore = SqlxStore<sqlx::Postgres>;
/// The relay store on MySQL or MariaDB.
#[cfg(feature = "mysql")]
pub type MySqlStore = SqlxStore<sqlx::MySql>;
/// The relay store on SQLite.
#[cfg(feature = "sqlite")]
pub type SqliteStore = SqlxStore<sqlx::Sqlite>;

/// Writes `message` to the default `outbox` table inside the caller's transaction.
///
/// Pass the transaction's connection: `enqueue(&mut *tx, message)`. The message becomes visible
/// to relays when the transaction commits and vanishes with it on rollback.
///
/// # Errors
///
/// See [`Outbox::enqueue`].
pub async fn enqueue<C: OutboxConnection>(conn: &mut C, message: Message) -> Result<()> {
    Outbox::<C::Database>::new().enqueue(conn, message).await
}

/// Writes several messages to the default `outbox` table in one statement, in order.
///
/// # Errors
///
/// See [`Outbox::enqueue_all`].
pub async fn enqueue_all<C, I>(conn: &mut C, messages: I) -> Result<()>
where
    C: OutboxConnection,
    I: IntoIterator<Item = Message>,
{
    Outbox::<C::Database>::new()
        .enqueue_all(conn, messages)
        .await
}

/// Runs `handler` unless `consumer` already processed message `message_id`, recording it in
/// the default inbox table `outbox_inbox` in the caller's transaction.
///
/// # Errors
///
/// See [`Outbox::process_once`].
pub async fn process_once<C, T, E>(
    conn: &mut C,
    consumer: &str,
    message_id: Uuid,
    handler: impl AsyncFnOnce(&mut C) -> Result<T, E>,
) -> Result<Processed<T>, E>
where
    C: OutboxConnection,
    E: From<Error>,
{
    Outbox::<C::Database>::new()
        .process_once(conn, consumer, message_id, handler)
        .await
}

/// Creates the default `outbox` table and its indexes if they do not exist.
///
/// # Errors
///
/// See [`Outbox::migrate`].
pub async fn migrate<C: OutboxConnection>(conn: &mut C) -> Result<()> {
    Outbox::<C::Database>::new().migrate(conn).await
}
