//! Turning sqlx errors into the core's classified database errors.

use std::sync::Arc;

use outbox_core::BoxError;
use outbox_core::sql::{DbError, DbErrorKind};

/// Classifies a driver error: the database's own errors by their code, lost connections and
/// undecodable cells by the driver's error kind.
pub(crate) fn db_error(err: sqlx::Error) -> DbError {
    let err = Arc::new(err);
    classify(&err, Arc::clone(&err))
}

/// Classifies `err` as [`db_error`] does, with `source` (`err`, or an error wrapping it, such
/// as sea-orm's) as the classified error's cause. Public for outbox-seaorm, whose driver is
/// sqlx under sea-orm's error type.
#[doc(hidden)]
pub fn classify(err: &sqlx::Error, source: impl Into<BoxError>) -> DbError {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code();
            DbError::from_database(code.as_deref(), db.message(), source)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbError::connection(source),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => DbError::with_kind(DbErrorKind::Decode, source),
        _ => DbError::other(source),
    }
}
