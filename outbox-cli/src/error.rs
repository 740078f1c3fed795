//! What a command reports when it fails, and the exit status that goes with it.

use std::fmt;
use std::process::ExitCode;

use outbox_sqlx::Error;
use outbox_sqlx::sql::{DbError, DbErrorKind};

/// The exit statuses, as `outbox --help` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The database or the broker failed while the command ran.
    Failed = 1,
    /// Bad arguments.
    Usage = 2,
    /// The database cannot be reached.
    Unreachable = 3,
    /// The outbox table does not exist.
    MissingTable = 4,
    /// No message has that id.
    NotFound = 5,
    /// A destructive command was not confirmed.
    NotConfirmed = 6,
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit as u8)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for CliError {
    fn from(err: Error) -> Self {
        match &err {
            Error::MissingTable { table } => Self::new(
                Exit::MissingTable,
                format!(
                    "the outbox table {table:?} does not exist in this database; run `outbox \
                     migrate` (with the same --database-url and --table) to create it"
                ),
            ),
            Error::InvalidTableName { .. } => Self::new(Exit::Usage, err.to_string()),
            Error::Database(cause)
                if cause
                    .downcast_ref::<DbError>()
                    .is_some_and(|db| db.kind() == DbErrorKind::ConnectionLost) =>
            {
                Self::new(
                    Exit::Unreachable,
                    format!("lost the connection to the database: {err}"),
                )
            }
            _ => Self::new(Exit::Failed, err.to_string()),
        }
    }
}

pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;
