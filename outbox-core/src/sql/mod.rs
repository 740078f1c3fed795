//! The SQL store, once for every database and every adapter.
//!
//! * [`Statements`]: the SQL for one table on one database (schema, enqueue, claim, settle,
//!   inspection), plain strings built once from a validated [`TableName`]. Every selected
//!   column has a unique alias and one [`CellType`] on every database.
//! * [`protocol`]: which statements run, in which order and transaction, and how their rows
//!   are decoded; [`protocol::enqueue`] and [`protocol::migrate`] for producers.
//! * [`Executor`] and [`SqlPool`]: the seam an adapter implements (run a statement, give back
//!   the rows, classify errors; run an operation on a pooled connection).
//! * [`UnitOfWork`] over a [`TransactionPool`]: one lazily begun transaction that carries its
//!   messages to commit, for the web layers; [`web`]: what those layers share.
//! * [`SqlStore`]: the relay's [`Store`](crate::Store) and [`Inspect`](crate::Inspect) on top
//!   of any [`SqlPool`]; [`AnyStore`]: any of them behind one type, chosen at run time.
//!
//! Every timestamp is taken from the database clock, never the relay's, so relays on machines
//! with skewed clocks agree on leases and due times.

mod any_store;
mod executor;
pub mod inbox;
mod mysql;
mod operator;
mod outbox_table;
mod postgres;
mod postgres_claims;
pub mod protocol;
mod sqlite;
mod store;
mod table;
pub mod unit_of_work;
pub mod web;

use std::fmt;
use std::sync::{Arc, OnceLock};

pub use self::any_store::AnyStore;
pub use self::executor::{
    Cell, CellType, Column, DbError, DbErrorKind, Executor, Param, Query, Row, Rows, TxMode,
    block_on_ready,
};
pub use self::inbox::{InboxSql, Processed};
pub use self::outbox_table::OutboxTable;
pub use self::postgres_claims::ClaimsSql;
pub use self::protocol::Operation;
pub use self::store::{SqlPool, SqlStore};
pub use self::table::{DEFAULT_TABLE, MAX_TABLE_NAME_BYTES, TableName};
pub use self::unit_of_work::{Finished, Finishing, Lease, TransactionPool, UnitOfWork};

/// The databases the outbox runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL 12 or later.
    Postgres,
    /// MySQL 8.0.1+ or MariaDB 10.6+ (both have `SKIP LOCKED`).
    MySql,
    /// SQLite 3.35 or later (`RETURNING`).
    Sqlite,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        })
    }
}

/// Row states kept in the `state` column.
pub mod state {
    /// Not yet published: pending, claimed or waiting for a retry.
    pub const LIVE: i16 = 0;
    /// Every attempt failed.
    pub const DEAD: i16 = 1;
    /// Published and kept for the retention window.
    pub const PUBLISHED: i16 = 2;
}

/// Every statement of one outbox table on one database. [`protocol`] decides which run, in
/// which order and transaction; adapters only send them.
///
/// Claims and their settlement go through [`Statements::claims`] on PostgreSQL (a claims
/// table instead of a lease on every row) and through [`Statements::row_lease`] on MySQL and
/// SQLite.
#[derive(Debug, Clone)]
pub struct Statements {
    /// The database.
    pub dialect: Dialect,
    /// The table.
    pub table: TableName,
    /// Whether inserts also `NOTIFY` the table's channel (PostgreSQL).
    pub notify: bool,
    /// Idempotent schema statements.
    pub create: Vec<String>,
    /// What `migrate` runs, in order: on PostgreSQL one statement that takes the table's
    /// migration lock and then runs `create` (concurrent migrations of one table would race on
    /// `IF NOT EXISTS`); elsewhere `create` itself.
    pub migrate: Vec<String>,
    /// Insert one message. Parameters: message id, event type, key, aggregate type, payload,
    /// headers (JSON text). Due immediately.
    ///
    /// On PostgreSQL the insert first takes a transaction-scoped advisory lock on the message's
    /// key, so transactions that enqueue the same key commit one after the other and ids
    /// follow commit order within a key (see ARCHITECTURE.md, "Sequence visibility"). MySQL
    /// does the same for keyed messages through [`Statements::key_locks`].
    pub insert_one: String,
    /// As `insert_one` with a seventh parameter: the delivery delay in microseconds.
    pub insert_one_delayed: String,
    /// Claim in one statement. Parameters: limit, lease in microseconds, token. Returns the
    /// envelope columns. On PostgreSQL it calls the claim function (as `claims.claim`); on
    /// SQLite it is an `UPDATE ... RETURNING`; empty on MySQL, whose claim is `mysql_claim`.
    pub claim: String,
    /// The claims-table protocol (PostgreSQL): claims, acks, failures and releases that write
    /// no lease to the outbox rows.
    pub claims: Option<ClaimsSql>,
    /// The row-lease protocol (MySQL, SQLite): settlement of rows that carry their claim's
    /// lease.
    pub row_lease: Option<RowLeaseSql>,
    /// The MySQL claim's steps.
    pub mysql_claim: Option<MySqlClaimSql>,
    /// The per-key lock slots that keyed inserts take first (MySQL, MariaDB).
    pub key_locks: Option<KeyLockSql>,
    /// Counts by status. Returns `pending, claimed, failed, dead, published,
    /// oldest_age_us` (the last may be NULL).
    pub stats: String,
    /// One row by message id. Parameter: message id. Returns the envelope columns followed by
    /// `state, leased (0/1), last_error, available_us`.
    pub get: String,
    /// `SELECT` of the stored-message columns from the table aliased `o`; [`Statements::list`]
    /// adds its filter.
    list_select: String,
    /// `true` when the row `o` is leased by a live claim.
    leased: String,
    /// Revive every dead row.
    pub retry_dead_all: String,
    /// Revive one dead row. Parameter: message id.
    pub retry_dead_one: String,
    /// Delete published rows older than a retention window. Parameter: window in microseconds.
    pub purge_published: String,
    /// The consumers' inbox, `<table>_inbox` (its `create` is part of `create`).
    pub inbox: InboxSql,
}

impl Statements {
    /// Builds the statements for `table` on `dialect`.
    pub fn new(dialect: Dialect, table: TableName) -> Self {
        match dialect {
            Dialect::Postgres => postgres::statements(table),
            Dialect::MySql => mysql::statements(table),
            Dialect::Sqlite => sqlite::statements(table),
        }
    }

    /// The statements for the default table, `outbox`, on `dialect`, built once per process.
    pub fn default_for(dialect: Dialect) -> Arc<Statements> {
        static DEFAULTS: [OnceLock<Arc<Statements>>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = match dialect {
            Dialect::Postgres => 0,
            Dialect::MySql => 1,
            Dialect::Sqlite => 2,
        };
        Arc::clone(
            DEFAULTS[slot].get_or_init(|| Arc::new(Statements::new(dialect, TableName::default()))),
        )
    }

    /// The LISTEN/NOTIFY channel of this table (PostgreSQL), which inserts signal when built
    /// [`with_notify`](Statements::with_notify): the table's name, such as `outbox`.
    pub fn notify_channel(&self) -> String {
        postgres::notify_channel(&self.table)
    }

    /// Statements that remove the outbox table and everything `migrate` created beside it
    /// (the claims table and claim function on PostgreSQL, the key lock table on MySQL), if
    /// they exist.
    pub fn drop_all(&self) -> Vec<String> {
        let mut all = vec![
            format!("DROP TABLE IF EXISTS {}", self.quoted_table()),
            format!("DROP TABLE IF EXISTS {}", self.inbox.table),
        ];
        if let Some(claims) = &self.claims {
            all.push(format!("DROP TABLE IF EXISTS {}", claims.claims_table));
            all.push(format!("DROP FUNCTION IF EXISTS {}", claims.function));
        }
        if let Some(locks) = &self.key_locks {
            all.push(format!("DROP TABLE IF EXISTS {}", locks.table));
        }
        all
    }

    /// The quoted table name.
    pub fn quoted_table(&self) -> String {
        self.table.quoted(self.quote())
    }

    fn quote(&self) -> char {
        match self.dialect {
            Dialect::MySql => '`',
            _ => '"',
        }
    }

    /// Batch sizes up to this many rows get a key-locked insert of their own on MySQL.
    const EXACT_ROWS: usize = 8;

    /// How many rows the key-locked multi-row insert of `n` messages binds
    /// ([`insert_many_locked`](Statements::insert_many_locked), MySQL): `n` up to 8, then the
    /// next power of two up to [`rows_per_statement`](protocol::rows_per_statement), the rows
    /// past `n` being padding that the statement skips (its message id `NULL`). A statement
    /// text per batch size would fill sqlx's cache of prepared statements, and on MySQL each
    /// eviction holds up the next statement for the server's delayed ACK, about 40 ms. The
    /// locked insert reads its rows from a derived table already, so padding costs it nothing
    /// measurable; the plain `VALUES` insert stays exact (padded, it was 1.25x slower).
    pub fn locked_insert_rows(&self, n: usize) -> usize {
        match n {
            n if n > Self::EXACT_ROWS => n
                .next_power_of_two()
                .min(protocol::rows_per_statement(self.dialect))
                .max(n),
            n => n,
        }
    }

    /// Insert `n` messages in one statement (MySQL, SQLite): seven parameters per row, as for
    /// `insert_one_delayed`; the protocol sends at most
    /// [`rows_per_statement`](protocol::rows_per_statement) rows at a time (payloads are bytes,
    /// which a JSON array would have to carry encoded). PostgreSQL uses
    /// [`Statements::insert_many_arrays`] instead.
    pub fn insert_many(&self, n: usize) -> String {
        let now = self.now();
        let row = match self.dialect {
            Dialect::MySql => {
                format!("(?, ?, ?, ?, ?, ?, {now}, TIMESTAMPADD(MICROSECOND, ?, {now}))")
            }
            _ => format!("(?, ?, ?, ?, ?, ?, {now}, {now} + ?)"),
        };
        let mut sql = format!("{} VALUES ", self.insert_into());
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&row);
        }
        sql
    }

    /// `INSERT INTO` the table with every column a multi-row insert writes (MySQL, SQLite).
    fn insert_into(&self) -> String {
        format!(
            "INSERT INTO {} (message_id, event_type, partition_key, aggregate_type, payload, \
             headers, created_at, available_at)",
            self.quoted_table()
        )
    }

    /// As [`insert_many`](Statements::insert_many) for `rows` rows
    /// ([`locked_insert_rows`](Statements::locked_insert_rows)), after locking the slots of a
    /// JSON array parameter bound last, sorted ([`KeyLockSql::slot`] of every distinct key), so
    /// that all of them are held before any id is drawn (MySQL). The rows keep their order, and
    /// padding rows are skipped. The join order and the primary key are forced: a plan that
    /// scans the lock table instead locks every row it reads (a chaos run caught one batch
    /// holding 2,295 slots).
    pub fn insert_many_locked(&self, rows: usize) -> Option<String> {
        let locks = self.enabled_key_locks()?;
        let now = self.now();
        let mut derived = String::new();
        for i in 0..rows {
            if i == 0 {
                // The payload is cast so that a driver sending bytes as a string in the
                // connection's character set (mysql_async) keeps every byte: a derived
                // table's string column would convert them.
                derived.push_str(
                    "SELECT ? AS m, ? AS e, ? AS k, ? AS a, CAST(? AS BINARY) AS p, ? AS h, \
                     ? AS d, 0 AS ord",
                );
            } else {
                derived.push_str(&format!(
                    " UNION ALL SELECT ?, ?, ?, ?, CAST(? AS BINARY), ?, ?, {i}"
                ));
            }
        }
        Some(format!(
            "{insert}
SELECT v.m, v.e, v.k, v.a, v.p, v.h, {now}, TIMESTAMPADD(MICROSECOND, v.d, {now})
FROM ({derived}) AS v
WHERE (SELECT COUNT(*) FROM JSON_TABLE(?, '$[*]' COLUMNS (s INT PATH '$')) AS j
       STRAIGHT_JOIN {locks} l FORCE INDEX (PRIMARY) ON l.slot = j.s FOR UPDATE) >= 0
  AND v.m IS NOT NULL
ORDER BY v.ord",
            insert = self.insert_into(),
            locks = locks.table
        ))
    }

    /// The key locks keyed inserts take, if this database has them and they are on.
    pub fn enabled_key_locks(&self) -> Option<&KeyLockSql> {
        self.key_locks.as_ref().filter(|locks| locks.enabled)
    }

    /// The same statements with keyed inserts locking their keys first (`true`, the default)
    /// or not (MySQL and MariaDB; other databases are unchanged). Without the locks, two
    /// transactions that enqueue the same key and commit in the opposite order of their
    /// inserts are published in insert order, not commit order.
    #[must_use]
    pub fn with_key_locks(mut self, on: bool) -> Self {
        if let Some(locks) = &mut self.key_locks {
            locks.enabled = on;
        }
        self
    }

    /// Insert many messages from seven arrays (PostgreSQL): ids, event types, keys, aggregate
    /// types, payloads, headers, delays in microseconds. One statement for any batch size.
    pub fn insert_many_arrays(&self) -> String {
        postgres::insert_many_arrays(&self.table, self.notify)
    }

    /// The same statements with a `NOTIFY` on the table's channel (its name, such as
    /// `outbox`) folded into every insert (PostgreSQL only; other databases are unchanged).
    #[must_use]
    pub fn with_notify(self) -> Self {
        match self.dialect {
            Dialect::Postgres => postgres::with_notify(self),
            _ => self,
        }
    }

    /// The expression for "now" in the timestamp columns' type.
    pub fn now(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "now()",
            Dialect::MySql => "UTC_TIMESTAMP(6)",
            Dialect::Sqlite => sqlite::NOW,
        }
    }
}

/// Settlement statements of the row-lease protocol (MySQL, SQLite): a claimed row carries its
/// claim's `lease_token`, and every statement changes only rows whose token still matches.
///
/// Each statement has a fixed number of parameters whatever the number of rows: the rows come
/// as one JSON array (`JSON_TABLE` on MySQL, `json_each` on SQLite).
#[derive(Debug, Clone)]
pub struct RowLeaseSql {
    /// Acknowledge rows by deleting them. Parameters: the ids as a JSON array, then the token.
    pub ack_delete: String,
    /// Acknowledge rows by keeping them as published (retention). Parameters as for
    /// `ack_delete`.
    pub ack_keep: String,
    /// Release rows unchanged. Parameters as for `ack_delete`.
    pub release: String,
    /// Fail rows. Parameters: a JSON array of `[id, retry delay in microseconds, dead (0/1),
    /// error]` arrays, then the token.
    pub fail: String,
    /// Extend the lease of rows still leased with the token and not expired. Parameters: the
    /// ids as a JSON array, the lease in microseconds, then the token.
    pub renew: String,
}

/// Per-key locks on MySQL and MariaDB, which have no transaction-scoped advisory lock: a
/// table of [`KeyLockSql::SLOTS`] rows, one per slot, and every keyed insert locks the slots of
/// its keys (`FOR UPDATE`, held to commit) before its ids are drawn. Transactions that enqueue
/// the same key then commit one after the other, and a key's ids follow its commit order, as
/// on PostgreSQL. Two keys share a slot by chance one time in 65,536, which only makes their
/// transactions wait for each other.
#[derive(Debug, Clone)]
pub struct KeyLockSql {
    /// The lock table, quoted.
    pub table: String,
    /// Insert one keyed message, due immediately, after locking its key's slot. Parameters as
    /// for [`Statements::insert_one`], then the slot ([`KeyLockSql::slot`]).
    pub insert_one: String,
    /// Whether inserts take the locks (on by default; see
    /// [`Statements::with_key_locks`]). The table exists either way.
    pub enabled: bool,
}

impl KeyLockSql {
    /// How many lock slots there are.
    pub const SLOTS: u64 = 65_536;

    /// The slot that locks `key`: FNV-1a of its bytes, modulo [`KeyLockSql::SLOTS`].
    pub fn slot(key: &str) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % Self::SLOTS) as i64
    }
}

/// The MySQL claim's steps, which run as several statements in one transaction because MySQL
/// has no `UPDATE ... RETURNING`. Lists of keys and ids are bound as one JSON array each.
#[derive(Debug, Clone)]
pub struct MySqlClaimSql {
    /// Keys leased or waiting for a retry. No parameters; returns `partition_key`.
    pub busy_keys: String,
    /// The candidate window, locked with `SKIP LOCKED`, for up to
    /// [`LISTED_BUSY_KEYS`](MySqlClaimSql::LISTED_BUSY_KEYS) busy keys: one statement per
    /// list length in that constant, each with that many `?`s for the busy keys (padded by
    /// repeating one), then the limit. Returns the envelope columns.
    pub window_listed: Vec<String>,
    /// The candidate window for more busy keys than the longest list. Parameters: the busy
    /// keys (JSON), the limit. Returns the envelope columns.
    pub window_json: String,
    /// The first live row of each key that is not in the window. Parameters: the window's
    /// keys (JSON), its highest id, its ids (JSON). Returns `partition_key, gap`.
    pub gaps: String,
    /// Lease the picked rows. Parameters: their ids (JSON), the lease in microseconds, the
    /// token.
    pub lease: String,
}

impl MySqlClaimSql {
    /// The busy-key list lengths that have a statement of their own in
    /// [`window_listed`](MySqlClaimSql::window_listed). A literal `NOT IN (?, ...)` list lets
    /// the optimizer skip a busy key's rows through the key index, where the JSON form scans
    /// them in id order on every claim (all of the table behind one hot key). MariaDB turns
    /// lists of 1,000 values or more into a subquery, so the longest stays below that.
    pub const LISTED_BUSY_KEYS: [usize; 4] = [0, 8, 64, 512];

    /// The window statement for `busy` busy keys, and how many key parameters it takes
    /// (`None`: one JSON array).
    pub fn window(&self, busy: usize) -> (&str, Option<usize>) {
        Self::LISTED_BUSY_KEYS
            .iter()
            .zip(&self.window_listed)
            .find(|(len, _)| **len >= busy)
            .map_or((self.window_json.as_str(), None), |(len, sql)| {
                (sql.as_str(), Some(*len))
            })
    }
}

/// The claim's "due" condition, with `now` the database's clock expression.
///
/// A row enqueued without a delay has `available_at = created_at`, both stamped with its
/// transaction's clock; it is due whatever the claim's clock says. Comparing it with the
/// claim's clock would be wrong: PostgreSQL's `now()` is the start of the claim's transaction,
/// which can precede the start of a producer transaction that still commits before the claim's
/// snapshot, and such a row would be skipped while a later row of its key, from a transaction
/// that started earlier, was claimed (a per-key order violation). Delayed rows and rows
/// waiting for a retry compare `available_at` with the clock; the per-key rules keep their
/// keys waiting behind them.
pub(crate) fn due(now: &str) -> String {
    format!("(available_at <= {now} OR (attempts = 0 AND available_at <= created_at))")
}
