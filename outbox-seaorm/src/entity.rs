//! Entities of the default `outbox` table, one per database (its column types differ), to
//! query with sea-orm.
//!
//! The relay owns the table's rows; read them freely, but change them only through the relay's
//! store (a row's lease columns and state are the relay's protocol). Rows in `state` 0 are
//! pending or waiting for a retry, 1 are dead, 2 are published and kept
//! ([`SqlStore::keep_published`](crate::sql::SqlStore::keep_published)).
//!
//! ```
//! use outbox_seaorm::entity::postgres as outbox;
//! use sea_orm::{DbBackend, EntityTrait, QueryFilter, QueryOrder, QueryTrait, ColumnTrait};
//!
//! // Dead messages of one event type, oldest first.
//! let dead = outbox::Entity::find()
//!     .filter(outbox::Column::State.eq(1))
//!     .filter(outbox::Column::EventType.eq("order.created"))
//!     .order_by_asc(outbox::Column::Id);
//! let sql = dead.build(DbBackend::Postgres).to_string();
//! assert!(sql.starts_with(r#"SELECT "outbox"."id""#), "{sql}");
//! ```
//!
//! For a table of another name, copy the definition for your database and rename it.

/// The `outbox` table on PostgreSQL.
#[allow(missing_docs)]
pub mod postgres {
    use sea_orm::entity::prelude::*;

    /// A row of the outbox table (PostgreSQL).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// The row's sequence number: the relay's order.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The message id (UUIDv7), the consumer's dedup key.
        pub message_id: Uuid,
        /// What happened: routes the message (subject, topic, queue).
        pub event_type: String,
        /// The key whose messages are published in commit order.
        pub partition_key: Option<String>,
        /// The kind of aggregate the key names.
        pub aggregate_type: Option<String>,
        /// The encoded payload.
        pub payload: Vec<u8>,
        /// A JSON object of string headers.
        pub headers: Json,
        /// When the message was enqueued.
        pub created_at: DateTimeUtc,
        /// When it is due (later for delayed messages and retries).
        pub available_at: DateTimeUtc,
        /// Failed publish attempts.
        pub attempts: i32,
        /// The last failure's message.
        pub last_error: Option<String>,
        /// 0 live, 1 dead, 2 published and kept.
        pub state: i16,
        /// Unused on PostgreSQL (claims live in `outbox_claims`).
        pub lease_until: Option<DateTimeUtc>,
        /// Unused on PostgreSQL.
        pub lease_token: Option<i64>,
        /// When it was published (kept rows only).
        pub published_at: Option<DateTimeUtc>,
    }

    /// The outbox table relates to no other.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `outbox` table on MySQL and MariaDB.
#[allow(missing_docs)]
pub mod mysql {
    use sea_orm::entity::prelude::*;

    /// A row of the outbox table (MySQL, MariaDB).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// The row's sequence number: the relay's order.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The message id (UUIDv7, hyphenated), the consumer's dedup key.
        pub message_id: String,
        /// What happened: routes the message (subject, topic, queue).
        pub event_type: String,
        /// The key whose messages are published in commit order.
        pub partition_key: Option<String>,
        /// The kind of aggregate the key names.
        pub aggregate_type: Option<String>,
        /// The encoded payload.
        pub payload: Vec<u8>,
        /// A JSON object of string headers, as text.
        pub headers: String,
        /// When the message was enqueued (UTC).
        pub created_at: DateTime,
        /// When it is due (UTC; later for delayed messages and retries).
        pub available_at: DateTime,
        /// Failed publish attempts.
        pub attempts: i32,
        /// The last failure's message.
        pub last_error: Option<String>,
        /// 0 live, 1 dead, 2 published and kept.
        pub state: i16,
        /// Until when a relay holds the row (UTC).
        pub lease_until: Option<DateTime>,
        /// Which claim holds the row.
        pub lease_token: Option<i64>,
        /// When it was published (UTC; kept rows only).
        pub published_at: Option<DateTime>,
    }

    /// The outbox table relates to no other.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `outbox` table on SQLite.
#[allow(missing_docs)]
pub mod sqlite {
    use sea_orm::entity::prelude::*;

    /// A row of the outbox table (SQLite). Times are microseconds since the Unix epoch.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// The row's sequence number: the relay's order.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The message id (UUIDv7, hyphenated), the consumer's dedup key.
        pub message_id: String,
        /// What happened: routes the message (subject, topic, queue).
        pub event_type: String,
        /// The key whose messages are published in commit order.
        pub partition_key: Option<String>,
        /// The kind of aggregate the key names.
        pub aggregate_type: Option<String>,
        /// The encoded payload.
        pub payload: Vec<u8>,
        /// A JSON object of string headers, as text.
        pub headers: String,
        /// When the message was enqueued.
        pub created_at: i64,
        /// When it is due (later for delayed messages and retries).
        pub available_at: i64,
        /// Failed publish attempts.
        pub attempts: i32,
        /// The last failure's message.
        pub last_error: Option<String>,
        /// 0 live, 1 dead, 2 published and kept.
        pub state: i16,
        /// Until when a relay holds the row.
        pub lease_until: Option<i64>,
        /// Which claim holds the row.
        pub lease_token: Option<i64>,
        /// When it was published (kept rows only).
        pub published_at: Option<i64>,
    }

    /// The outbox table relates to no other.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
