//! The conformance suite and adapter tests on SQLite, one database file per test.

use outbox_core::testing::sqlite_file;
use outbox_sqlx::testing::{SqlxBackend, sqlite_pool};
use sqlx::Sqlite;
use sqlx::SqlitePool;

async fn pool() -> SqlitePool {
    sqlite_pool(&sqlite_file("outbox-sqlx-tests")).await
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
