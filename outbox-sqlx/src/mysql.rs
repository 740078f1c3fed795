//! MySQL and MariaDB: the claim runs as a short READ COMMITTED transaction of four statements
//! (MySQL has no `UPDATE ... RETURNING`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use outbox_core::sql::{Dialect, Statements, TableName, mysql_claim};
use outbox_core::{
    Envelope, Failure, LeaseToken, Message, OutboxStats, Result, StoredMessage, Uuid,
    decode_headers,
};
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Connection, MySql, Pool, Row};

use crate::database::{
    OutboxConnection, OutboxDatabase, Sealed, Settle, from_micros, micros, status_of,
};
use crate::error::ResultExt;
use crate::sqlite::parse_uuid;

static DEFAULT: LazyLock<Arc<Statements>> =
    LazyLock::new(|| Arc::new(Statements::new(Dialect::MySql, TableName::default())));

/// Rows per multi-row INSERT: 7 parameters each, under the protocol's 65,535-parameter limit.
const INSERT_CHUNK: usize = 8000;

impl Sealed for MySql {}

impl OutboxConnection for MySqlConnection {
    type Database = MySql;
}

fn envelope(row: &MySqlRow) -> std::result::Result<Envelope, sqlx::Error> {
    let seq: i64 = row.try_get(0)?;
    let id: String = row.try_get(1)?;
    let headers: String = row.try_get(6)?;
    Ok(Envelope {
        seq,
        id: parse_uuid(seq, &id)?,
        event_type: row.try_get(2)?,
        partition_key: row.try_get(3)?,
        aggregate_type: row.try_get(4)?,
        payload: row.try_get::<Vec<u8>, _>(5)?.into(),
        headers: decode_headers(seq, &headers).map_err(|e| sqlx::Error::Decode(e.into()))?,
        created_at: from_micros(row.try_get(7)?),
        attempts: row.try_get::<i64, _>(8)?.max(0) as u32,
    })
}

/// A pooled connection whose next transaction runs at READ COMMITTED.
///
/// InnoDB's default REPEATABLE READ takes gap locks on every range a relay statement scans;
/// producers inserting into those gaps then wait, and can deadlock with the relay. READ
/// COMMITTED takes no gap locks. `SET TRANSACTION` (without `SESSION`) applies to the next
/// transaction only, so the application's own use of a shared pool is unaffected.
async fn read_committed(
    pool: &Pool<MySql>,
    s: &Statements,
) -> Result<sqlx::pool::PoolConnection<MySql>> {
    let mut conn = pool.acquire().await.for_table(&s.table)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *conn)
        .await
        .for_table(&s.table)?;
    Ok(conn)
}

impl OutboxDatabase for MySql {
    const DIALECT: Dialect = Dialect::MySql;

    fn default_statements() -> &'static Arc<Statements> {
        &DEFAULT
    }

    async fn insert(
        conn: &mut MySqlConnection,
        s: &Statements,
        messages: &[Message],
        _notify: Option<&str>,
    ) -> Result<()> {
        if let [message] = messages
            && message.delay().is_zero()
        {
            sqlx::query(AssertSqlSafe(s.insert_one.as_str()))
                .bind(message.id().hyphenated().to_string())
                .bind(message.event_type())
                .bind(message.partition_key())
                .bind(message.aggregate_type_name())
                .bind(&message.payload()[..])
                .bind(message.headers_json())
                .execute(&mut *conn)
                .await
                .for_table(&s.table)?;
            return Ok(());
        }
        for chunk in messages.chunks(INSERT_CHUNK) {
            let mut query = sqlx::query(AssertSqlSafe(s.insert_many(chunk.len())));
            for m in chunk {
                query = query
                    .bind(m.id().hyphenated().to_string())
                    .bind(m.event_type())
                    .bind(m.partition_key())
                    .bind(m.aggregate_type_name())
                    .bind(&m.payload()[..])
                    .bind(m.headers_json())
                    .bind(micros(m.delay()));
            }
            query.execute(&mut *conn).await.for_table(&s.table)?;
        }
        Ok(())
    }

    async fn run_script(conn: &mut MySqlConnection, s: &Statements) -> Result<()> {
        for statement in &s.create {
            sqlx::query(AssertSqlSafe(statement.as_str()))
                .execute(&mut *conn)
                .await
                .map_err(outbox_core::Error::database)?;
        }
        Ok(())
    }

    async fn claim(
        pool: &Pool<MySql>,
        s: &Statements,
        limit: usize,
        lease: Duration,
        token: LeaseToken,
    ) -> Result<Vec<Envelope>> {
        let t = &s.table;
        let mut conn = read_committed(pool, s).await?;
        let mut tx = conn.begin().await.for_table(t)?;

        let busy: Vec<String> = sqlx::query_scalar(AssertSqlSafe(mysql_claim::claim_busy_keys(s)))
            .fetch_all(&mut *tx)
            .await
            .for_table(t)?;
        let mut window = sqlx::query(AssertSqlSafe(mysql_claim::claim_window(s, busy.len())));
        for key in &busy {
            window = window.bind(key.as_str());
        }
        let rows = window
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await
            .for_table(t)?;
        let mut candidates = rows
            .iter()
            .map(envelope)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(outbox_core::Error::database)?;
        if candidates.is_empty() {
            tx.commit().await.for_table(t)?;
            return Ok(candidates);
        }

        // A key's rows in the window are claimable only up to the first older-or-interleaved
        // live row of that key that is not in the window (locked by another claimer, leased,
        // waiting for a retry, or delayed).
        let keys: HashSet<&str> = candidates
            .iter()
            .filter_map(|e| e.partition_key.as_deref())
            .collect();
        let mut gaps: HashMap<String, i64> = HashMap::new();
        if !keys.is_empty() {
            let max_id = candidates.iter().map(|e| e.seq).max().unwrap_or(0);
            let mut q = sqlx::query(AssertSqlSafe(mysql_claim::claim_gaps(
                s,
                keys.len(),
                candidates.len(),
            )));
            for key in &keys {
                q = q.bind(*key);
            }
            q = q.bind(max_id);
            for e in &candidates {
                q = q.bind(e.seq);
            }
            for row in q.fetch_all(&mut *tx).await.for_table(t)? {
                let key: String = row.try_get(0).map_err(outbox_core::Error::database)?;
                let gap: i64 = row.try_get(1).map_err(outbox_core::Error::database)?;
                gaps.insert(key, gap);
            }
        }
        candidates.retain(|e| match e.partition_key.as_deref() {
            Some(key) => gaps.get(key).is_none_or(|gap| e.seq < *gap),
            None => true,
        });
        if !candidates.is_empty() {
            let mut lease_q =
                sqlx::query(AssertSqlSafe(mysql_claim::claim_lease(s, candidates.len())))
                    .bind(micros(lease))
                    .bind(token.0);
            for e in &candidates {
                lease_q = lease_q.bind(e.seq);
            }
            lease_q.execute(&mut *tx).await.for_table(t)?;
        }
        tx.commit().await.for_table(t)?;
        Ok(candidates)
    }

    async fn settle(
        pool: &Pool<MySql>,
        s: &Statements,
        kind: Settle,
        token: LeaseToken,
        seqs: &[i64],
    ) -> Result<u64> {
        let mut changed = 0;
        for chunk in seqs.chunks(INSERT_CHUNK) {
            let mut query = sqlx::query(AssertSqlSafe(kind.sql(s, chunk.len()))).bind(token.0);
            for seq in chunk {
                query = query.bind(*seq);
            }
            let mut conn = read_committed(pool, s).await?;
            changed += query
                .execute(&mut *conn)
                .await
                .for_table(&s.table)?
                .rows_affected();
        }
        Ok(changed)
    }

    async fn fail(
        pool: &Pool<MySql>,
        s: &Statements,
        token: LeaseToken,
        failures: &[Failure],
    ) -> Result<u64> {
        let mut conn = read_committed(pool, s).await?;
        let mut tx = conn.begin().await.for_table(&s.table)?;
        let mut changed = 0;
        for f in failures {
            changed += sqlx::query(AssertSqlSafe(s.fail_one.as_str()))
                .bind(f.error.as_str())
                .bind(i32::from(f.retry_after.is_none()))
                .bind(f.retry_after.map_or(0, micros))
                .bind(f.seq)
                .bind(token.0)
                .execute(&mut *tx)
                .await
                .for_table(&s.table)?
                .rows_affected();
        }
        tx.commit().await.for_table(&s.table)?;
        Ok(changed)
    }

    async fn stats(pool: &Pool<MySql>, s: &Statements) -> Result<OutboxStats> {
        let row = sqlx::query(AssertSqlSafe(s.stats.as_str()))
            .fetch_one(pool)
            .await
            .for_table(&s.table)?;
        let count = |i: usize| -> std::result::Result<u64, sqlx::Error> {
            Ok(row.try_get::<i64, _>(i)?.max(0) as u64)
        };
        let stats = (|| {
            Ok::<_, sqlx::Error>(OutboxStats {
                pending: count(0)?,
                claimed: count(1)?,
                failed: count(2)?,
                dead: count(3)?,
                published: count(4)?,
                oldest_unpublished_age: row
                    .try_get::<Option<i64>, _>(5)?
                    .map(|us| Duration::from_micros(us.max(0) as u64)),
            })
        })();
        stats.map_err(outbox_core::Error::database)
    }

    async fn get(pool: &Pool<MySql>, s: &Statements, id: Uuid) -> Result<Option<StoredMessage>> {
        let row = sqlx::query(AssertSqlSafe(s.get.as_str()))
            .bind(id.hyphenated().to_string())
            .fetch_optional(pool)
            .await
            .for_table(&s.table)?;
        let Some(row) = row else { return Ok(None) };
        let stored = (|| {
            let envelope = envelope(&row)?;
            let state: i64 = row.try_get(9)?;
            let leased: i64 = row.try_get(10)?;
            Ok::<_, sqlx::Error>(StoredMessage {
                status: status_of(state as i16, leased == 1, envelope.attempts as i32),
                envelope,
                last_error: row.try_get(11)?,
                available_at: from_micros(row.try_get(12)?),
            })
        })();
        stored.map(Some).map_err(outbox_core::Error::database)
    }

    async fn purge_published(
        pool: &Pool<MySql>,
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

    async fn retry_dead(pool: &Pool<MySql>, s: &Statements, id: Option<Uuid>) -> Result<u64> {
        let done = match id {
            Some(id) => {
                sqlx::query(AssertSqlSafe(s.retry_dead_one.as_str()))
                    .bind(id.hyphenated().to_string())
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
