//! The conformance suite and adapter tests on SQLite through diesel, one database file per
//! test.

use diesel::SqliteConnection;
use outbox_core::testing::Visibility;
use outbox_diesel::SqliteSetup;
use outbox_diesel::testing::{DieselBackend, pool_with};

fn backend() -> DieselBackend<SqliteConnection> {
    backend_on(&outbox_core::testing::sqlite_file("outbox-diesel-tests"))
}

fn backend_on(path: &std::path::Path) -> DieselBackend<SqliteConnection> {
    let pool = pool_with(
        "SQLite",
        &path.display().to_string(),
        4,
        SqliteSetup::default().busy_timeout(std::time::Duration::from_secs(30)),
    );
    DieselBackend::new("diesel sqlite", pool, Visibility::InOrder)
}

outbox_core::conformance_suite!(async { tokio::task::block_in_place(backend) });

outbox_core::adapter_suite!(async { tokio::task::block_in_place(backend) });

outbox_diesel::transaction_suite!(backend());

/// Rows written through diesel are claimed and settled by the sqlx store, and back, on one
/// database file.
mod interop_sqlx {
    use outbox_sqlx::testing::{SqlxBackend, sqlite_pool};

    outbox_core::interop_suite!(async {
        let path = outbox_core::testing::sqlite_file("outbox-diesel-tests");
        let diesel = tokio::task::block_in_place(|| super::backend_on(&path));
        let sqlx = SqlxBackend::new(
            "sqlx sqlite",
            sqlite_pool(&path).await,
            super::Visibility::InOrder,
        )
        .await;
        (diesel, sqlx)
    });
}
