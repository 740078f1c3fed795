#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod entity;
mod error;
mod executor;
#[cfg(feature = "migration")]
mod migration;
mod outbox;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

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
pub use sea_orm::DbBackend;

#[cfg(feature = "migration")]
pub use self::migration::OutboxMigration;
pub use self::outbox::Outbox;
pub use self::store::{SeaOrmPool, SeaOrmStore};

use sea_orm::ConnectionTrait;

/// Writes `message` to the default `outbox` table through `conn`: inside a transaction (the
/// `txn` of `db.transaction(|txn| ...)`, or what `db.begin()` returned) it becomes visible to
/// relays when the transaction commits and vanishes with it on rollback; on a
/// `DatabaseConnection` it commits at once.
///
/// # Errors
///
/// See [`Outbox::enqueue`].
pub async fn enqueue<C: ConnectionTrait>(conn: &C, message: Message) -> Result<()> {
    outbox::DEFAULT.enqueue(conn, message).await
}

/// Writes several messages to the default `outbox` table in one statement, in order.
///
/// # Errors
///
/// See [`Outbox::enqueue_all`].
pub async fn enqueue_all<C, I>(conn: &C, messages: I) -> Result<()>
where
    C: ConnectionTrait,
    I: IntoIterator<Item = Message>,
{
    outbox::DEFAULT.enqueue_all(conn, messages).await
}

/// Runs `handler` on `txn` unless `consumer` already processed message `message_id`,
/// recording it in the default inbox table `outbox_inbox` in the same transaction.
///
/// # Errors
///
/// See [`Outbox::process_once`].
pub async fn process_once<T, E>(
    txn: &sea_orm::DatabaseTransaction,
    consumer: &str,
    message_id: Uuid,
    handler: impl AsyncFnOnce(&sea_orm::DatabaseTransaction) -> Result<T, E>,
) -> Result<Processed<T>, E>
where
    E: From<Error>,
{
    outbox::DEFAULT
        .process_once(txn, consumer, message_id, handler)
        .await
}

/// Creates the default `outbox` table and its indexes if they do not exist.
///
/// # Errors
///
/// See [`Outbox::migrate`].
pub async fn migrate<C: ConnectionTrait>(conn: &C) -> Result<()> {
    outbox::DEFAULT.migrate(conn).await
}
