//! The one error type of the core, shared by every adapter.

use std::error::Error as StdError;

/// `Result` with the outbox [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from a database driver or broker client.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong when enqueueing, relaying or inspecting messages.
///
/// Every variant says what is wrong and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An outbox table name is not a plain SQL identifier.
    ///
    /// Table names are validated, never spliced raw into SQL.
    #[error(
        "invalid outbox table name {name:?}: {reason}; use letters, digits and underscores \
         (optionally `schema.table`), starting with a letter or underscore, at most {} bytes \
         each",
        crate::sql::MAX_TABLE_NAME_BYTES
    )]
    InvalidTableName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An inbox consumer name is empty, too long, or not plain text.
    #[error(
        "invalid inbox consumer {consumer:?}: {reason}; a consumer names the service or handler \
         that processes the messages (such as \"billing\"), in 1 to 200 bytes"
    )]
    InvalidConsumer {
        /// The rejected name, truncated to 64 characters.
        consumer: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An event type is empty, too long, or contains characters that brokers cannot route on.
    #[error(
        "invalid event type {event_type:?}: {reason}; event types are 1 to 255 characters of \
         ASCII letters, digits and `.`, `_`, `-`, `:`, `/`"
    )]
    InvalidEventType {
        /// The rejected event type.
        event_type: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A partition key or aggregate type is empty or longer than 255 bytes.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidField {
        /// Which field (`key` or `aggregate type`).
        field: &'static str,
        /// The rejected value, truncated to 64 characters.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A header name or value cannot be carried by every broker.
    #[error(
        "invalid header {name:?}: {reason}; header names are visible ASCII without `:` and \
         values contain no line breaks"
    )]
    InvalidHeader {
        /// The rejected header name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The payload is larger than the configured limit.
    #[error(
        "payload of {size} bytes exceeds the outbox limit of {limit} bytes; store large blobs \
         elsewhere and enqueue a reference, or raise the limit with `max_payload_bytes`"
    )]
    PayloadTooLarge {
        /// Size of the rejected payload in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },

    /// The payload could not be encoded; nothing was written.
    #[error("could not encode the {event_type:?} payload: {cause}; nothing was written")]
    Encode {
        /// The event type of the message being built.
        event_type: String,
        /// The codec's error (its text is this error's text, so it is not repeated as the
        /// error's `source`).
        cause: BoxError,
    },

    /// The outbox table does not exist in the database.
    #[error(
        "outbox table {table:?} does not exist; create it by calling `migrate()` on the \
         outbox store, against this database, before enqueueing or relaying"
    )]
    MissingTable {
        /// The table that was looked for.
        table: String,
    },

    /// The database URL could not be parsed or names an unsupported database.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidDatabaseUrl {
        /// The URL with any password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The broker was unavailable, so the relay stopped publishing; nothing is lost.
    #[error(
        "broker unavailable: {reason}; nothing is lost: the messages stay in the outbox and are \
         published once the broker is back"
    )]
    BrokerUnavailable {
        /// The publisher's error.
        reason: String,
    },

    /// A [`Publisher`](crate::Publisher) returned a different number of outcomes than it was
    /// given messages, so none of its outcomes can be trusted.
    #[error(
        "the publisher returned {returned} outcomes for {expected} messages; it must return one \
         per message, in order. Those messages were given back unpublished and stay in the outbox"
    )]
    PublisherContract {
        /// Messages handed to the publisher.
        expected: usize,
        /// Outcomes it returned.
        returned: usize,
    },

    /// Every batch failed for longer than [`RelayBuilder::give_up_after`](crate::RelayBuilder::give_up_after)
    /// allows, so [`Relay::run`](crate::Relay::run) stopped.
    #[error("the relay gave up: every batch failed for {after:?}; the last error: {last_error}")]
    GaveUp {
        /// How long batches had been failing.
        after: std::time::Duration,
        /// The last batch's error.
        last_error: String,
    },

    /// A relay or store setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The database driver reported an error: a [`DbError`](crate::sql::DbError) from the SQL
    /// stores, which says what kind of failure it was. Its text is this error's text, so it
    /// is not repeated as the error's `source`; downcast the box to read it.
    #[error("database error: {0}")]
    Database(BoxError),

    /// A unit of work's transaction was asked for while another handle to it was alive.
    #[error(
        "the request's transaction is already held by another handle (an extractor still in \
         scope); drop that handle before taking the transaction again"
    )]
    TransactionInUse,

    /// A unit of work's transaction was asked for after the unit was committed or rolled back.
    #[error(
        "the request's transaction has already been committed or rolled back; a handle to it \
         can only be taken while the request is being handled"
    )]
    TransactionEnded,

    /// A unit of work was to commit while a handle to its transaction was still alive (moved
    /// into a spawned task or a streaming body), so it was rolled back instead.
    #[error(
        "a handle to the request's transaction was still alive when the response was ready (was \
         it moved into a spawned task or a response body?), so the transaction was rolled back \
         and no message was published; drop every handle before the handler returns"
    )]
    TransactionStillHeld,

    /// A row in the outbox table could not be decoded (edited by hand, or a newer schema).
    #[error("corrupt outbox row {seq}: {reason}")]
    CorruptRow {
        /// The row's sequence number.
        seq: i64,
        /// What could not be decoded.
        reason: String,
    },
}

impl Error {
    /// Wraps a driver error.
    pub fn database(err: impl Into<BoxError>) -> Self {
        Self::Database(err.into())
    }

    /// The HTTP status a web layer answers this error with when a handler returns it:
    /// `413 Payload Too Large` for [`Error::PayloadTooLarge`], `503 Service Unavailable` when
    /// the database could not be reached, `500 Internal Server Error` otherwise.
    pub fn http_status(&self) -> u16 {
        use crate::sql::{DbError, DbErrorKind};
        match self {
            Self::PayloadTooLarge { .. } => 413,
            Self::Database(err)
                if err
                    .downcast_ref::<DbError>()
                    .is_some_and(|db| db.kind() == DbErrorKind::ConnectionLost) =>
            {
                503
            }
            _ => 500,
        }
    }

    /// Whether the same call may succeed when simply tried again: a database deadlock,
    /// serialization failure or lock timeout, or a lost connection.
    pub fn is_transient(&self) -> bool {
        use crate::sql::{DbError, DbErrorKind};
        match self {
            Self::Database(err) => err.downcast_ref::<DbError>().is_some_and(|db| {
                matches!(
                    db.kind(),
                    DbErrorKind::RetryableConflict | DbErrorKind::ConnectionLost
                )
            }),
            _ => false,
        }
    }
}
