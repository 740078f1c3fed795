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
         (optionally `schema.table`), starting with a letter or underscore, at most 63 bytes"
    )]
    InvalidTableName {
        /// The rejected name.
        name: String,
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
    #[error("could not encode the {event_type:?} payload: {source}; nothing was written")]
    Encode {
        /// The event type of the message being built.
        event_type: String,
        /// The codec's error.
        #[source]
        source: BoxError,
    },

    /// The outbox table does not exist in the database.
    #[error(
        "outbox table {table:?} does not exist; run `outbox migrate` (or call the adapter's \
         `migrate`) against this database first"
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

    /// A relay or store setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The database driver reported an error.
    #[error("database error: {0}")]
    Database(#[source] BoxError),

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
}
