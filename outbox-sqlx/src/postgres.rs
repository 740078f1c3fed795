//! PostgreSQL: one-statement claims, array binds for batches.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use outbox_core::sql::{ClaimsSql, Dialect, Statements, TableName};
use outbox_core::{
    Envelope, Failure, LeaseToken, Message, OutboxStats, Result, Settled, Settlement,
    StoredMessage, Uuid, decode_headers,
};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Pool, Postgres, Row};

use crate::database::{
    OutboxConnection, OutboxDatabase, Sealed, Settle, from_micros, micros, status_of,
};
use crate::error::ResultExt;

static DEFAULT: LazyLock<Arc<Statements>> =
    LazyLock::new(|| Arc::new(Statements::new(Dialect::Postgres, TableName::default())));

impl Sealed for Postgres {}

impl OutboxConnection for PgConnection {
    type Database = Postgres;
}

fn envelope(row: &PgRow) -> std::result::Result<Envelope, sqlx::Error> {
    let seq: i64 = row.try_get(0)?;
    let headers: String = row.try_get(6)?;
    Ok(Envelope {
        seq,
        id: row.try_get(1)?,
        event_type: row.try_get(2)?,
        partition_key: row.try_get(3)?,
        aggregate_type: row.try_get(4)?,
        payload: row.try_get::<Vec<u8>, _>(5)?.into(),
        headers: decode_headers(seq, &headers).map_err(|e| sqlx::Error::Decode(e.into()))?,
        created_at: from_micros(row.try_get(7)?),
        attempts: row.try_get::<i32, _>(8)?.max(0) as u32,
    })
}

impl OutboxDatabase for Postgres {
    const DIALECT: Dialect = Dialect::Postgres;

    fn default_statements() -> &'static Arc<Statements> {
        &DEFAULT
    }

    async fn insert(conn: &mut PgConnection, s: &Statements, messages: &[Message]) -> Result<()> {
        insert_rows(conn, s, messages).await
    }

    async fn run_script(conn: &mut PgConnection, s: &Statements) -> Result<()> {
        run_script(conn, s).await
    }

    async fn claim(
        pool: &Pool<Postgres>,
        s: &Statements,
        limit: usize,
        lease: Duration,
        token: LeaseToken,
    ) -> Result<Vec<Envelope>> {
        let rows = sqlx::query(AssertSqlSafe(claims_sql(s).claim.as_str()))
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

    async fn settle(
        pool: &Pool<Postgres>,
        s: &Statements,
        kind: Settle,
        token: LeaseToken,
        seqs: &[i64],
    ) -> Result<u64> {
        let claims = claims_sql(s);
        let sql = match kind {
            Settle::AckDelete => &claims.ack,
            Settle::AckKeep => &claims.ack_keep,
            Settle::Release => &claims.release,
        };
        count(
            sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
                .bind(seqs)
                .bind(token.0)
                .fetch_one(pool)
                .await,
            s,
        )
    }

    async fn fail(
        pool: &Pool<Postgres>,
        s: &Statements,
        token: LeaseToken,
        failures: &[Failure],
    ) -> Result<u64> {
        let f = FailureArrays::new(failures);
        count(
            sqlx::query_scalar(AssertSqlSafe(claims_sql(s).fail.as_str()))
                .bind(f.ids)
                .bind(f.delays)
                .bind(f.errors)
                .bind(f.dead)
                .bind(token.0)
                .fetch_one(pool)
                .await,
            s,
        )
    }

    async fn settle_batch(
        pool: &Pool<Postgres>,
        s: &Statements,
        keep_published: bool,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> Result<Settled> {
        let claims = claims_sql(s);
        let sql = if keep_published {
            &claims.settle_keep
        } else {
            &claims.settle
        };
        let f = FailureArrays::new(&settlement.failed);
        let (published, failed, released): (i64, i64, i64) =
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(token.0)
                .bind(&settlement.published)
                .bind(f.ids)
                .bind(f.delays)
                .bind(f.errors)
                .bind(f.dead)
                .bind(&settlement.released)
                .fetch_one(pool)
                .await
                .for_table(&s.table)?;
        Ok(Settled {
            published: published.max(0) as u64,
            failed: failed.max(0) as u64,
            released: released.max(0) as u64,
        })
    }

    async fn stats(pool: &Pool<Postgres>, s: &Statements) -> Result<OutboxStats> {
        let row = sqlx::query(AssertSqlSafe(s.stats.as_str()))
            .fetch_one(pool)
            .await
            .for_table(&s.table)?;
        stats_from_row(&row).map_err(outbox_core::Error::database)
    }

    async fn get(pool: &Pool<Postgres>, s: &Statements, id: Uuid) -> Result<Option<StoredMessage>> {
        let row = sqlx::query(AssertSqlSafe(s.get.as_str()))
            .bind(id)
            .fetch_optional(pool)
            .await
            .for_table(&s.table)?;
        row.map(|row| stored_from_row(&row))
            .transpose()
            .map_err(outbox_core::Error::database)
    }

    async fn purge_published(
        pool: &Pool<Postgres>,
        s: &Statements,
        older_than: Duration,
    ) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(s.purge_published.as_str()))
            .bind(micros(older_than))
            .execute(pool)
            .await
            .for_table(&s.table)?;
        Ok(done.rows_affected())
    }

    async fn retry_dead(pool: &Pool<Postgres>, s: &Statements, id: Option<Uuid>) -> Result<u64> {
        let done = match id {
            Some(id) => {
                sqlx::query(AssertSqlSafe(s.retry_dead_one.as_str()))
                    .bind(id)
                    .execute(pool)
                    .await
            }
            None => {
                sqlx::query(AssertSqlSafe(s.retry_dead_all.as_str()))
                    .execute(pool)
                    .await
            }
        }
        .for_table(&s.table)?;
        Ok(done.rows_affected())
    }
}

fn stats_from_row(row: &PgRow) -> std::result::Result<OutboxStats, sqlx::Error> {
    let count = |i: usize| -> std::result::Result<u64, sqlx::Error> {
        Ok(row.try_get::<i64, _>(i)?.max(0) as u64)
    };
    Ok(OutboxStats {
        pending: count(0)?,
        claimed: count(1)?,
        failed: count(2)?,
        dead: count(3)?,
        published: count(4)?,
        oldest_unpublished_age: row
            .try_get::<Option<i64>, _>(5)?
            .map(|us| Duration::from_micros(us.max(0) as u64)),
    })
}

fn stored_from_row(row: &PgRow) -> std::result::Result<StoredMessage, sqlx::Error> {
    let envelope = envelope(row)?;
    let state: i16 = row.try_get(9)?;
    let leased: i32 = row.try_get(10)?;
    Ok(StoredMessage {
        status: status_of(state, leased == 1, envelope.attempts as i32),
        envelope,
        last_error: row.try_get(11)?,
        available_at: from_micros(row.try_get(12)?),
    })
}

async fn insert_rows(conn: &mut PgConnection, s: &Statements, messages: &[Message]) -> Result<()> {
    if let [message] = messages {
        let delayed = !message.delay().is_zero();
        let sql = if delayed {
            &s.insert_one_delayed
        } else {
            &s.insert_one
        };
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(message.id())
            .bind(message.event_type())
            .bind(message.partition_key())
            .bind(message.aggregate_type_name())
            .bind(&message.payload()[..])
            .bind(message.headers_json());
        if delayed {
            query = query.bind(micros(message.delay()));
        }
        query.execute(&mut *conn).await.for_table(&s.table)?;
        return Ok(());
    }
    let n = messages.len();
    let (mut ids, mut events, mut keys, mut aggs, mut payloads, mut headers, mut delays) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for m in messages {
        ids.push(m.id());
        events.push(m.event_type());
        keys.push(m.partition_key());
        aggs.push(m.aggregate_type_name());
        payloads.push(&m.payload()[..]);
        headers.push(m.headers_json());
        delays.push(micros(m.delay()));
    }
    sqlx::query(AssertSqlSafe(s.insert_many_arrays()))
        .bind(ids)
        .bind(events)
        .bind(keys)
        .bind(aggs)
        .bind(payloads)
        .bind(headers)
        .bind(delays)
        .execute(&mut *conn)
        .await
        .for_table(&s.table)?;
    Ok(())
}

async fn run_script(conn: &mut PgConnection, s: &Statements) -> Result<()> {
    // Serialise concurrent migrations of the same table: `IF NOT EXISTS` alone races.
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(outbox_core::Error::database)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("outbox-migrate:{}", s.table))
        .execute(&mut *tx)
        .await
        .map_err(outbox_core::Error::database)?;
    for statement in &s.create {
        sqlx::query(AssertSqlSafe(statement.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(outbox_core::Error::database)?;
    }
    tx.commit().await.map_err(outbox_core::Error::database)
}

/// The claims protocol of a PostgreSQL table.
fn claims_sql(s: &Statements) -> &ClaimsSql {
    s.claims
        .as_ref()
        .expect("PostgreSQL statements always carry the claims protocol")
}

fn count(result: std::result::Result<i64, sqlx::Error>, s: &Statements) -> Result<u64> {
    Ok(result.for_table(&s.table)?.max(0) as u64)
}

/// Failures as the column arrays the statements unnest.
struct FailureArrays<'a> {
    ids: Vec<i64>,
    delays: Vec<i64>,
    errors: Vec<&'a str>,
    dead: Vec<bool>,
}

impl<'a> FailureArrays<'a> {
    fn new(failures: &'a [Failure]) -> Self {
        Self {
            ids: failures.iter().map(|f| f.seq).collect(),
            delays: failures
                .iter()
                .map(|f| f.retry_after.map_or(0, micros))
                .collect(),
            errors: failures.iter().map(|f| f.error.as_str()).collect(),
            dead: failures.iter().map(|f| f.retry_after.is_none()).collect(),
        }
    }
}
