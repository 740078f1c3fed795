//! The per-database seams: how each sqlx driver inserts, claims and settles rows.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use outbox_core::sql::{Dialect, Statements};
use outbox_core::{
    Envelope, Failure, LeaseToken, Message, OutboxStats, Result, Settled, Settlement,
    StoredMessage, Uuid,
};
use sqlx::Pool;

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// A sqlx database the outbox supports: `Postgres`, `MySql` or `Sqlite`.
///
/// Sealed: the outbox's SQL is written per database.
pub trait OutboxDatabase: sqlx::Database + Sealed {
    /// The SQL dialect.
    const DIALECT: Dialect;

    #[doc(hidden)]
    fn default_statements() -> &'static Arc<Statements>;

    #[doc(hidden)]
    fn insert(
        conn: &mut Self::Connection,
        s: &Statements,
        messages: &[Message],
    ) -> impl Future<Output = Result<()>> + Send;

    #[doc(hidden)]
    fn run_script(
        conn: &mut Self::Connection,
        s: &Statements,
    ) -> impl Future<Output = Result<()>> + Send;

    #[doc(hidden)]
    fn claim(
        pool: &Pool<Self>,
        s: &Statements,
        limit: usize,
        lease: Duration,
        token: LeaseToken,
    ) -> impl Future<Output = Result<Vec<Envelope>>> + Send;

    #[doc(hidden)]
    fn settle(
        pool: &Pool<Self>,
        s: &Statements,
        kind: Settle,
        token: LeaseToken,
        seqs: &[i64],
    ) -> impl Future<Output = Result<u64>> + Send;

    #[doc(hidden)]
    fn fail(
        pool: &Pool<Self>,
        s: &Statements,
        token: LeaseToken,
        failures: &[Failure],
    ) -> impl Future<Output = Result<u64>> + Send;

    #[doc(hidden)]
    fn settle_batch(
        pool: &Pool<Self>,
        s: &Statements,
        keep_published: bool,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settled>> + Send {
        async move {
            let ack = if keep_published {
                Settle::AckKeep
            } else {
                Settle::AckDelete
            };
            let mut settled = Settled::default();
            if !settlement.published.is_empty() {
                settled.published =
                    Self::settle(pool, s, ack, token, &settlement.published).await?;
            }
            if !settlement.failed.is_empty() {
                settled.failed = Self::fail(pool, s, token, &settlement.failed).await?;
            }
            if !settlement.released.is_empty() {
                settled.released =
                    Self::settle(pool, s, Settle::Release, token, &settlement.released).await?;
            }
            Ok(settled)
        }
    }

    #[doc(hidden)]
    fn stats(pool: &Pool<Self>, s: &Statements)
    -> impl Future<Output = Result<OutboxStats>> + Send;

    #[doc(hidden)]
    fn get(
        pool: &Pool<Self>,
        s: &Statements,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredMessage>>> + Send;

    #[doc(hidden)]
    fn purge_published(
        pool: &Pool<Self>,
        s: &Statements,
        older_than: Duration,
    ) -> impl Future<Output = Result<u64>> + Send;

    #[doc(hidden)]
    fn retry_dead(
        pool: &Pool<Self>,
        s: &Statements,
        id: Option<Uuid>,
    ) -> impl Future<Output = Result<u64>> + Send;
}

/// Which settlement a statement performs.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Delete published rows.
    AckDelete,
    /// Keep published rows for the retention window.
    AckKeep,
    /// Give rows back unchanged.
    Release,
}

impl Settle {
    /// The row-lease statement (MySQL, SQLite) for `n` rows.
    pub(crate) fn sql(self, s: &Statements, n: usize) -> String {
        let rows = row_lease(s);
        match self {
            Settle::AckDelete => rows.ack_delete(n),
            Settle::AckKeep => rows.ack_keep(n),
            Settle::Release => rows.release(n),
        }
    }
}

/// The row-lease statements, which MySQL and SQLite statements always carry.
pub(crate) fn row_lease(s: &Statements) -> &outbox_core::sql::RowLeaseSql {
    s.row_lease
        .as_ref()
        .expect("MySQL and SQLite statements always carry the row-lease protocol")
}

/// A connection type the outbox can enqueue on: `PgConnection`, `MySqlConnection` or
/// `SqliteConnection`. Inside a transaction, pass `&mut *tx`.
pub trait OutboxConnection: Send {
    /// The connection's database.
    type Database: OutboxDatabase<Connection = Self>;
}

/// Microseconds in a duration, saturating.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A time from microseconds since the Unix epoch.
pub(crate) fn from_micros(us: i64) -> std::time::SystemTime {
    let epoch = std::time::UNIX_EPOCH;
    if us >= 0 {
        epoch + Duration::from_micros(us as u64)
    } else {
        epoch - Duration::from_micros(us.unsigned_abs())
    }
}

/// Derives a message's status from its stored columns.
pub(crate) fn status_of(state: i16, leased: bool, attempts: i32) -> outbox_core::Status {
    use outbox_core::Status;
    use outbox_core::sql::state;
    match state {
        state::DEAD => Status::Dead,
        state::PUBLISHED => Status::Published,
        _ if leased => Status::Claimed,
        _ if attempts > 0 => Status::Failed,
        _ => Status::Pending,
    }
}
