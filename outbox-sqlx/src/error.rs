//! Turning sqlx errors into the core's classified database errors.

use outbox_core::sql::{DbError, DbErrorKind};

/// Classifies a driver error: the database's own errors by their code, lost connections and
/// undecodable cells by the driver's error kind.
pub(crate) fn db_error(err: sqlx::Error) -> DbError {
    match &err {
        sqlx::Error::Database(db) => {
            let (code, message) = (db.code().map(|c| c.into_owned()), db.message().to_owned());
            DbError::from_database(code.as_deref(), message, err)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbError::connection(err),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => DbError::with_kind(DbErrorKind::Decode, err),
        _ => DbError::other(err),
    }
}
