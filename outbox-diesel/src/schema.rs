//! `table!` definitions of the default `outbox` table, one per database, to query and join
//! against with diesel's DSL.
//!
//! The relay owns the table's rows; read them freely, but change them only through the relay's
//! store (a row's lease columns and state are the relay's protocol). Rows in `state` 0 are
//! pending or waiting for a retry, 1 are dead, 2 are published and kept
//! ([`SqlStore::keep_published`](crate::sql::SqlStore::keep_published)).
//!
//! ```
//! # #[cfg(feature = "postgres")] {
//! use diesel::prelude::*;
//! use outbox_diesel::schema::pg::outbox;
//!
//! // Dead messages of one event type, oldest first.
//! let dead = outbox::table
//!     .filter(outbox::state.eq(1_i16))
//!     .filter(outbox::event_type.eq("order.created"))
//!     .order(outbox::id)
//!     .select((outbox::id, outbox::partition_key, outbox::last_error));
//! let sql = diesel::debug_query::<diesel::pg::Pg, _>(&dead).to_string();
//! assert!(sql.starts_with("SELECT \"outbox\".\"id\""), "{sql}");
//! # }
//! ```
//!
//! For a table of another name, copy the definition for your database and rename it.

/// The `outbox` table on PostgreSQL.
#[cfg(feature = "postgres")]
pub mod pg {
    diesel::table! {
        /// The outbox table (PostgreSQL).
        outbox (id) {
            /// The row's sequence number: the relay's order.
            id -> BigInt,
            /// The message id (UUIDv7), the consumer's dedup key.
            message_id -> Uuid,
            /// What happened: routes the message (subject, topic, queue).
            event_type -> Text,
            /// The key whose messages are published in commit order.
            partition_key -> Nullable<Text>,
            /// The kind of aggregate the key names.
            aggregate_type -> Nullable<Text>,
            /// The encoded payload.
            payload -> Binary,
            /// A JSON object of string headers.
            headers -> Jsonb,
            /// When the message was enqueued.
            created_at -> Timestamptz,
            /// When it is due (later for delayed messages and retries).
            available_at -> Timestamptz,
            /// Failed publish attempts.
            attempts -> Integer,
            /// The last failure's message.
            last_error -> Nullable<Text>,
            /// 0 live, 1 dead, 2 published and kept.
            state -> SmallInt,
            /// Unused on PostgreSQL (claims live in `outbox_claims`).
            lease_until -> Nullable<Timestamptz>,
            /// Unused on PostgreSQL.
            lease_token -> Nullable<BigInt>,
            /// When it was published (kept rows).
            published_at -> Nullable<Timestamptz>,
        }
    }
}

/// The `outbox` table on MySQL and MariaDB.
#[cfg(feature = "mysql")]
pub mod mysql {
    diesel::table! {
        use diesel::sql_types::*;
        use diesel::mysql::sql_types::Datetime;

        /// The outbox table (MySQL, MariaDB).
        outbox (id) {
            /// The row's sequence number: the relay's order.
            id -> BigInt,
            /// The message id (UUIDv7, hyphenated text), the consumer's dedup key.
            message_id -> Text,
            /// What happened: routes the message (subject, topic, queue).
            event_type -> Text,
            /// The key whose messages are published in commit order.
            partition_key -> Nullable<Text>,
            /// The kind of aggregate the key names.
            aggregate_type -> Nullable<Text>,
            /// The encoded payload.
            payload -> Binary,
            /// A JSON object of string headers.
            headers -> Text,
            /// When the message was enqueued (UTC).
            created_at -> Datetime,
            /// When it is due (UTC; later for delayed messages and retries).
            available_at -> Datetime,
            /// Failed publish attempts.
            attempts -> Integer,
            /// The last failure's message.
            last_error -> Nullable<Text>,
            /// 0 live, 1 dead, 2 published and kept.
            state -> SmallInt,
            /// The end of the lease of the relay holding the row (UTC).
            lease_until -> Nullable<Datetime>,
            /// The fencing token of the claim holding the row.
            lease_token -> Nullable<BigInt>,
            /// When it was published (kept rows; UTC).
            published_at -> Nullable<Datetime>,
        }
    }
}

/// The `outbox` table on SQLite. Times are microseconds since the Unix epoch.
#[cfg(feature = "sqlite")]
pub mod sqlite {
    diesel::table! {
        /// The outbox table (SQLite).
        outbox (id) {
            /// The row's sequence number: the relay's order.
            id -> BigInt,
            /// The message id (UUIDv7, hyphenated text), the consumer's dedup key.
            message_id -> Text,
            /// What happened: routes the message (subject, topic, queue).
            event_type -> Text,
            /// The key whose messages are published in commit order.
            partition_key -> Nullable<Text>,
            /// The kind of aggregate the key names.
            aggregate_type -> Nullable<Text>,
            /// The encoded payload.
            payload -> Binary,
            /// A JSON object of string headers.
            headers -> Text,
            /// When the message was enqueued (microseconds since the epoch).
            created_at -> BigInt,
            /// When it is due (later for delayed messages and retries).
            available_at -> BigInt,
            /// Failed publish attempts.
            attempts -> Integer,
            /// The last failure's message.
            last_error -> Nullable<Text>,
            /// 0 live, 1 dead, 2 published and kept.
            state -> Integer,
            /// The end of the lease of the relay holding the row.
            lease_until -> Nullable<BigInt>,
            /// The fencing token of the claim holding the row.
            lease_token -> Nullable<BigInt>,
            /// When it was published (kept rows).
            published_at -> Nullable<BigInt>,
        }
    }
}
