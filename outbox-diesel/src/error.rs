//! Turning diesel errors into the core's classified database errors.

use diesel::result::{DatabaseErrorKind, Error};
use outbox_core::sql::{DbError, DbErrorKind};

/// Classifies a diesel error. Diesel gives no SQLSTATE, so the database's own errors are
/// classified by their kind where diesel knows it and by their message otherwise.
pub(crate) fn db_error(err: Error) -> DbError {
    match &err {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)
        | Error::BrokenTransactionManager => DbError::connection(err),
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
            DbError::with_kind(DbErrorKind::RetryableConflict, err)
        }
        Error::DatabaseError(_, info) => {
            let message = info.message().to_owned();
            DbError::from_database(None, message, err)
        }
        Error::DeserializationError(_) => DbError::with_kind(DbErrorKind::Decode, err),
        _ => DbError::other(err),
    }
}

/// What a transaction closure of this crate returns: the operation's own error, or diesel's
/// from beginning, committing or rolling back.
#[cfg(any(feature = "r2d2", feature = "async"))]
#[derive(Debug)]
pub(crate) enum TxError {
    Outbox(outbox_core::Error),
    Diesel(Error),
}

#[cfg(any(feature = "r2d2", feature = "async"))]
impl From<Error> for TxError {
    fn from(err: Error) -> Self {
        TxError::Diesel(err)
    }
}

#[cfg(any(feature = "r2d2", feature = "async"))]
impl From<TxError> for outbox_core::Error {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Outbox(err) => err,
            TxError::Diesel(err) => db_error(err).into(),
        }
    }
}
