//! The store protocol, once for every database and every adapter: which statements run, in
//! which order and transaction, with which parameters, and how their rows are decoded.
//!
//! Producers call [`enqueue`] and [`migrate`] on the connection they already have. The relay's
//! store ([`SqlStore`](super::SqlStore)) hands [`Operation`]s to the adapter's
//! [`SqlPool`](super::SqlPool), which runs each on one pooled connection in the transaction the
//! operation asks for.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::executor::{
    CellType, Column, DbError, DbErrorKind, Executor, Param, Query, Row, Rows, TxMode,
};
use super::{Dialect, KeyLockSql, RowLeaseSql, Statements, operator, state};
use crate::error::{Error, Result};
use crate::message::{Envelope, Message, check_payload_size, decode_headers};
use crate::status::Status;
use crate::store::{
    CorruptRow, EventTypeStats, Failure, Filter, LeaseToken, LiveClaim, OutboxStats, Purge,
    REPLAY_OF_HEADER, Replay, Replayed, Retry, Settled, Settlement, StoredMessage,
};

/// The result columns of each statement shape.
pub mod columns {
    use super::{CellType::*, Column};

    const ENVELOPE_COLUMNS: [Column; 9] = [
        Column::new("seq", Int),
        Column::new("message_id", Text),
        Column::new("event_type", Text),
        Column::nullable("partition_key", Text),
        Column::nullable("aggregate_type", Text),
        Column::new("payload", Bytes),
        Column::new("headers", Text),
        Column::new("created_us", Int),
        Column::new("attempts", Int),
    ];

    const STORED_COLUMNS: [Column; 13] = {
        let bookkeeping = [
            Column::new("state", Int),
            Column::new("leased", Int),
            Column::nullable("last_error", Text),
            Column::new("available_us", Int),
        ];
        let mut all = [Column::new("", Int); 13];
        let mut i = 0;
        while i < all.len() {
            all[i] = if i < ENVELOPE_COLUMNS.len() {
                ENVELOPE_COLUMNS[i]
            } else {
                bookkeeping[i - ENVELOPE_COLUMNS.len()]
            };
            i += 1;
        }
        all
    };

    /// A claimed or inspected message.
    pub const ENVELOPE: &[Column] = &ENVELOPE_COLUMNS;

    /// A message with its bookkeeping (`get`): the envelope's columns, then `state`, `leased`,
    /// `last_error` and `available_us`.
    pub const STORED: &[Column] = &STORED_COLUMNS;

    /// Counts by status (`stats`).
    pub const STATS: &[Column] = &[
        Column::new("pending", Int),
        Column::new("claimed", Int),
        Column::new("failed", Int),
        Column::new("dead", Int),
        Column::new("published", Int),
        Column::nullable("oldest_age_us", Int),
    ];

    /// The counts of a whole-claim settlement (PostgreSQL).
    pub const SETTLED: &[Column] = &[
        Column::new("published", Int),
        Column::new("failed", Int),
        Column::new("released", Int),
    ];

    /// How many rows a claims-table statement changed (PostgreSQL).
    pub const CHANGED: &[Column] = &[Column::new("changed", Int)];

    /// Keys (the MySQL claim's busy keys).
    pub const KEYS: &[Column] = &[Column::new("partition_key", Text)];

    /// Each key's first row that a claim must not pass (the MySQL claim's gaps).
    pub const GAPS: &[Column] = &[Column::new("partition_key", Text), Column::new("gap", Int)];

    /// A count (the inbox's `seen`, an operator's count).
    pub const COUNT: &[Column] = &[Column::new("n", Int)];

    /// Counts per event type.
    pub const EVENT_TYPES: &[Column] = &[
        Column::new("event_type", Text),
        Column::nullable("unpublished", Int),
        Column::nullable("dead", Int),
        Column::nullable("published", Int),
        Column::nullable("oldest_age_us", Int),
    ];

    /// The claims relays hold.
    pub const LIVE_CLAIMS: &[Column] = &[
        Column::new("token", Int),
        Column::new("messages", Int),
        Column::nullable("expires_in_us", Int),
    ];
}

/// The most rows one MySQL or SQLite statement carries: 7 parameters per inserted row stay
/// under MySQL's 65,535 and SQLite's 32,766 placeholders, and a JSON array of that many ids
/// or failures stays far below MySQL's packet limit.
pub const fn rows_per_statement(dialect: Dialect) -> usize {
    match dialect {
        Dialect::MySql => 8000,
        _ => 4000,
    }
}

/// Maps a database error for `s`'s table: a missing table that is this outbox's becomes
/// [`Error::MissingTable`], which tells the user to migrate.
pub fn map_error(s: &Statements, err: DbError) -> Error {
    if err.kind() == DbErrorKind::MissingTable && err.message().contains(s.table.table()) {
        return Error::MissingTable {
            table: s.table.to_string(),
        };
    }
    Error::from(err)
}

async fn fetch<E: Executor>(exec: &mut E, s: &Statements, query: Query<'_>) -> Result<Rows> {
    exec.fetch(&query).await.map_err(|e| map_error(s, e))
}

fn db(err: DbError) -> Error {
    Error::from(err)
}

/// Decodes each row of `rows` with `decode`.
fn decode_all<T>(rows: &mut Rows, decode: impl FnMut(Row<'_>) -> Result<T>) -> Result<Vec<T>> {
    rows.rows().map_err(db)?.map(decode).collect()
}

/// The `changed` count a claims-table statement returns.
fn changed(rows: Rows) -> Result<u64> {
    decode_one(rows, |mut row| Ok(count(row.int("changed").map_err(db)?)))
}

/// Decodes the one row a statement returns.
fn decode_one<T>(mut rows: Rows, decode: impl FnOnce(Row<'_>) -> Result<T>) -> Result<T> {
    let row = rows.rows().map_err(db)?.next();
    decode(row.ok_or_else(|| db(DbError::decode("the statement returned no row")))?)
}

async fn execute<E: Executor>(exec: &mut E, s: &Statements, query: Query<'_>) -> Result<u64> {
    exec.execute(&query).await.map_err(|e| map_error(s, e))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

fn corrupt(seq: i64) -> impl Fn(DbError) -> Error {
    move |err| Error::CorruptRow {
        seq,
        reason: err.message().to_owned(),
    }
}

fn envelope(row: &mut Row<'_>) -> Result<Envelope> {
    let seq = row.int("seq").map_err(db)?;
    let bad = corrupt(seq);
    // Read in the columns' declared order, which is where each lookup looks first.
    let id = row.text("message_id").map_err(&bad)?;
    let id = Uuid::parse_str(&id).map_err(|e| Error::CorruptRow {
        seq,
        reason: format!("message_id {id:?} is not a UUID: {e}"),
    })?;
    let event_type = row.text("event_type").map_err(&bad)?;
    let partition_key = row.opt_text("partition_key").map_err(&bad)?;
    let aggregate_type = row.opt_text("aggregate_type").map_err(&bad)?;
    let payload = row.bytes("payload").map_err(&bad)?.into();
    let headers = decode_headers(seq, &row.text("headers").map_err(&bad)?)?;
    Ok(Envelope {
        seq,
        id,
        event_type,
        partition_key,
        aggregate_type,
        payload,
        headers,
        created_at: from_micros(row.int("created_us").map_err(&bad)?),
        attempts: u32::try_from(row.int("attempts").map_err(&bad)?.max(0)).unwrap_or(u32::MAX),
    })
}

/// Decodes claimed rows, setting apart those that cannot be read as messages: one bad row must
/// not fail the claim of all the others.
fn claimed(mut rows: Rows) -> Result<(Vec<Envelope>, Vec<CorruptRow>)> {
    let mut messages = Vec::with_capacity(rows.len());
    let mut corrupt = Vec::new();
    for mut row in rows.rows().map_err(db)? {
        match envelope(&mut row) {
            Ok(message) => messages.push(message),
            Err(Error::CorruptRow { seq, reason }) => corrupt.push(CorruptRow { seq, reason }),
            Err(err) => return Err(err),
        }
    }
    Ok((messages, corrupt))
}

fn stored(mut row: Row<'_>) -> Result<StoredMessage> {
    let envelope = envelope(&mut row)?;
    let bad = corrupt(envelope.seq);
    let state = row.int("state").map_err(&bad)?;
    let leased = row.int("leased").map_err(&bad)? == 1;
    let status = match i16::try_from(state).unwrap_or(-1) {
        state::DEAD => Status::Dead,
        state::PUBLISHED => Status::Published,
        _ if leased => Status::Claimed,
        _ if envelope.attempts > 0 => Status::Failed,
        _ => Status::Pending,
    };
    Ok(StoredMessage {
        status,
        last_error: row.opt_text("last_error").map_err(&bad)?,
        available_at: from_micros(row.int("available_us").map_err(&bad)?),
        envelope,
    })
}

fn age(us: Option<i64>) -> Option<Duration> {
    us.map(|us| Duration::from_micros(count(us)))
}

fn event_type_stats(mut row: Row<'_>) -> Result<EventTypeStats> {
    let mut n = |name| row.opt_int(name).map(|n| count(n.unwrap_or(0))).map_err(db);
    Ok(EventTypeStats {
        unpublished: n("unpublished")?,
        dead: n("dead")?,
        published: n("published")?,
        oldest_unpublished_age: age(row.opt_int("oldest_age_us").map_err(db)?),
        event_type: row.text("event_type").map_err(db)?,
    })
}

fn live_claim(mut row: Row<'_>) -> Result<LiveClaim> {
    Ok(LiveClaim {
        token: LeaseToken(row.int("token").map_err(db)?),
        messages: count(row.int("messages").map_err(db)?),
        expires_in: age(row.opt_int("expires_in_us").map_err(db)?).unwrap_or_default(),
    })
}

fn stats(mut row: Row<'_>) -> Result<OutboxStats> {
    Ok(OutboxStats {
        pending: count(row.int("pending").map_err(db)?),
        claimed: count(row.int("claimed").map_err(db)?),
        failed: count(row.int("failed").map_err(db)?),
        dead: count(row.int("dead").map_err(db)?),
        published: count(row.int("published").map_err(db)?),
        oldest_unpublished_age: row
            .opt_int("oldest_age_us")
            .map_err(db)?
            .map(|us| Duration::from_micros(count(us))),
    })
}

/// The message id as every statement binds it: hyphenated text (PostgreSQL casts it).
fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// Writes `messages` into the outbox in the caller's transaction, in order: one statement on
/// PostgreSQL whatever their number, one per [`rows_per_statement`] rows elsewhere.
///
/// # Errors
///
/// [`Error::PayloadTooLarge`] before anything is written when a payload exceeds
/// `max_payload`; [`Error::MissingTable`] when the migration has not run; [`Error::Database`]
/// for anything else the database reports.
pub async fn enqueue<E: Executor>(
    exec: &mut E,
    s: &Statements,
    max_payload: usize,
    messages: &[Message],
) -> Result<()> {
    for message in messages {
        check_payload_size(message.payload().len(), max_payload)?;
    }
    let trace = crate::trace::current();
    let trace = trace.as_ref();
    match messages {
        [] => Ok(()),
        [one] if s.dialect == Dialect::Postgres || one.delay().is_zero() => {
            let id = id_text(one.id());
            let headers = crate::trace::headers_json(one, trace);
            let delayed = !one.delay().is_zero();
            // Only undelayed messages come here on MySQL (the guard above), so the locked
            // insert needs no delay parameter.
            let locked = s.enabled_key_locks().zip(one.partition_key());
            let sql = match locked {
                Some((locks, _)) => &locks.insert_one,
                None if delayed => &s.insert_one_delayed,
                None => &s.insert_one,
            };
            let mut query = Query::statement(sql)
                .bind(Param::Text(Some(&id)))
                .bind(Param::Text(Some(one.event_type())))
                .bind(Param::Text(one.partition_key()))
                .bind(Param::Text(one.aggregate_type_name()))
                .bind(Param::Bytes(one.payload()))
                .bind(Param::Text(Some(&headers)));
            if delayed {
                query = query.bind(Param::I64(micros(one.delay())));
            }
            if let Some((_, key)) = locked {
                query = query.bind(Param::I64(KeyLockSql::slot(key)));
            }
            execute(exec, s, query).await.map(drop)
        }
        _ if s.dialect == Dialect::Postgres => {
            let ids: Vec<String> = messages.iter().map(|m| id_text(m.id())).collect();
            let headers: Vec<String> = messages
                .iter()
                .map(|m| crate::trace::headers_json(m, trace))
                .collect();
            let delays: Vec<i64> = messages.iter().map(|m| micros(m.delay())).collect();
            let sql = s.insert_many_arrays();
            let query = Query::statement(&sql)
                .bind(Param::TextArray(
                    ids.iter().map(|i| Some(i.as_str())).collect(),
                ))
                .bind(Param::TextArray(
                    messages.iter().map(|m| Some(m.event_type())).collect(),
                ))
                .bind(Param::TextArray(
                    messages.iter().map(Message::partition_key).collect(),
                ))
                .bind(Param::TextArray(
                    messages.iter().map(Message::aggregate_type_name).collect(),
                ))
                .bind(Param::BytesArray(
                    messages.iter().map(|m| &m.payload()[..]).collect(),
                ))
                .bind(Param::TextArray(
                    headers.iter().map(|h| Some(h.as_str())).collect(),
                ))
                .bind(Param::I64Array(&delays));
            execute(exec, s, query).await.map(drop)
        }
        _ => {
            // Every key's lock is taken by the first statement, in one sorted pass, so two
            // batches never wait on each other in opposite orders.
            let mut slots: Vec<i64> = match s.enabled_key_locks() {
                Some(_) => messages
                    .iter()
                    .filter_map(Message::partition_key)
                    .map(KeyLockSql::slot)
                    .collect(),
                None => Vec::new(),
            };
            slots.sort_unstable();
            slots.dedup();
            let mut slots = match slots.is_empty() {
                true => None,
                false => Some(json(&slots)?),
            };
            for chunk in messages.chunks(rows_per_statement(s.dialect)) {
                let ids: Vec<String> = chunk.iter().map(|m| id_text(m.id())).collect();
                let headers: Vec<String> = chunk
                    .iter()
                    .map(|m| crate::trace::headers_json(m, trace))
                    .collect();
                let lock = slots.take();
                let (sql, rows) = lock
                    .as_ref()
                    .and_then(|_| {
                        let rows = s.locked_insert_rows(chunk.len());
                        s.insert_many_locked(rows).map(|sql| (sql, rows))
                    })
                    .unwrap_or_else(|| (s.insert_many(chunk.len()), chunk.len()));
                let mut query = Query::statement(&sql);
                for ((m, id), headers) in chunk.iter().zip(&ids).zip(&headers) {
                    query = query
                        .bind(Param::Text(Some(id)))
                        .bind(Param::Text(Some(m.event_type())))
                        .bind(Param::Text(m.partition_key()))
                        .bind(Param::Text(m.aggregate_type_name()))
                        .bind(Param::Bytes(m.payload()))
                        .bind(Param::Text(Some(headers)))
                        .bind(Param::I64(micros(m.delay())));
                }
                // Padding rows of the locked insert: a NULL message id, which it skips.
                for _ in chunk.len()..rows {
                    query = query
                        .bind(Param::Text(None))
                        .bind(Param::Text(None))
                        .bind(Param::Text(None))
                        .bind(Param::Text(None))
                        .bind(Param::Bytes(&[]))
                        .bind(Param::Text(None))
                        .bind(Param::I64(0));
                }
                if let Some(slots) = &lock {
                    query = query.bind(Param::Text(Some(slots)));
                }
                execute(exec, s, query).await?;
            }
            Ok(())
        }
    }
}

/// Creates the outbox table and everything the protocol needs beside it, if missing. Safe to
/// run repeatedly and concurrently (on PostgreSQL it is one statement that takes a lock first).
///
/// # Errors
///
/// [`Error::Database`] when a statement fails (for example, no permission to create tables).
pub async fn migrate<E: Executor>(exec: &mut E, s: &Statements) -> Result<()> {
    for statement in &s.migrate {
        execute(exec, s, Query::statement(statement)).await?;
    }
    Ok(())
}

/// Drops the outbox table with every message in it, and what [`migrate`] created beside it;
/// what does not exist is skipped.
///
/// # Errors
///
/// [`Error::Database`] when a statement fails.
pub async fn uninstall<E: Executor>(exec: &mut E, s: &Statements) -> Result<()> {
    for statement in s.drop_all() {
        execute(exec, s, Query::statement(&statement)).await?;
    }
    Ok(())
}

/// Records in the inbox that `consumer` processed message `id`, in the caller's transaction;
/// `true` when it had not before (the caller then runs its handler in the same transaction),
/// `false` when it had (a duplicate delivery: nothing was written). A concurrent delivery of
/// the same id waits here until the first one's transaction ends.
///
/// # Errors
///
/// [`Error::InvalidConsumer`] before anything is written; [`Error::MissingTable`] when the
/// migration has not run; [`Error::Database`] for anything else (a deadlock between
/// concurrent deliveries on MySQL is one: roll back and let the message be redelivered).
pub async fn record_processed<E: Executor>(
    exec: &mut E,
    s: &Statements,
    consumer: &str,
    id: Uuid,
) -> Result<bool> {
    super::inbox::check_consumer(consumer)?;
    let id = id_text(id);
    let query = Query::statement(&s.inbox.record)
        .bind(Param::Text(Some(consumer)))
        .bind(Param::Text(Some(&id)));
    Ok(execute(exec, s, query).await? > 0)
}

/// Whether the inbox holds a record of `consumer` processing message `id`.
///
/// # Errors
///
/// As for [`record_processed`].
pub async fn processed<E: Executor>(
    exec: &mut E,
    s: &Statements,
    consumer: &str,
    id: Uuid,
) -> Result<bool> {
    super::inbox::check_consumer(consumer)?;
    let id = id_text(id);
    let query = Query::new(&s.inbox.seen, columns::COUNT)
        .bind(Param::Text(Some(consumer)))
        .bind(Param::Text(Some(&id)));
    let rows = fetch(exec, s, query).await?;
    decode_one(rows, |mut row| Ok(row.int("n").map_err(db)? > 0))
}

/// How many inbox records one purge statement deletes: small enough that it holds its locks
/// briefly, large enough that a big backlog goes in few round trips.
pub const INBOX_PURGE_BATCH: usize = 5_000;

/// One unit of store work that an adapter's [`SqlPool`](super::SqlPool) runs on one pooled
/// connection.
///
/// An operation owns its inputs (it may be moved to a blocking thread) and says which
/// transaction it needs; the adapter begins it (running [`TxMode::before_begin`] first),
/// commits when [`run`](Operation::run) returns `Ok`, and rolls back otherwise.
pub trait Operation: Send + 'static {
    /// What the operation returns.
    type Output: Send + 'static;

    /// The database the operation's statements are written for.
    fn dialect(&self) -> Dialect;

    /// The transaction the operation must run in.
    fn tx_mode(&self) -> TxMode;

    /// Runs the operation's statements on `exec`.
    fn run<E: Executor>(self, exec: &mut E) -> impl Future<Output = Result<Self::Output>> + Send;
}

macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        $name:ident { $($field:ident: $ty:ty),* $(,)? } -> $out:ty;
        mode($ms:ident) $mode:expr;
        run($rs:ident, $exec:ident) $body:block
    )*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name {
            pub(crate) s: Arc<Statements>,
            $(pub(crate) $field: $ty,)*
        }

        impl Operation for $name {
            type Output = $out;

            fn dialect(&self) -> Dialect {
                self.s.dialect
            }

            fn tx_mode(&self) -> TxMode {
                let $ms = self;
                $mode
            }

            #[allow(clippy::manual_async_fn)]
            fn run<E: Executor>(self, $exec: &mut E) -> impl Future<Output = Result<$out>> + Send {
                let $rs = self;
                async move $body
            }
        }
    )*};
}

/// The transaction of a settlement: none on PostgreSQL, whose claims-table statements settle
/// any number of rows in one statement. MySQL runs every relay statement at READ COMMITTED
/// (see ARCHITECTURE.md, "MySQL isolation"); on MySQL and SQLite a transaction is begun only
/// where several statements must land together.
fn row_lease_mode(s: &Statements, several: bool) -> TxMode {
    match s.dialect {
        Dialect::Postgres => TxMode::None,
        Dialect::MySql if several => TxMode::ReadCommitted,
        Dialect::MySql => TxMode::ReadCommittedStatement,
        _ if several => TxMode::Transaction,
        _ => TxMode::None,
    }
}

/// How many statements a row-lease settlement sends.
fn row_lease_statements(s: &Statements, settlement: &Settlement) -> usize {
    let chunks = |n: usize| n.div_ceil(rows_per_statement(s.dialect));
    chunks(settlement.published.len())
        + chunks(settlement.failed.len())
        + chunks(settlement.released.len())
}

fn row_lease(s: &Statements) -> &RowLeaseSql {
    s.row_lease
        .as_ref()
        .expect("MySQL and SQLite statements always carry the row-lease protocol")
}

/// Which settlement a row-settling statement performs: ack by delete, ack by keeping, release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    AckDelete,
    AckKeep,
    Release,
}

impl Settle {
    pub(crate) fn ack(keep_published: bool) -> Self {
        if keep_published {
            Settle::AckKeep
        } else {
            Settle::AckDelete
        }
    }
}

operations! {
    /// Creates the table (see [`migrate`]).
    Migrate {} -> ();
    mode(_op) TxMode::None;
    run(op, exec) { migrate(exec, &op.s).await }

    /// Drops the outbox table and everything `Migrate` created beside it.
    Uninstall {} -> ();
    mode(_op) TxMode::None;
    run(op, exec) { uninstall(exec, &op.s).await }

    /// Claims up to `limit` rows for `lease`, in sequence order.
    /// Rows that cannot be decoded come back apart, leased like the others.
    ClaimRows { limit: usize, lease: Duration, token: LeaseToken } -> (Vec<Envelope>, Vec<CorruptRow>);
    // One statement on PostgreSQL and SQLite; four on MySQL.
    mode(op) if op.s.dialect == Dialect::MySql { TxMode::ReadCommitted } else { TxMode::None };
    run(op, exec) {
        let mut claimed = claim(exec, &op.s, op.limit, op.lease, op.token).await?;
        claimed.0.sort_unstable_by_key(|m| m.seq);
        Ok(claimed)
    }

    /// Acks or releases rows of a claim.
    SettleRows { kind: Settle, token: LeaseToken, seqs: Vec<i64> } -> u64;
    mode(op) row_lease_mode(&op.s, op.seqs.len() > rows_per_statement(op.s.dialect));
    run(op, exec) { settle_rows(exec, &op.s, op.kind, op.token, &op.seqs).await }

    /// Extends the lease of a claim's rows; `true` when every row was still leased.
    RenewRows { token: LeaseToken, seqs: Vec<i64>, lease: Duration } -> bool;
    mode(op) row_lease_mode(&op.s, op.seqs.len() > rows_per_statement(op.s.dialect));
    run(op, exec) { renew_rows(exec, &op.s, op.token, &op.seqs, op.lease).await }

    /// Records failed attempts.
    FailRows { token: LeaseToken, failures: Vec<Failure> } -> u64;
    mode(op) row_lease_mode(&op.s, op.failures.len() > rows_per_statement(op.s.dialect));
    run(op, exec) { fail_rows(exec, &op.s, op.token, &op.failures).await }

    /// Settles a whole claim.
    SettleClaim { keep_published: bool, token: LeaseToken, settlement: Settlement } -> Settled;
    mode(op) row_lease_mode(&op.s, row_lease_statements(&op.s, &op.settlement) > 1);
    run(op, exec) { settle_claim(exec, &op.s, op.keep_published, op.token, &op.settlement).await }

    /// Counts by status.
    Stats {} -> OutboxStats;
    mode(_op) TxMode::None;
    run(op, exec) { decode_one(fetch(exec, &op.s, Query::new(&op.s.stats, columns::STATS)).await?, stats) }

    /// One message by id.
    Get { id: Uuid } -> Option<StoredMessage>;
    mode(_op) TxMode::None;
    run(op, exec) {
        let id = id_text(op.id);
        let query = Query::new(&op.s.get, columns::STORED).bind(Param::Text(Some(&id)));
        let mut rows = fetch(exec, &op.s, query).await?;
        rows.rows().map_err(db)?.next().map(stored).transpose()
    }

    /// Messages passing a filter, in sequence order after `after`.
    List { filter: Filter, after: i64, limit: usize } -> Vec<StoredMessage>;
    mode(_op) TxMode::None;
    run(op, exec) {
        let built = operator::list(&op.s, &op.filter, op.after, op.limit);
        decode_all(&mut fetch(exec, &op.s, built.query(columns::STORED)).await?, stored)
    }

    /// How many messages pass a filter.
    CountRows { filter: Filter } -> u64;
    mode(_op) TxMode::None;
    run(op, exec) {
        let built = operator::count(&op.s, &op.filter);
        let rows = fetch(exec, &op.s, built.query(columns::COUNT)).await?;
        decode_one(rows, |mut row| Ok(count(row.int("n").map_err(db)?)))
    }

    /// Counts per event type.
    EventTypes {} -> Vec<EventTypeStats>;
    mode(_op) TxMode::None;
    run(op, exec) {
        let built = operator::event_types(&op.s);
        decode_all(&mut fetch(exec, &op.s, built.query(columns::EVENT_TYPES)).await?, event_type_stats)
    }

    /// The live claims.
    Claims {} -> Vec<LiveClaim>;
    mode(_op) TxMode::None;
    run(op, exec) {
        let built = operator::claims(&op.s);
        decode_all(&mut fetch(exec, &op.s, built.query(columns::LIVE_CLAIMS)).await?, live_claim)
    }

    /// Makes one batch of messages due now.
    RetryRows { target: Retry, limit: usize } -> u64;
    mode(_op) TxMode::None;
    run(op, exec) {
        let built = operator::retry(&op.s, &op.target, op.limit);
        execute(exec, &op.s, built.query(&[])).await
    }

    /// Enqueues copies of one page of published messages.
    ReplayRows { target: Replay, after: i64, limit: usize } -> Replayed;
    mode(_op) TxMode::Transaction;
    run(op, exec) { replay(exec, &op.s, &op.target, op.after, op.limit).await }

    /// Deletes one batch of dead or published messages.
    PurgeRows { target: Purge, limit: usize } -> u64;
    mode(_op) TxMode::None;
    run(op, exec) {
        let built = operator::purge(&op.s, &op.target, op.limit);
        execute(exec, &op.s, built.query(&[])).await
    }

    /// Revives one dead message, or all.
    RetryDead { id: Option<Uuid> } -> u64;
    mode(_op) TxMode::None;
    run(op, exec) {
        match op.id {
            Some(id) => {
                let id = id_text(id);
                let query = Query::statement(&op.s.retry_dead_one).bind(Param::Text(Some(&id)));
                execute(exec, &op.s, query).await
            }
            None => execute(exec, &op.s, Query::statement(&op.s.retry_dead_all)).await,
        }
    }

    /// Deletes one batch of inbox records older than the retention window.
    PurgeInbox { older_than: Duration } -> u64;
    mode(_op) TxMode::None;
    run(op, exec) {
        let query = Query::statement(&op.s.inbox.purge)
            .bind(Param::I64(micros(op.older_than)))
            .bind(Param::I64(INBOX_PURGE_BATCH as i64));
        execute(exec, &op.s, query).await
    }

    /// Deletes published rows older than the retention window.
    PurgePublished { older_than: Duration } -> u64;
    mode(_op) TxMode::None;
    run(op, exec) {
        let query = Query::statement(&op.s.purge_published)
            .bind(Param::I64(micros(op.older_than)));
        execute(exec, &op.s, query).await
    }
}

async fn replay<E: Executor>(
    exec: &mut E,
    s: &Statements,
    target: &Replay,
    after: i64,
    limit: usize,
) -> Result<Replayed> {
    let through = match target.through {
        Some(through) => through,
        None => {
            let built = operator::max_seq(s);
            let rows = fetch(exec, s, built.query(columns::COUNT)).await?;
            decode_one(rows, |mut row| row.int("n").map_err(db))?
        }
    };
    let built = operator::replay_page(s, target, through, after, limit);
    let page = decode_all(
        &mut fetch(exec, s, built.query(columns::STORED)).await?,
        stored,
    )?;
    let copies = page
        .iter()
        .map(|original| replay_copy(&original.envelope))
        .collect::<Result<Vec<_>>>()?;
    // The originals were accepted once; a limit lowered since must not strand them.
    enqueue(exec, s, usize::MAX, &copies).await?;
    Ok(Replayed {
        replayed: copies.len() as u64,
        last_seq: page.last().map(|m| m.envelope.seq),
        through,
    })
}

/// A new message with `original`'s content and a header naming it.
fn replay_copy(original: &Envelope) -> Result<Message> {
    let mut copy = Message::bytes(original.event_type.clone(), original.payload.clone())?;
    if let Some(key) = &original.partition_key {
        copy = copy.key(key)?;
    }
    if let Some(aggregate_type) = &original.aggregate_type {
        copy = copy.aggregate_type(aggregate_type.clone())?;
    }
    for (name, value) in &original.headers {
        copy = copy.header(name.clone(), value.clone())?;
    }
    copy.header(REPLAY_OF_HEADER, original.id.hyphenated().to_string())
}

async fn claim<E: Executor>(
    exec: &mut E,
    s: &Statements,
    limit: usize,
    lease: Duration,
    token: LeaseToken,
) -> Result<(Vec<Envelope>, Vec<CorruptRow>)> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    if s.dialect == Dialect::MySql {
        return claim_mysql(exec, s, limit, lease, token).await;
    }
    // One statement on PostgreSQL (the claim function) and SQLite.
    let query = Query::new(&s.claim, columns::ENVELOPE)
        .bind(Param::I64(limit))
        .bind(Param::I64(micros(lease)))
        .bind(Param::I64(token.0));
    claimed(fetch(exec, s, query).await?)
}

/// The MySQL claim: MySQL has no `UPDATE ... RETURNING`, so it reads the busy keys, locks a
/// window of candidates with `SKIP LOCKED`, finds each key's gap, and leases what precedes
/// the gaps, in one READ COMMITTED transaction. Lists of keys and ids travel as one JSON
/// parameter each: a list of `?`s would pass MySQL's 65,535 placeholders with that many busy
/// keys, and give every claim a statement text of its own.
async fn claim_mysql<E: Executor>(
    exec: &mut E,
    s: &Statements,
    limit: i64,
    lease: Duration,
    token: LeaseToken,
) -> Result<(Vec<Envelope>, Vec<CorruptRow>)> {
    use std::collections::{BTreeSet, HashMap};

    let sql = s
        .mysql_claim
        .as_ref()
        .expect("MySQL statements always carry the MySQL claim");
    let mut busy = fetch(exec, s, Query::new(&sql.busy_keys, columns::KEYS)).await?;
    let busy = decode_all(&mut busy, |mut row| row.text("partition_key").map_err(db))?;
    let (window, listed) = sql.window(busy.len());
    let busy_json;
    let mut window = Query::new(window, columns::ENVELOPE);
    match listed {
        Some(len) => {
            let pad = busy.first().map(String::as_str);
            for n in 0..len {
                window = window.bind(Param::Text(busy.get(n).map(String::as_str).or(pad)));
            }
        }
        None => {
            busy_json = json(&busy)?;
            window = window.bind(Param::Text(Some(&busy_json)));
        }
    }
    let window = window.bind(Param::I64(limit));
    let (mut candidates, corrupt) = claimed(fetch(exec, s, window).await?)?;
    if candidates.is_empty() && corrupt.is_empty() {
        return Ok((candidates, corrupt));
    }
    // Corrupt rows are leased whatever their key (the relay dead-letters them, publishing
    // nothing), and are no key's gap.
    let corrupt_seqs = corrupt.iter().map(|c| c.seq);

    // A key's rows in the window are claimable only up to the first older-or-interleaved live
    // row of that key that is not in the window (locked by another claimer, leased, waiting
    // for a retry, or delayed).
    let keys: BTreeSet<&str> = candidates
        .iter()
        .filter_map(|e| e.partition_key.as_deref())
        .collect();
    let mut gaps: HashMap<String, i64> = HashMap::new();
    if !keys.is_empty() {
        let window: Vec<i64> = candidates
            .iter()
            .map(|e| e.seq)
            .chain(corrupt_seqs.clone())
            .collect();
        let max_id = window.iter().copied().max().unwrap_or(0);
        let (keys, ids) = (json(&keys)?, json(&window)?);
        let query = Query::new(&sql.gaps, columns::GAPS)
            .bind(Param::Text(Some(&keys)))
            .bind(Param::I64(max_id))
            .bind(Param::Text(Some(&ids)));
        let mut rows = fetch(exec, s, query).await?;
        for mut row in rows.rows().map_err(db)? {
            let key = row.text("partition_key").map_err(db)?;
            gaps.insert(key, row.int("gap").map_err(db)?);
        }
    }
    candidates.retain(|e| match e.partition_key.as_deref() {
        Some(key) => gaps.get(key).is_none_or(|gap| e.seq < *gap),
        None => true,
    });
    let leased: Vec<i64> = candidates
        .iter()
        .map(|e| e.seq)
        .chain(corrupt_seqs)
        .collect();
    if !leased.is_empty() {
        let ids = json(&leased)?;
        let query = Query::statement(&sql.lease)
            .bind(Param::Text(Some(&ids)))
            .bind(Param::I64(micros(lease)))
            .bind(Param::I64(token.0));
        execute(exec, s, query).await?;
    }
    Ok((candidates, corrupt))
}

/// A list as the JSON array parameter the MySQL and SQLite statements read.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::database)
}

async fn settle_rows<E: Executor>(
    exec: &mut E,
    s: &Statements,
    kind: Settle,
    token: LeaseToken,
    seqs: &[i64],
) -> Result<u64> {
    if seqs.is_empty() {
        return Ok(0);
    }
    if let Some(claims) = &s.claims {
        let sql = match kind {
            Settle::AckDelete => &claims.ack,
            Settle::AckKeep => &claims.ack_keep,
            Settle::Release => &claims.release,
        };
        let query = Query::new(sql, columns::CHANGED)
            .bind(Param::I64Array(seqs))
            .bind(Param::I64(token.0));
        return changed(fetch(exec, s, query).await?);
    }
    let rows = row_lease(s);
    let sql = match kind {
        Settle::AckDelete => &rows.ack_delete,
        Settle::AckKeep => &rows.ack_keep,
        Settle::Release => &rows.release,
    };
    let mut changed = 0;
    // Chunks bound the statement's size; its text is the same for every chunk.
    for chunk in seqs.chunks(rows_per_statement(s.dialect)) {
        let ids = json(chunk)?;
        let query = Query::statement(sql)
            .bind(Param::Text(Some(&ids)))
            .bind(Param::I64(token.0));
        changed += execute(exec, s, query).await?;
    }
    Ok(changed)
}

async fn renew_rows<E: Executor>(
    exec: &mut E,
    s: &Statements,
    token: LeaseToken,
    seqs: &[i64],
    lease: Duration,
) -> Result<bool> {
    if let Some(claims) = &s.claims {
        let query = Query::new(&claims.renew, columns::CHANGED)
            .bind(Param::I64(token.0))
            .bind(Param::I64(micros(lease)))
            .bind(Param::I64Array(seqs));
        return Ok(changed(fetch(exec, s, query).await?)? == 1);
    }
    let mut renewed = 0;
    for chunk in seqs.chunks(rows_per_statement(s.dialect)) {
        let ids = json(chunk)?;
        let query = Query::statement(&row_lease(s).renew)
            .bind(Param::Text(Some(&ids)))
            .bind(Param::I64(micros(lease)))
            .bind(Param::I64(token.0));
        renewed += execute(exec, s, query).await?;
    }
    Ok(renewed == seqs.len() as u64)
}

/// Failures as the column arrays the PostgreSQL statements unnest.
struct FailureArrays<'a> {
    ids: Vec<i64>,
    delays: Vec<i64>,
    errors: Vec<Option<&'a str>>,
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
            errors: failures.iter().map(|f| Some(f.error.as_str())).collect(),
            dead: failures.iter().map(|f| f.retry_after.is_none()).collect(),
        }
    }

    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(Param::I64Array(&self.ids))
            .bind(Param::I64Array(&self.delays))
            .bind(Param::TextArray(self.errors.clone()))
            .bind(Param::BoolArray(self.dead.clone()))
    }
}

async fn fail_rows<E: Executor>(
    exec: &mut E,
    s: &Statements,
    token: LeaseToken,
    failures: &[Failure],
) -> Result<u64> {
    if failures.is_empty() {
        return Ok(0);
    }
    if let Some(claims) = &s.claims {
        let arrays = FailureArrays::new(failures);
        let query = arrays
            .bind(Query::new(&claims.fail, columns::CHANGED))
            .bind(Param::I64(token.0));
        return changed(fetch(exec, s, query).await?);
    }
    let fail = &row_lease(s).fail;
    let mut changed = 0;
    for chunk in failures.chunks(rows_per_statement(s.dialect)) {
        let rows: Vec<(i64, i64, i64, &str)> = chunk
            .iter()
            .map(|f| {
                let delay = f.retry_after.map_or(0, micros);
                (
                    f.seq,
                    delay,
                    i64::from(f.retry_after.is_none()),
                    f.error.as_str(),
                )
            })
            .collect();
        let rows = json(&rows)?;
        let query = Query::statement(fail)
            .bind(Param::Text(Some(&rows)))
            .bind(Param::I64(token.0));
        changed += execute(exec, s, query).await?;
    }
    Ok(changed)
}

async fn settle_claim<E: Executor>(
    exec: &mut E,
    s: &Statements,
    keep_published: bool,
    token: LeaseToken,
    settlement: &Settlement,
) -> Result<Settled> {
    if let Some(claims) = &s.claims {
        let sql = if keep_published {
            &claims.settle_keep
        } else {
            &claims.settle
        };
        let arrays = FailureArrays::new(&settlement.failed);
        let query = Query::new(sql, columns::SETTLED)
            .bind(Param::I64(token.0))
            .bind(Param::I64Array(&settlement.published));
        let query = arrays
            .bind(query)
            .bind(Param::I64Array(&settlement.released));
        return decode_one(fetch(exec, s, query).await?, |mut row| {
            Ok(Settled {
                published: count(row.int("published").map_err(db)?),
                failed: count(row.int("failed").map_err(db)?),
                released: count(row.int("released").map_err(db)?),
            })
        });
    }
    Ok(Settled {
        published: settle_rows(
            exec,
            s,
            Settle::ack(keep_published),
            token,
            &settlement.published,
        )
        .await?,
        failed: fail_rows(exec, s, token, &settlement.failed).await?,
        released: settle_rows(exec, s, Settle::Release, token, &settlement.released).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::TableName;

    #[test]
    fn mysql_keyed_batch_sizes_share_a_few_insert_statements() {
        let s = Statements::new(Dialect::MySql, TableName::new("outbox").unwrap());
        let max = rows_per_statement(Dialect::MySql);
        let sizes: std::collections::BTreeSet<usize> =
            (1..=max).map(|n| s.locked_insert_rows(n)).collect();
        assert_eq!(
            sizes.iter().copied().collect::<Vec<_>>(),
            [
                1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8000
            ]
        );
        for n in 1..=max {
            let rows = s.locked_insert_rows(n);
            assert!(rows >= n && rows <= max, "{n} messages in {rows} rows");
        }
        // The padded statement skips rows without a message id.
        let locked = s.insert_many_locked(16).unwrap();
        assert!(locked.contains("AND v.m IS NOT NULL"), "{locked}");
        assert_eq!(locked.matches('?').count(), 16 * 7 + 1);
    }

    #[test]
    fn only_row_lease_settlements_of_several_statements_begin_a_transaction() {
        let settlement = |n: usize| Settlement {
            published: vec![1; n],
            failed: vec![Failure {
                seq: 2,
                error: "e".into(),
                retry_after: None,
            }],
            released: vec![3],
        };
        let mode = |dialect, n| {
            let s = Arc::new(Statements::new(dialect, TableName::default()));
            let op = SettleClaim {
                s,
                keep_published: false,
                token: LeaseToken(1),
                settlement: settlement(n),
            };
            op.tx_mode()
        };
        assert_eq!(mode(Dialect::Postgres, 9000), TxMode::None);
        assert_eq!(mode(Dialect::MySql, 1), TxMode::ReadCommitted);
        assert_eq!(mode(Dialect::Sqlite, 1), TxMode::Transaction);
        let one = |dialect| {
            let s = Arc::new(Statements::new(dialect, TableName::default()));
            SettleRows {
                s,
                kind: Settle::AckDelete,
                token: LeaseToken(1),
                seqs: vec![1],
            }
            .tx_mode()
        };
        assert_eq!(one(Dialect::MySql), TxMode::ReadCommittedStatement);
        assert_eq!(one(Dialect::Sqlite), TxMode::None);
        let claim = |dialect| {
            let s = Arc::new(Statements::new(dialect, TableName::default()));
            ClaimRows {
                s,
                limit: 1,
                lease: Duration::from_secs(1),
                token: LeaseToken(1),
            }
            .tx_mode()
        };
        assert_eq!(claim(Dialect::Postgres), TxMode::None);
        assert_eq!(claim(Dialect::MySql), TxMode::ReadCommitted);
        assert_eq!(claim(Dialect::Sqlite), TxMode::None);
    }

    #[test]
    fn only_this_tables_missing_table_error_says_migrate() {
        let s = Statements::new(Dialect::Postgres, TableName::new("orders_outbox").unwrap());
        let mine = DbError::from_database(
            Some("42P01"),
            "relation \"orders_outbox\" does not exist",
            "x",
        );
        assert!(matches!(map_error(&s, mine), Error::MissingTable { .. }));
        let other = DbError::from_database(Some("42P01"), "relation \"users\" does not exist", "x");
        assert!(matches!(map_error(&s, other), Error::Database(_)));
    }
}
