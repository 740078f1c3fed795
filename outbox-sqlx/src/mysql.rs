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
use crate::text_ids::parse_uuid;

static DEFAULT: LazyLock<Arc<Statements>> =
    LazyLock::new(|| Arc::new(Statements::new(Dialect::MySql, TableName::default())));

/// Rows per multi-row INSERT: 7 parameters each, under the protocol's 65,535-parameter limit.
const INSERT_CHUNK: usize = 8000;

impl Sealed for MySql {}

impl OutboxConnection for MySqlConnection {
    type Database = MySql;
}

crate::text_ids::text_id_envelope!(MySqlRow);

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

/// The connection relay statements run on.
async fn relay_conn(
    pool: &Pool<MySql>,
    s: &Statements,
) -> Result<sqlx::pool::PoolConnection<MySql>> {
    read_committed(pool, s).await
}

impl OutboxDatabase for MySql {
    const DIALECT: Dialect = Dialect::MySql;

    fn default_statements() -> &'static Arc<Statements> {
        &DEFAULT
    }

    crate::text_ids::text_id_store_fns!(MySql, MySqlConnection);

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
}
