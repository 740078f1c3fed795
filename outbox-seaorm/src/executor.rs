//! The core's [`Executor`] over any sea-orm connection: parameters become sea-orm `Value`s,
//! result cells are read by column name. Everything else is the core's protocol.

use std::future::Future;

use outbox_core::sql::{Cell, CellType, Column, DbError, DbErrorKind, Dialect, Executor, Param};
use outbox_core::sql::{Query, Rows};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};

use crate::error::db_error;

/// The outbox's SQL dialect for a sea-orm backend.
///
/// # Errors
///
/// [`Error::Config`](outbox_core::Error::Config) for a backend the outbox has no SQL for.
pub(crate) fn dialect(backend: DbBackend) -> outbox_core::Result<Dialect> {
    match backend {
        DbBackend::Postgres => Ok(Dialect::Postgres),
        DbBackend::MySql => Ok(Dialect::MySql),
        DbBackend::Sqlite => Ok(Dialect::Sqlite),
        other => Err(outbox_core::Error::Config(format!(
            "outbox-seaorm has SQL for PostgreSQL, MySQL/MariaDB and SQLite, not {other:?}"
        ))),
    }
}

/// The core's [`Executor`] over a sea-orm connection: a `DatabaseConnection` (each statement
/// on a pooled connection of its own), a `DatabaseTransaction`, or any other
/// [`ConnectionTrait`].
pub(crate) struct SeaExecutor<'c, C>(pub(crate) &'c C);

impl<C: ConnectionTrait> Executor for SeaExecutor<'_, C> {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        let conn = self.0;
        let statement = statement(conn.get_database_backend(), query);
        let columns = query.columns;
        async move {
            let rows = conn.query_all_raw(statement?).await.map_err(db_error)?;
            decode(&rows, columns)
        }
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        let conn = self.0;
        let statement = statement(conn.get_database_backend(), query);
        async move {
            let done = conn.execute_raw(statement?).await.map_err(db_error)?;
            Ok(done.rows_affected())
        }
    }
}

/// `query` as a sea-orm statement with its parameters as values.
fn statement(backend: DbBackend, query: &Query<'_>) -> Result<Statement, DbError> {
    let values = query
        .params
        .iter()
        .map(value)
        .collect::<Result<Vec<Value>, DbError>>()?;
    Ok(match text_array_sql(query) {
        Some(sql) => Statement::from_sql_and_values(backend, sql, values),
        None => Statement::from_sql_and_values(backend, query.sql, values),
    })
}

/// The SQL of a statement with text-array parameters, each cast from the text it is sent as
/// (`$3::text[]` becomes `$3::text::text[]`). Besides saying what is sent, this keeps the
/// statement's text apart from the one outbox-sqlx prepares, which declares those parameters
/// `text[]`: on a pool both share, the cached statement would otherwise be run with a text
/// where it expects an array ("insufficient data left in message").
fn text_array_sql(query: &Query<'_>) -> Option<String> {
    let mut sql: Option<String> = None;
    for (i, param) in query.params.iter().enumerate() {
        if let Param::TextArray(_) = param {
            let from = format!("${}::text[]", i + 1);
            let to = format!("${}::text::text[]", i + 1);
            let current = sql.as_deref().unwrap_or(query.sql);
            sql = Some(current.replace(&from, &to));
        }
    }
    sql
}

fn value(param: &Param<'_>) -> Result<Value, DbError> {
    Ok(match param {
        Param::I64(v) => Value::BigInt(Some(*v)),
        Param::Bool(v) => Value::Bool(Some(*v)),
        Param::Text(v) => Value::String(v.map(str::to_owned)),
        Param::Bytes(v) => Value::Bytes(Some(v.to_vec())),
        // sea-orm's arrays cannot hold NULL elements: text arrays go as PostgreSQL array
        // literals in one text value (always, so that a prepared statement's parameter keeps
        // one type), which `text_array_sql` casts.
        Param::TextArray(v) => Value::String(Some(text_array_literal(v))),
        other => array(other)?,
    })
}

#[cfg(feature = "postgres")]
fn array(param: &Param<'_>) -> Result<Value, DbError> {
    use sea_orm::sea_query::ArrayType;
    let (ty, values): (ArrayType, Vec<Value>) = match param {
        Param::I64Array(v) => (
            ArrayType::BigInt,
            v.iter().map(|v| Value::BigInt(Some(*v))).collect(),
        ),
        Param::BoolArray(v) => (
            ArrayType::Bool,
            v.iter().map(|v| Value::Bool(Some(*v))).collect(),
        ),
        Param::BytesArray(v) => (
            ArrayType::Bytes,
            v.iter().map(|v| Value::Bytes(Some(v.to_vec()))).collect(),
        ),
        other => {
            return Err(DbError::other(format!(
                "outbox-seaorm cannot bind {other:?}"
            )));
        }
    };
    Ok(Value::Array(ty, Some(Box::new(values))))
}

#[cfg(not(feature = "postgres"))]
fn array(param: &Param<'_>) -> Result<Value, DbError> {
    Err(DbError::other(format!(
        "arrays are bound on PostgreSQL only, not {param:?}"
    )))
}

/// A PostgreSQL array literal of `elements`: `{"a",NULL,"b \"c\""}`.
fn text_array_literal(elements: &[Option<&str>]) -> String {
    let len: usize = elements.iter().map(|e| e.map_or(4, |s| s.len() + 3)).sum();
    let mut out = String::with_capacity(len + 2);
    out.push('{');
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match element {
            None => out.push_str("NULL"),
            Some(text) => {
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
}

/// Reads each of `columns`, by name and as its type, from every row. Every row of a result
/// has the same columns: they are found by name once, in the first row, and read by position.
fn decode(rows: &[QueryResult], columns: &'static [Column]) -> Result<Rows, DbError> {
    let mut out = Rows::with_capacity(columns, rows.len());
    let Some(first) = rows.first() else {
        return Ok(out);
    };
    let names = first.column_names();
    let ordinals = columns
        .iter()
        .map(|c| {
            names.iter().position(|n| n == c.name).ok_or_else(|| {
                DbError::with_kind(DbErrorKind::Decode, format!("no column named {:?}", c.name))
            })
        })
        .collect::<Result<Vec<usize>, DbError>>()?;
    for row in rows {
        for (column, &i) in columns.iter().zip(&ordinals) {
            let cell = match column.ty {
                CellType::Int => row
                    .try_get_by_index::<Option<i64>>(i)
                    .map(|v| v.map(Cell::Int)),
                CellType::Text => row
                    .try_get_by_index::<Option<String>>(i)
                    .map(|v| v.map(Cell::Text)),
                CellType::Bytes => row
                    .try_get_by_index::<Option<Vec<u8>>>(i)
                    .map(|v| v.map(Cell::Bytes)),
            }
            .map_err(|err| undecodable(column.name, err))?;
            out.push(cell.unwrap_or(Cell::Null));
        }
    }
    Ok(out)
}

fn undecodable(column: &str, err: DbErr) -> DbError {
    match db_error(err) {
        err if err.kind() == DbErrorKind::Decode => err,
        err => DbError::with_kind(DbErrorKind::Decode, format!("column {column:?}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_array_parameters_are_cast_from_text() {
        let query = Query::statement("SELECT $1::text[], $10::text[], $2::bigint[], $1::text[]")
            .bind(Param::TextArray(vec![None]))
            .bind(Param::I64Array(&[]));
        assert_eq!(
            text_array_sql(&query).as_deref(),
            Some("SELECT $1::text::text[], $10::text[], $2::bigint[], $1::text::text[]")
        );
        assert_eq!(text_array_sql(&Query::statement("SELECT 1")), None);
    }

    #[test]
    fn text_arrays_are_written_as_postgres_literals() {
        assert_eq!(text_array_literal(&[]), "{}");
        assert_eq!(
            text_array_literal(&[Some("a"), None, Some("NULL"), Some(r#"b "c" \d"#)]),
            r#"{"a",NULL,"NULL","b \"c\" \\d"}"#
        );
    }
}
