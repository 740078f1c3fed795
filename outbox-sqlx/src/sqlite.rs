//! SQLite: one writer at a time, so a claim is a single `UPDATE ... RETURNING`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use outbox_core::sql::{Dialect, Statements, TableName};
use outbox_core::{
    Envelope, Failure, LeaseToken, Message, OutboxStats, Result, StoredMessage, Uuid,
    decode_headers,
};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Connection, Pool, Row, Sqlite};

use crate::database::{
    OutboxConnection, OutboxDatabase, Sealed, Settle, from_micros, micros, status_of,
};
use crate::error::ResultExt;
use crate::text_ids::parse_uuid;

static DEFAULT: LazyLock<Arc<Statements>> =
    LazyLock::new(|| Arc::new(Statements::new(Dialect::Sqlite, TableName::default())));

/// Rows per multi-row INSERT: 7 parameters each, under SQLite's 32,766-parameter limit.
const INSERT_CHUNK: usize = 4000;

impl Sealed for Sqlite {}

impl OutboxConnection for SqliteConnection {
    type Database = Sqlite;
}

crate::text_ids::text_id_envelope!(SqliteRow);

/// The connection relay statements run on.
async fn relay_conn(
    pool: &Pool<Sqlite>,
    s: &Statements,
) -> Result<sqlx::pool::PoolConnection<Sqlite>> {
    pool.acquire().await.for_table(&s.table)
}

impl OutboxDatabase for Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;

    fn default_statements() -> &'static Arc<Statements> {
        &DEFAULT
    }

    crate::text_ids::text_id_store_fns!(Sqlite, SqliteConnection);

    async fn claim(
        pool: &Pool<Sqlite>,
        s: &Statements,
        limit: usize,
        lease: Duration,
        token: LeaseToken,
    ) -> Result<Vec<Envelope>> {
        let rows = sqlx::query(AssertSqlSafe(s.claim.as_str()))
            .bind(limit as i64)
            .bind(micros(lease))
            .bind(token.0)
            .fetch_all(pool)
            .await
            .for_table(&s.table)?;
        rows.iter()
            .map(envelope)
            .collect::<std::result::Result<_, _>>()
            .map_err(outbox_core::Error::database)
    }
}
