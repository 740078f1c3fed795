//! The inbox: the consumer's record of the messages it has processed, written in the
//! consumer's own transaction so that a handler's effect and its dedup record commit together.
//!
//! The table is `<outbox table>_inbox` (`outbox_inbox` by default), created by the same
//! `migrate` as the outbox table. One row per consumer and message id; its primary key is the
//! dedup. Recording inserts the row and reports whether it was new: a concurrent delivery of
//! the same id waits on the first one's uncommitted row, and finds it once that commits (or
//! inserts its own if that rolls back), so exactly one delivery's effect commits.

use std::fmt;

use super::{Dialect, TableName};
use crate::error::{Error, Result};

/// Longest consumer name, in bytes.
pub const MAX_CONSUMER_BYTES: usize = 200;

/// The SQL of one inbox table on one database.
#[derive(Debug, Clone)]
pub struct InboxSql {
    /// The table, quoted for the database.
    pub table: String,
    /// Idempotent schema statements (part of the outbox's `create`).
    pub create: Vec<String>,
    /// Records one processed message. Parameters: consumer, message id (text). Affects one
    /// row when the message is new for the consumer, none when it was already recorded.
    pub record: String,
    /// Whether a message is recorded. Parameters: consumer, message id. Returns `n` (0 or 1).
    pub seen: String,
    /// Deletes up to a batch of records processed before a retention window. Parameters:
    /// window in microseconds, batch size.
    pub purge: String,
}

/// The inbox's statements for the outbox table `table` on `dialect`.
pub(super) fn statements(dialect: Dialect, table: &TableName) -> InboxSql {
    let name = table.with_suffix("_inbox");
    let base = name.table();
    match dialect {
        Dialect::Postgres => {
            let t = name.quoted('"');
            InboxSql {
                create: vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS {t} (
    consumer     text NOT NULL,
    message_id   uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
)"
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS \"{base}_processed_idx\" ON {t} (processed_at)"
                    ),
                ],
                record: format!(
                    "INSERT INTO {t} (consumer, message_id) VALUES ($1, $2::uuid) \
                     ON CONFLICT DO NOTHING"
                ),
                seen: format!(
                    "SELECT count(*) AS n FROM {t} WHERE consumer = $1 AND message_id = $2::uuid"
                ),
                purge: format!(
                    "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} \
                     WHERE processed_at < now() - $1 * interval '1 microsecond' LIMIT $2))"
                ),
                table: t,
            }
        }
        Dialect::MySql => {
            let t = name.quoted('`');
            InboxSql {
                create: vec![format!(
                    "CREATE TABLE IF NOT EXISTS {t} (
    consumer     VARCHAR({MAX_CONSUMER_BYTES}) NOT NULL,
    message_id   CHAR(36) NOT NULL,
    processed_at DATETIME(6) NOT NULL,
    PRIMARY KEY (consumer, message_id),
    KEY `{base}_processed_idx` (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
                )],
                // IGNORE turns only the duplicate key into "no row": the consumer name is
                // checked before, so nothing is truncated.
                record: format!(
                    "INSERT IGNORE INTO {t} (consumer, message_id, processed_at) \
                     VALUES (?, ?, UTC_TIMESTAMP(6))"
                ),
                seen: format!(
                    "SELECT CAST(count(*) AS SIGNED) AS n FROM {t} \
                     WHERE consumer = ? AND message_id = ?"
                ),
                purge: format!(
                    "DELETE FROM {t} \
                     WHERE processed_at < TIMESTAMPADD(MICROSECOND, -?, UTC_TIMESTAMP(6)) LIMIT ?"
                ),
                table: t,
            }
        }
        Dialect::Sqlite => {
            let t = name.quoted('"');
            let now = super::sqlite::NOW;
            InboxSql {
                create: vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS {t} (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
)"
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS \"{base}_processed_idx\" ON {t} (processed_at)"
                    ),
                ],
                record: format!(
                    "INSERT INTO {t} (consumer, message_id, processed_at) VALUES (?, ?, {now}) \
                     ON CONFLICT DO NOTHING"
                ),
                seen: format!(
                    "SELECT count(*) AS n FROM {t} WHERE consumer = ? AND message_id = ?"
                ),
                purge: format!(
                    "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} \
                     WHERE processed_at < {now} - ? LIMIT ?)"
                ),
                table: t,
            }
        }
    }
}

/// Checks a consumer name: 1 to [`MAX_CONSUMER_BYTES`] bytes of visible characters.
///
/// # Errors
///
/// [`Error::InvalidConsumer`] naming what is wrong.
pub fn check_consumer(consumer: &str) -> Result<()> {
    let reason = if consumer.is_empty() {
        "it is empty"
    } else if consumer.len() > MAX_CONSUMER_BYTES {
        "it is longer than 200 bytes"
    } else if consumer.chars().any(char::is_control) {
        "it contains a control character"
    } else if consumer.trim() != consumer {
        "it starts or ends with whitespace"
    } else {
        return Ok(());
    };
    Err(Error::InvalidConsumer {
        consumer: consumer.chars().take(64).collect(),
        reason,
    })
}

/// What an adapter's `process_once` did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Processed<T> {
    /// The message was new for this consumer: the handler ran, and returned this. Its effect
    /// and the inbox record commit with the transaction.
    New(T),
    /// The consumer had already processed this message: the handler did not run.
    AlreadyProcessed,
}

impl<T> Processed<T> {
    /// `true` when the consumer had already processed the message.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::AlreadyProcessed)
    }

    /// What the handler returned, when it ran.
    pub fn into_inner(self) -> Option<T> {
        match self {
            Self::New(value) => Some(value),
            Self::AlreadyProcessed => None,
        }
    }
}

impl<T> fmt::Display for Processed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::New(_) => "processed",
            Self::AlreadyProcessed => "already processed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_checked() {
        assert!(check_consumer("billing").is_ok());
        assert!(check_consumer("billing/orders.v2").is_ok());
        for (bad, why) in [
            ("", "empty"),
            (" billing", "whitespace"),
            ("bill\ning", "control"),
        ] {
            let err = check_consumer(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = "c".repeat(MAX_CONSUMER_BYTES + 1);
        assert!(
            check_consumer(&long)
                .unwrap_err()
                .to_string()
                .contains("200 bytes")
        );
        assert!(check_consumer(&long[..MAX_CONSUMER_BYTES]).is_ok());
    }

    #[test]
    fn the_inbox_table_follows_the_outbox_table() {
        let table = TableName::new("billing.events").unwrap();
        let sql = statements(Dialect::Postgres, &table);
        assert_eq!(sql.table, "\"billing\".\"events_inbox\"");
        let sql = statements(Dialect::MySql, &TableName::default());
        assert_eq!(sql.table, "`outbox_inbox`");
    }
}
