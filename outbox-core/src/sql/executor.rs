//! The seam every database adapter implements: run one statement with these parameters, hand
//! back the rows, and say what kind of error a failure was.
//!
//! The whole store protocol (which statements, in which order, in which transaction, how the
//! rows are decoded) lives in [`protocol`](super::protocol) and [`SqlStore`](super::SqlStore);
//! an adapter only binds [`Param`]s, reads [`Cell`]s by column name and classifies errors.

use std::fmt;
use std::future::Future;

use super::Dialect;
use crate::error::BoxError;

/// A statement parameter: a small closed set of types every driver can bind.
///
/// Arrays are sent to PostgreSQL only; MySQL and SQLite statements never carry them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Param<'a> {
    /// A 64-bit integer (`bigint`, `BIGINT`, `INTEGER`).
    I64(i64),
    /// A boolean (PostgreSQL `boolean`; MySQL and SQLite statements use integers instead).
    Bool(bool),
    /// Text, or SQL `NULL`.
    Text(Option<&'a str>),
    /// A byte string (`bytea`, `LONGBLOB`, `BLOB`).
    Bytes(&'a [u8]),
    /// A PostgreSQL `bigint[]`.
    I64Array(&'a [i64]),
    /// A PostgreSQL `boolean[]`.
    BoolArray(Vec<bool>),
    /// A PostgreSQL `text[]` whose elements may be `NULL`.
    TextArray(Vec<Option<&'a str>>),
    /// A PostgreSQL `bytea[]`.
    BytesArray(Vec<&'a [u8]>),
}

/// The type of a result column. Every column a statement selects has one of these types on
/// every database (the SQL casts where a database would return another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellType {
    /// A 64-bit signed integer.
    Int,
    /// UTF-8 text.
    Text,
    /// Bytes.
    Bytes,
}

/// A result column: its alias (unique within the statement) and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Column {
    /// The column's name in the result, as the statement aliases it.
    pub name: &'static str,
    /// Its type.
    pub ty: CellType,
    /// Whether it may be `NULL`.
    pub nullable: bool,
}

impl Column {
    /// A column that is never `NULL`.
    pub const fn new(name: &'static str, ty: CellType) -> Self {
        Self {
            name,
            ty,
            nullable: false,
        }
    }

    /// A column that may be `NULL`.
    pub const fn nullable(name: &'static str, ty: CellType) -> Self {
        Self {
            name,
            ty,
            nullable: true,
        }
    }
}

/// One value read from a result row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cell {
    /// SQL `NULL`.
    #[default]
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// The rows a statement returned: a cell per column of its [`Query::columns`], row after row,
/// in one buffer (one allocation per result, not per row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    columns: &'static [Column],
    cells: Vec<Cell>,
}

impl Rows {
    /// An empty result with `columns`.
    pub fn new(columns: &'static [Column]) -> Self {
        Self::with_capacity(columns, 0)
    }

    /// An empty result with room for `rows` rows.
    pub fn with_capacity(columns: &'static [Column], rows: usize) -> Self {
        Self {
            columns,
            cells: Vec::with_capacity(rows * columns.len()),
        }
    }

    /// Appends the next cell: the rows' cells go in row order, and within a row in the order
    /// of the columns.
    pub fn push(&mut self, cell: Cell) {
        self.cells.push(cell);
    }

    /// The columns.
    pub fn columns(&self) -> &'static [Column] {
        self.columns
    }

    /// How many whole rows there are.
    pub fn len(&self) -> usize {
        self.cells
            .len()
            .checked_div(self.columns.len())
            .unwrap_or(0)
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cells, row after row.
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// The rows, to read cells from.
    pub(crate) fn rows(&mut self) -> Result<impl Iterator<Item = Row<'_>>, DbError> {
        let n = self.columns.len();
        if n == 0 || !self.cells.len().is_multiple_of(n) {
            return Err(DbError::decode(format!(
                "the driver returned {} cells for rows of {n} columns",
                self.cells.len()
            )));
        }
        let columns = self.columns;
        Ok(self.cells.chunks_exact_mut(n).map(move |cells| Row {
            columns,
            cells,
            next: 0,
        }))
    }
}

/// One result row, read by column name.
#[derive(Debug, PartialEq, Eq)]
pub struct Row<'a> {
    columns: &'static [Column],
    cells: &'a mut [Cell],
    /// Where the next lookup looks first: the protocol reads columns in their declared order.
    next: usize,
}

impl Row<'_> {
    /// Takes the cell of column `name` out of the row, leaving `NULL` behind.
    pub(crate) fn take(&mut self, name: &str) -> Result<Cell, DbError> {
        // The protocol names columns with the same literals the column lists use, so the
        // expected position usually matches by address.
        let index = match self.columns.get(self.next) {
            Some(c) if std::ptr::eq(c.name, name) || c.name == name => self.next,
            _ => self
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| DbError::decode(format!("no column named {name:?}")))?,
        };
        self.next = index + 1;
        Ok(std::mem::take(&mut self.cells[index]))
    }

    pub(crate) fn int(&mut self, name: &str) -> Result<i64, DbError> {
        match self.take(name)? {
            Cell::Int(v) => Ok(v),
            other => Err(unexpected(name, "an integer", &other)),
        }
    }

    pub(crate) fn opt_int(&mut self, name: &str) -> Result<Option<i64>, DbError> {
        match self.take(name)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(v)),
            other => Err(unexpected(name, "an integer or NULL", &other)),
        }
    }

    pub(crate) fn text(&mut self, name: &str) -> Result<String, DbError> {
        match self.take(name)? {
            Cell::Text(v) => Ok(v),
            other => Err(unexpected(name, "text", &other)),
        }
    }

    pub(crate) fn opt_text(&mut self, name: &str) -> Result<Option<String>, DbError> {
        match self.take(name)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v)),
            other => Err(unexpected(name, "text or NULL", &other)),
        }
    }

    pub(crate) fn bytes(&mut self, name: &str) -> Result<Vec<u8>, DbError> {
        match self.take(name)? {
            Cell::Bytes(v) => Ok(v),
            other => Err(unexpected(name, "bytes", &other)),
        }
    }
}

fn unexpected(name: &str, wanted: &str, got: &Cell) -> DbError {
    let got = match got {
        Cell::Null => "NULL",
        Cell::Int(_) => "an integer",
        Cell::Text(_) => "text",
        Cell::Bytes(_) => "bytes",
    };
    DbError::decode(format!("column {name:?} holds {got}, expected {wanted}"))
}

/// A statement to run: SQL text, its parameters in order, and the columns it returns.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The SQL text, with the dialect's placeholders (`$1` or `?`).
    pub sql: &'a str,
    /// The parameters, in placeholder order.
    pub params: Vec<Param<'a>>,
    /// The columns each result row carries (empty for statements run with
    /// [`Executor::execute`]).
    pub columns: &'static [Column],
}

impl<'a> Query<'a> {
    /// A statement that returns `columns`.
    pub fn new(sql: &'a str, columns: &'static [Column]) -> Self {
        Self {
            sql,
            params: Vec::new(),
            columns,
        }
    }

    /// A statement that returns no rows.
    pub fn statement(sql: &'a str) -> Self {
        Self::new(sql, &[])
    }

    /// Adds a parameter.
    #[must_use]
    pub fn bind(mut self, param: Param<'a>) -> Self {
        self.params.push(param);
        self
    }
}

/// Runs statements on one database connection: what an adapter implements for its driver.
///
/// The futures must be `Send`. A synchronous driver (diesel) returns futures that are already
/// complete: run the statement, then wrap the outcome in [`std::future::ready`]; its callers
/// drive the protocol with [`block_on_ready`].
pub trait Executor: Send {
    /// Runs `query` and returns its rows, each with a cell per column of `query.columns`, read
    /// by the column's name and as the column's [`CellType`].
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send;

    /// Runs `query` and returns how many rows it changed.
    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send;
}

impl<E: Executor + ?Sized> Executor for &mut E {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        (**self).fetch(query)
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        (**self).execute(query)
    }
}

/// Completes a future whose every await is already complete, as all protocol futures are when
/// they run on a synchronous [`Executor`].
///
/// # Panics
///
/// If the future is not complete at its first poll (an asynchronous executor was used).
pub fn block_on_ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => {
            panic!("block_on_ready: the executor is asynchronous; await the future instead")
        }
    }
}

/// The transaction an operation runs in, on the connection the adapter gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxMode {
    /// No transaction: each statement commits on its own.
    None,
    /// One transaction at the database's default isolation level: commit when the operation
    /// returns `Ok`, roll back when it returns an error or is dropped.
    Transaction,
    /// As [`TxMode::Transaction`], at READ COMMITTED. Before beginning, run
    /// [`TxMode::before_begin`] on the connection (it sets the isolation of the next
    /// transaction only, so the connection's later users are unaffected). Only MySQL
    /// operations ask for it.
    ReadCommitted,
    /// One statement at READ COMMITTED: run [`TxMode::before_begin`], then the operation
    /// without a transaction (its one statement is the transaction the isolation applies to).
    ReadCommittedStatement,
}

impl TxMode {
    /// Whether the adapter wraps the operation in a transaction.
    pub fn is_transaction(self) -> bool {
        matches!(self, TxMode::Transaction | TxMode::ReadCommitted)
    }

    /// The statement to run on the connection before beginning the transaction (or, for
    /// [`TxMode::ReadCommittedStatement`], before the operation), if any.
    pub fn before_begin(self, dialect: Dialect) -> Option<&'static str> {
        match (self, dialect) {
            (TxMode::ReadCommitted | TxMode::ReadCommittedStatement, Dialect::MySql) => {
                Some("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            }
            _ => None,
        }
    }
}

/// What kind of failure a database error was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DbErrorKind {
    /// A table or function the statement needs does not exist (the migration has not run).
    MissingTable,
    /// A conflict that succeeds when retried: deadlock, serialization failure, lock timeout.
    RetryableConflict,
    /// The connection was lost or could not be had (network, server restart, pool timeout).
    ConnectionLost,
    /// A row could not be read as the protocol expects.
    Decode,
    /// Anything else.
    Other,
}

impl fmt::Display for DbErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbErrorKind::MissingTable => "missing table",
            DbErrorKind::RetryableConflict => "retryable conflict",
            DbErrorKind::ConnectionLost => "connection lost",
            DbErrorKind::Decode => "undecodable row",
            DbErrorKind::Other => "database error",
        })
    }
}

/// A database error as an adapter reports it: its kind, the database's code when the driver
/// gives one, and the driver's error.
#[derive(Debug)]
pub struct DbError {
    kind: DbErrorKind,
    code: Option<String>,
    message: String,
    source: Option<BoxError>,
}

impl DbError {
    /// An error the database itself reported, classified from its SQLSTATE or vendor `code`
    /// when the driver gives one, and from `message` when it does not (diesel gives no code).
    pub fn from_database(
        code: Option<&str>,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        let message = message.into();
        Self {
            kind: classify(code, &message),
            code: code.map(str::to_owned),
            message,
            source: Some(source.into()),
        }
    }

    /// The connection was lost or could not be had.
    pub fn connection(source: impl Into<BoxError>) -> Self {
        Self::with_kind(DbErrorKind::ConnectionLost, source)
    }

    /// Any other driver error.
    pub fn other(source: impl Into<BoxError>) -> Self {
        Self::with_kind(DbErrorKind::Other, source)
    }

    /// An error of a known kind.
    pub fn with_kind(kind: DbErrorKind, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Self {
            kind,
            code: None,
            message: source.to_string(),
            source: Some(source),
        }
    }

    /// A row that could not be read as the protocol expects.
    pub fn decode(message: impl Into<String>) -> Self {
        Self {
            kind: DbErrorKind::Decode,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    /// What kind of failure this was.
    pub fn kind(&self) -> DbErrorKind {
        self.kind
    }

    /// The database's error code (SQLSTATE, or MySQL's error number), if the driver gave one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The database's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Error::Database` already says "database error"; name the kind only when it adds.
        if self.kind != DbErrorKind::Other {
            write!(f, "{}: ", self.kind)?;
        }
        f.write_str(&self.message)?;
        match &self.code {
            Some(code) => write!(f, " (code {code})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The message already carries the driver error's text, and drivers often wrap the
        // database's error in one that says the same: the first cause that adds something.
        let mut cause = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(err) = cause {
            if !self.message.contains(&err.to_string()) {
                return Some(err);
            }
            cause = err.source();
        }
        None
    }
}

impl From<DbError> for crate::Error {
    /// [`Error::Database`](crate::Error::Database) around the classified error. (The protocol
    /// maps a missing outbox table to `Error::MissingTable`, knowing which table it meant.)
    fn from(err: DbError) -> Self {
        crate::Error::Database(Box::new(err))
    }
}

/// Classifies a database error from its code, or from its message when there is none.
fn classify(code: Option<&str>, message: &str) -> DbErrorKind {
    if let Some(code) = code {
        let kind = match code {
            // PostgreSQL undefined_table and undefined_function (the table's claim function);
            // MySQL/MariaDB ER_NO_SUCH_TABLE (SQLSTATE and error number).
            "42P01" | "42883" | "42S02" | "1146" => DbErrorKind::MissingTable,
            // serialization_failure, deadlock_detected, lock_not_available; MySQL deadlock and
            // lock wait timeout; SQLite SQLITE_BUSY and SQLITE_LOCKED.
            "40001" | "40P01" | "55P03" | "1213" | "1205" | "5" | "6" | "517" | "261" => {
                DbErrorKind::RetryableConflict
            }
            // PostgreSQL connection exceptions, admin/crash shutdown, cannot connect now.
            c if c.starts_with("08") => DbErrorKind::ConnectionLost,
            "57P01" | "57P02" | "57P03" => DbErrorKind::ConnectionLost,
            _ => DbErrorKind::Other,
        };
        if kind != DbErrorKind::Other {
            return kind;
        }
    }
    let lower = message.to_ascii_lowercase();
    if lower.contains("no such table")
        || (lower.contains("relation") && lower.contains("does not exist"))
        || (lower.contains("function") && lower.contains("does not exist"))
        || (lower.contains("table") && lower.contains("doesn't exist"))
    {
        DbErrorKind::MissingTable
    } else if lower.contains("deadlock")
        || lower.contains("could not serialize")
        || lower.contains("lock wait timeout")
        || lower.contains("database is locked")
        || lower.contains("database table is locked")
    {
        DbErrorKind::RetryableConflict
    } else if lower.contains("server closed the connection")
        || lower.contains("connection reset")
        || lower.contains("broken pipe")
        || lower.contains("terminating connection")
        || lower.contains("lost connection")
        || lower.contains("gone away")
    {
        DbErrorKind::ConnectionLost
    } else {
        DbErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code_then_message() {
        let kind = |code, msg| DbError::from_database(code, msg, "x").kind();
        assert_eq!(
            kind(Some("42P01"), "relation \"o\" does not exist"),
            DbErrorKind::MissingTable
        );
        assert_eq!(
            kind(Some("1146"), "Table 'test.o' doesn't exist"),
            DbErrorKind::MissingTable
        );
        assert_eq!(
            kind(Some("40P01"), "deadlock detected"),
            DbErrorKind::RetryableConflict
        );
        assert_eq!(
            kind(Some("08006"), "connection failure"),
            DbErrorKind::ConnectionLost
        );
        assert_eq!(kind(Some("23505"), "duplicate key"), DbErrorKind::Other);
        // Without a code (diesel), the message decides.
        assert_eq!(
            kind(None, "no such table: outbox"),
            DbErrorKind::MissingTable
        );
        assert_eq!(
            kind(None, "relation \"outbox\" does not exist"),
            DbErrorKind::MissingTable
        );
        assert_eq!(
            kind(None, "Deadlock found when trying to get lock"),
            DbErrorKind::RetryableConflict
        );
        assert_eq!(
            kind(None, "database is locked"),
            DbErrorKind::RetryableConflict
        );
        assert_eq!(
            kind(None, "server closed the connection unexpectedly"),
            DbErrorKind::ConnectionLost
        );
        assert_eq!(kind(None, "syntax error"), DbErrorKind::Other);
        let dup = DbError::from_database(Some("23505"), "duplicate key value", "x");
        assert_eq!(
            crate::Error::Database(Box::new(dup)).to_string(),
            "database error: duplicate key value (code 23505)"
        );
    }

    /// A driver error that says what the database said, around the database's own error.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn chain(err: &dyn std::error::Error) -> Vec<String> {
        let mut links = vec![err.to_string()];
        let mut cause = err.source();
        while let Some(err) = cause {
            links.push(err.to_string());
            cause = err.source();
        }
        links
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let driver = Wrapped(
            "relation \"orders\" is locked",
            Some(Box::new(Wrapped(
                "relation \"orders\" is locked",
                Some(Box::new(Wrapped("connection reset by peer", None))),
            ))),
        );
        let err = crate::Error::from(DbError::from_database(
            Some("55P03"),
            "relation \"orders\" is locked",
            driver,
        ));
        let links = chain(&err);
        let repeats = links
            .iter()
            .filter(|l| l.contains("relation \"orders\" is locked"))
            .count();
        assert_eq!(repeats, 1, "{links:#?}");
        let crate::Error::Database(db) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            chain(&**db),
            [
                "retryable conflict: relation \"orders\" is locked (code 55P03)",
                "connection reset by peer"
            ],
            "the classified error skips the driver's copies of its message"
        );
        let db = DbError::from_database(Some("55P03"), "relation is locked", Wrapped("x", None));
        assert_eq!(chain(&db).len(), 2, "a cause that adds something is kept");
    }

    #[test]
    fn rows_are_read_by_name_and_type() {
        static COLS: &[Column] = &[
            Column::new("seq", CellType::Int),
            Column::nullable("key", CellType::Text),
        ];
        let mut rows = Rows::with_capacity(COLS, 2);
        for cell in [Cell::Int(7), Cell::Null, Cell::Text("x".into()), Cell::Null] {
            rows.push(cell);
        }
        assert_eq!(rows.len(), 2);
        let mut iter = rows.rows().unwrap();
        let mut row = iter.next().unwrap();
        assert_eq!(row.opt_text("key").unwrap(), None);
        assert_eq!(row.int("seq").unwrap(), 7);
        assert!(row.int("missing").is_err());
        let mut row = iter.next().unwrap();
        let err = row.int("seq").unwrap_err();
        assert_eq!(err.kind(), DbErrorKind::Decode);
        assert_eq!(
            err.to_string(),
            "undecodable row: column \"seq\" holds text, expected an integer"
        );
        drop(iter);
        rows.push(Cell::Int(1));
        assert!(rows.rows().is_err(), "half a row is refused");
    }

    #[test]
    fn block_on_ready_completes_ready_futures() {
        assert_eq!(block_on_ready(async { std::future::ready(3).await + 1 }), 4);
    }
}
