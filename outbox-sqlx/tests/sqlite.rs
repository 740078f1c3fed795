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
    let path = dir.join(format!("{}.db", outbox_core::testing::fresh_table()));
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

outbox_core::adapter_suite!(backend());

// sqlx against itself until a second adapter exists; each new adapter adds its pair here.
outbox_core::interop_suite!(async {
    let pool = pool().await;
    let visibility = outbox_core::testing::Visibility::InOrder;
    (
        SqlxBackend::new("sqlite", pool.clone(), visibility).await,
        SqlxBackend::new("sqlite", pool, visibility).await,
    )
});
