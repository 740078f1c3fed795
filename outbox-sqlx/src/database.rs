//! The per-database glue: how each sqlx driver binds the core's parameters and reads its
//! cells. Everything else is the core's protocol.

use std::future::Future;

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use outbox_core::sql::{Cell, CellType, Param};
use outbox_core::sql::{DbError, Dialect, Query, Rows};

mod sealed {
    pub trait Sealed {}
}

/// A sqlx database the outbox supports: `Postgres`, `MySql` or `Sqlite`.
///
/// Sealed: the outbox's SQL is written per database.
pub trait OutboxDatabase: sqlx::Database + sealed::Sealed {
    /// The SQL dialect.
    const DIALECT: Dialect;

    #[doc(hidden)]
    fn fetch(
        conn: &mut Self::Connection,
        query: &Query<'_>,
    ) -> impl Future<Output = Result<Rows, DbError>> + Send;

    #[doc(hidden)]
    fn execute(
        conn: &mut Self::Connection,
        query: &Query<'_>,
    ) -> impl Future<Output = Result<u64, DbError>> + Send;
}

/// A connection type the outbox can enqueue on: `PgConnection`, `MySqlConnection` or
/// `SqliteConnection`. Inside a transaction, pass `&mut *tx`.
pub trait OutboxConnection: Send {
    /// The connection's database.
    type Database: OutboxDatabase<Connection = Self>;
}

/// Implements the glue for one sqlx database. `$array` binds the array parameters, which only
/// PostgreSQL statements carry.
macro_rules! database {
    ($feature:literal, $db:ty, $conn:ty, $dialect:expr, $array:path) => {
        #[cfg(feature = $feature)]
        const _: () = {
            use sqlx::{Arguments, Row as _};

            impl sealed::Sealed for $db {}

            impl OutboxConnection for $conn {
                type Database = $db;
            }

            fn arguments(query: &Query<'_>) -> Result<<$db as sqlx::Database>::Arguments, DbError> {
                let mut args = <$db as sqlx::Database>::Arguments::default();
                for param in &query.params {
                    match param {
                        Param::I64(v) => args.add(*v),
                        Param::Bool(v) => args.add(*v),
                        Param::Text(v) => args.add(*v),
                        Param::Bytes(v) => args.add(*v),
                        other => $array(&mut args, other),
                    }
                    .map_err(DbError::other)?;
                }
                Ok(args)
            }

            /// One cell, with sqlx's type check until the column's type has been checked once.
            fn get<T>(
                row: &<$db as sqlx::Database>::Row,
                i: usize,
                checked: &mut bool,
            ) -> Result<Option<T>, sqlx::Error>
            where
                T: for<'r> sqlx::Decode<'r, $db> + sqlx::Type<$db>,
            {
                if *checked {
                    return row.try_get_unchecked(i);
                }
                let value: Option<T> = row.try_get(i)?;
                *checked = value.is_some();
                Ok(value)
            }

            /// Reads each of `query`'s columns, by name and as its type, from `rows`.
            fn decode(
                rows: &[<$db as sqlx::Database>::Row],
                query: &Query<'_>,
            ) -> Result<Rows, sqlx::Error> {
                let mut out = Rows::with_capacity(query.columns, rows.len());
                let Some(first) = rows.first() else {
                    return Ok(out);
                };
                // Every row of a result has the same columns: find them by name once.
                let ordinals = query
                    .columns
                    .iter()
                    .map(|c| {
                        use sqlx::Column as _;
                        first
                            .columns()
                            .iter()
                            .find(|col| col.name() == c.name)
                            .map(|col| col.ordinal())
                            .ok_or_else(|| sqlx::Error::ColumnNotFound(c.name.to_owned()))
                    })
                    .collect::<Result<Vec<usize>, _>>()?;
                // Every row of a result has the same column types too: a column's cells are
                // decoded with the type check until one is not NULL (sqlx checks no type on
                // NULL), and without it after that.
                let mut checked = vec![false; ordinals.len()];
                for row in rows {
                    for ((column, &i), checked) in
                        query.columns.iter().zip(&ordinals).zip(&mut checked)
                    {
                        let cell = match column.ty {
                            CellType::Int => get(row, i, checked)?.map(Cell::Int),
                            CellType::Text => get(row, i, checked)?.map(Cell::Text),
                            CellType::Bytes => get(row, i, checked)?.map(Cell::Bytes),
                        };
                        out.push(cell.unwrap_or(Cell::Null));
                    }
                }
                Ok(out)
            }

            impl OutboxDatabase for $db {
                const DIALECT: Dialect = $dialect;

                async fn fetch(conn: &mut $conn, query: &Query<'_>) -> Result<Rows, DbError> {
                    let args = arguments(query)?;
                    let rows = sqlx::query_with(sqlx::AssertSqlSafe(query.sql), args)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(crate::error::db_error)?;
                    decode(&rows, query).map_err(crate::error::db_error)
                }

                async fn execute(conn: &mut $conn, query: &Query<'_>) -> Result<u64, DbError> {
                    let args = arguments(query)?;
                    let done = sqlx::query_with(sqlx::AssertSqlSafe(query.sql), args)
                        .execute(&mut *conn)
                        .await
                        .map_err(crate::error::db_error)?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}

database!(
    "postgres",
    sqlx::Postgres,
    sqlx::PgConnection,
    Dialect::Postgres,
    bind_pg_array
);
database!(
    "mysql",
    sqlx::MySql,
    sqlx::MySqlConnection,
    Dialect::MySql,
    no_arrays
);
database!(
    "sqlite",
    sqlx::Sqlite,
    sqlx::SqliteConnection,
    Dialect::Sqlite,
    no_arrays
);

#[cfg(feature = "postgres")]
fn bind_pg_array(
    args: &mut sqlx::postgres::PgArguments,
    param: &Param<'_>,
) -> Result<(), sqlx::error::BoxDynError> {
    use sqlx::Arguments;
    match param {
        Param::I64Array(v) => args.add(*v),
        Param::BoolArray(v) => args.add(v),
        Param::TextArray(v) => args.add(v),
        Param::BytesArray(v) => args.add(v),
        other => Err(format!("outbox-sqlx cannot bind {other:?}").into()),
    }
}

#[cfg(any(feature = "mysql", feature = "sqlite"))]
fn no_arrays<A>(_: &mut A, param: &Param<'_>) -> Result<(), sqlx::error::BoxDynError> {
    Err(format!("arrays are bound on PostgreSQL only, not {param:?}").into())
}
