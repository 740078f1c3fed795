//! The per-database glue: how diesel binds the core's parameters and reads its cells, for each
//! backend. Everything else is the core's protocol.

use std::cell::RefCell;
use std::future::Future;

use diesel::connection::LoadConnection;
use diesel::deserialize::{self, FromSql};
use diesel::row::{Field, Row};
use outbox_core::sql::{Cell, CellType, DbError, Dialect, Executor, Query, Rows};

use crate::error::db_error;

mod sealed {
    pub trait Sealed {}
}

/// A diesel backend the outbox supports: `Pg`, `Mysql` or `Sqlite`.
///
/// Sealed: the outbox's SQL is written per database.
pub trait OutboxBackend: diesel::backend::Backend + sealed::Sealed {
    /// The SQL dialect.
    const DIALECT: Dialect;

    #[doc(hidden)]
    fn fetch<C>(conn: &mut C, query: &Query<'_>) -> Result<Rows, DbError>
    where
        C: LoadConnection<Backend = Self>;

    #[doc(hidden)]
    fn execute<C>(conn: &mut C, query: &Query<'_>) -> Result<u64, DbError>
    where
        C: diesel::Connection<Backend = Self>;

    #[doc(hidden)]
    #[cfg(feature = "async")]
    fn fetch_async<C>(
        conn: &mut C,
        query: &Query<'_>,
    ) -> impl Future<Output = Result<Rows, DbError>> + Send
    where
        C: diesel_async::AsyncConnectionCore<Backend = Self>;

    #[doc(hidden)]
    #[cfg(feature = "async")]
    fn execute_async<C>(
        conn: &mut C,
        query: &Query<'_>,
    ) -> impl Future<Output = Result<u64, DbError>> + Send
    where
        C: diesel_async::AsyncConnectionCore<Backend = Self>;
}

/// A diesel connection the outbox can enqueue on and read through: `PgConnection`,
/// `MysqlConnection`, `SqliteConnection`, a pooled connection of any of them, or any other
/// connection type on those backends. Inside `conn.transaction(|conn| ...)`, pass the closure's
/// `conn`.
pub trait OutboxConnection: LoadConnection<Backend: OutboxBackend> + Send {}

impl<C> OutboxConnection for C
where
    C: LoadConnection + Send,
    C::Backend: OutboxBackend,
{
}

/// The core's [`Executor`] over one synchronous diesel connection: every statement has run by
/// the time its future is created, so the protocol completes at its first poll.
pub(crate) struct DieselExecutor<'c, C>(pub(crate) &'c mut C);

impl<C: OutboxConnection> Executor for DieselExecutor<'_, C> {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        std::future::ready(C::Backend::fetch(self.0, query))
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        std::future::ready(C::Backend::execute(self.0, query))
    }
}

/// The result being read on this thread: diesel builds each row through
/// [`QueryableByName::build`](diesel::deserialize::QueryableByName), which has no argument to
/// say which columns the statement returns, so they (and the cells read so far) wait here.
struct Reading {
    rows: Rows,
    /// Each column's position in the result, found by name on the first row.
    ordinals: Vec<usize>,
}

impl Reading {
    /// Nothing read yet of `query`'s result.
    fn of(query: &Query<'_>) -> Self {
        Self {
            rows: Rows::new(query.columns),
            ordinals: Vec::new(),
        }
    }
}

thread_local! {
    static READING: RefCell<Option<Reading>> = const { RefCell::new(None) };
}

/// Runs `load` with `query`'s columns as the result being read, and returns the cells its rows
/// pushed. `load` builds [`ReadRow`]s, which hold nothing.
fn reading<T>(
    query: &Query<'_>,
    load: impl FnOnce() -> diesel::QueryResult<T>,
) -> Result<Rows, DbError> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            READING.with_borrow_mut(Option::take);
        }
    }
    READING.with_borrow_mut(|r| {
        *r = Some(Reading::of(query));
    });
    let reset = Reset;
    load().map_err(db_error)?;
    let rows = READING.with_borrow_mut(Option::take).map(|r| r.rows);
    drop(reset);
    rows.ok_or_else(|| DbError::decode("the result was read twice"))
}

/// Polls `load` with `query`'s columns as the result being read on the polling thread (rows
/// are built while the load is polled, on whichever thread polls it), and returns the cells
/// its rows pushed.
#[cfg(feature = "async")]
fn reading_async<'f, T>(
    query: &Query<'_>,
    load: impl Future<Output = diesel::QueryResult<T>> + Send + 'f,
) -> impl Future<Output = Result<Rows, DbError>> + Send + 'f {
    struct Load<F> {
        load: std::pin::Pin<Box<F>>,
        reading: Option<Reading>,
    }
    impl<T, F: Future<Output = diesel::QueryResult<T>>> Future for Load<F> {
        type Output = Result<Rows, DbError>;

        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            let this = &mut *self;
            let outer = READING.with_borrow_mut(|r| std::mem::replace(r, this.reading.take()));
            let poll = this.load.as_mut().poll(cx);
            this.reading = READING.with_borrow_mut(|r| std::mem::replace(r, outer));
            poll.map(|done| {
                done.map_err(db_error)?;
                this.reading
                    .take()
                    .map(|r| r.rows)
                    .ok_or_else(|| DbError::decode("the result was read twice"))
            })
        }
    }
    Load {
        load: Box::pin(load),
        reading: Some(Reading::of(query)),
    }
}

/// A row whose cells went into the result being read on this thread.
pub(crate) struct ReadRow;

/// Reads `row`'s cells into the result being read, each column by name as its type.
fn read_row<'a, DB, R>(row: &R) -> deserialize::Result<ReadRow>
where
    DB: diesel::backend::Backend,
    R: Row<'a, DB>,
    Option<i64>: FromSql<diesel::sql_types::Nullable<diesel::sql_types::BigInt>, DB>,
    Option<String>: FromSql<diesel::sql_types::Nullable<diesel::sql_types::Text>, DB>,
    Option<Vec<u8>>: FromSql<diesel::sql_types::Nullable<diesel::sql_types::Binary>, DB>,
{
    use diesel::sql_types::{BigInt, Binary, Nullable, Text};
    READING.with_borrow_mut(|reading| {
        let reading = reading
            .as_mut()
            .ok_or("a row was read outside of an outbox statement")?;
        let columns = reading.rows.columns();
        if reading.ordinals.len() != columns.len() {
            // Every row of a result has the same columns: find them by name once.
            reading.ordinals = columns
                .iter()
                .map(|c| {
                    (0..row.field_count())
                        .find(|&i| row.get(i).is_some_and(|f| f.field_name() == Some(c.name)))
                        .ok_or_else(|| format!("the result has no column named {:?}", c.name))
                })
                .collect::<Result<_, _>>()?;
        }
        for (column, &i) in columns.iter().zip(&reading.ordinals) {
            let cell = match column.ty {
                CellType::Int => row
                    .get_value::<Nullable<BigInt>, Option<i64>, _>(i)?
                    .map(Cell::Int),
                CellType::Text => row
                    .get_value::<Nullable<Text>, Option<String>, _>(i)?
                    .map(Cell::Text),
                CellType::Bytes => row
                    .get_value::<Nullable<Binary>, Option<Vec<u8>>, _>(i)?
                    .map(Cell::Bytes),
            };
            reading.rows.push(cell.unwrap_or(Cell::Null));
        }
        Ok(ReadRow)
    })
}

/// Implements the glue for one diesel backend. `$array` binds the array parameters, which only
/// PostgreSQL statements carry.
macro_rules! backend {
    ($feature:literal, $db:ty, $dialect:expr, $array:ident) => {
        #[cfg(feature = $feature)]
        const _: () = {
            use diesel::RunQueryDsl;
            use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
            use diesel::sql_types::{BigInt, Binary, Bool, Nullable, Text};
            use outbox_core::sql::Param;

            impl sealed::Sealed for $db {}

            impl diesel::deserialize::QueryableByName<$db> for ReadRow {
                fn build<'a>(
                    row: &impl diesel::row::NamedRow<'a, $db>,
                ) -> deserialize::Result<Self> {
                    read_row(row)
                }
            }

            fn bound<'q>(
                query: &'q Query<'_>,
            ) -> Result<BoxedSqlQuery<'q, $db, SqlQuery>, DbError> {
                let mut sql = diesel::sql_query(query.sql).into_boxed::<$db>();
                for param in &query.params {
                    sql = match param {
                        Param::I64(v) => sql.bind::<BigInt, _>(*v),
                        Param::Bool(v) => sql.bind::<Bool, _>(*v),
                        Param::Text(v) => sql.bind::<Nullable<Text>, _>(*v),
                        Param::Bytes(v) => sql.bind::<Binary, _>(*v),
                        other => $array(sql, other)?,
                    };
                }
                Ok(sql)
            }

            impl OutboxBackend for $db {
                const DIALECT: Dialect = $dialect;

                fn fetch<C>(conn: &mut C, query: &Query<'_>) -> Result<Rows, DbError>
                where
                    C: LoadConnection<Backend = Self>,
                {
                    let sql = bound(query)?;
                    reading(query, || sql.load::<ReadRow>(conn))
                }

                fn execute<C>(conn: &mut C, query: &Query<'_>) -> Result<u64, DbError>
                where
                    C: diesel::Connection<Backend = Self>,
                {
                    let changed = bound(query)?.execute(conn).map_err(db_error)?;
                    Ok(changed as u64)
                }

                #[cfg(feature = "async")]
                async fn fetch_async<C>(conn: &mut C, query: &Query<'_>) -> Result<Rows, DbError>
                where
                    C: diesel_async::AsyncConnectionCore<Backend = Self>,
                {
                    let sql = bound(query)?;
                    reading_async(query, diesel_async::RunQueryDsl::load::<ReadRow>(sql, conn))
                        .await
                }

                #[cfg(feature = "async")]
                async fn execute_async<C>(conn: &mut C, query: &Query<'_>) -> Result<u64, DbError>
                where
                    C: diesel_async::AsyncConnectionCore<Backend = Self>,
                {
                    let sql = bound(query)?;
                    let changed = diesel_async::RunQueryDsl::execute(sql, conn)
                        .await
                        .map_err(db_error)?;
                    Ok(changed as u64)
                }
            }
        };
    };
}

backend!("postgres", diesel::pg::Pg, Dialect::Postgres, bind_pg_array);
backend!("mysql", diesel::mysql::Mysql, Dialect::MySql, no_arrays);
backend!("sqlite", diesel::sqlite::Sqlite, Dialect::Sqlite, no_arrays);

/// A diesel query with its parameters bound so far.
#[allow(dead_code)]
type Bound<'q, DB> = diesel::query_builder::BoxedSqlQuery<'q, DB, diesel::query_builder::SqlQuery>;

#[cfg(feature = "postgres")]
fn bind_pg_array<'q>(
    sql: Bound<'q, diesel::pg::Pg>,
    param: &'q outbox_core::sql::Param<'_>,
) -> Result<Bound<'q, diesel::pg::Pg>, DbError> {
    use diesel::sql_types::{Array, BigInt, Binary, Bool, Nullable, Text};
    use outbox_core::sql::Param;
    Ok(match param {
        Param::I64Array(v) => sql.bind::<Array<BigInt>, _>(*v),
        Param::BoolArray(v) => sql.bind::<Array<Bool>, _>(v.as_slice()),
        Param::TextArray(v) => sql.bind::<Array<Nullable<Text>>, _>(v.as_slice()),
        Param::BytesArray(v) => sql.bind::<Array<Binary>, _>(v.as_slice()),
        other => {
            return Err(DbError::other(format!(
                "outbox-diesel cannot bind {other:?}"
            )));
        }
    })
}

#[cfg(any(feature = "mysql", feature = "sqlite"))]
fn no_arrays<'q, DB: diesel::backend::Backend>(
    _: Bound<'q, DB>,
    param: &outbox_core::sql::Param<'_>,
) -> Result<Bound<'q, DB>, DbError> {
    Err(DbError::other(format!(
        "arrays are bound on PostgreSQL only, not {param:?}"
    )))
}
