//! The conformance suite and adapter tests on SQLite, one database file per test.

mod common;

use std::str::FromStr;
use std::time::Duration;

use common::SqlxBackend;
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

async fn pool() -> SqlitePool {
    let dir = std::env::temp_dir().join("outbox-sqlx-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", common::fresh_table()));
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap()
}

async fn backend() -> SqlxBackend<Sqlite> {
    SqlxBackend::new(
        "sqlite",
        pool().await,
        outbox_core::testing::Visibility::InOrder,
    )
    .await
}

outbox_core::conformance_suite!(backend());

type DbUnderTest = Sqlite;

adapter_tests!(
    pool().await,
    "CREATE TABLE \"{}\" (id INTEGER PRIMARY KEY)",
    "INSERT INTO \"{}\" (id) VALUES (?)",
    "SELECT count(*) FROM \"{}\"",
    "UPDATE \"{}\" SET created_at = created_at + 60000000, available_at = available_at + 60000000"
);
