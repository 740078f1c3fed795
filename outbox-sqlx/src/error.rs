//! Turning sqlx errors into the outbox error type.

use outbox_core::Error;
use outbox_core::sql::TableName;

/// Maps a driver error, recognising a missing outbox table on every database.
pub(crate) fn map_err(table: &TableName, err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err {
        let code = db.code();
        let missing = match code.as_deref() {
            // PostgreSQL undefined_table and undefined_function (the table's claim function);
            // MySQL/MariaDB ER_NO_SUCH_TABLE.
            Some("42P01") | Some("42883") | Some("42S02") => true,
            _ => db.message().contains("no such table"),
        };
        if missing && db.message().contains(table.table()) {
            return Error::MissingTable {
                table: table.to_string(),
            };
        }
    }
    Error::database(err)
}

/// Shorthand for mapping results against a table.
pub(crate) trait ResultExt<T> {
    fn for_table(self, table: &TableName) -> outbox_core::Result<T>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn for_table(self, table: &TableName) -> outbox_core::Result<T> {
        self.map_err(|err| map_err(table, err))
    }
}
