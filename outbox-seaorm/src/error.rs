//! Turning sea-orm errors into the core's classified database errors.

use outbox_core::sql::{DbError, DbErrorKind};
use sea_orm::DbErr;

/// Classifies a sea-orm error: errors of its sqlx driver as outbox-sqlx classifies them (the
/// database's own by their code), pool errors as lost connections.
pub(crate) fn db_error(err: DbErr) -> DbError {
    if let Some(driver) = sqlx_error(&err) {
        return outbox_sqlx::__private::classify(&driver, err);
    }
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbError::connection(err),
        DbErr::Type(_) | DbErr::TryIntoErr { .. } => DbError::with_kind(DbErrorKind::Decode, err),
        _ => DbError::other(err),
    }
}

/// A sea-orm error as the outbox's error.
pub(crate) fn error(err: DbErr) -> outbox_core::Error {
    db_error(err).into()
}

/// The sqlx error under a sea-orm error, if there is one.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
fn sqlx_error(err: &DbErr) -> Option<std::sync::Arc<sqlx::Error>> {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(std::sync::Arc::clone(e)),
        _ => None,
    }
}

#[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
fn sqlx_error(_: &DbErr) -> Option<std::sync::Arc<sqlx::Error>> {
    None
}
