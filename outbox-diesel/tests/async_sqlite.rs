//! The conformance suite and adapter tests on SQLite through diesel-async's
//! `SyncConnectionWrapper`, one database file per test.

use std::time::Duration;

use outbox_core::testing::Visibility;
use outbox_diesel::asynchronous::{SqliteConnection as Conn, sqlite_manager};
use outbox_diesel::testing::{AsyncDieselBackend, async_pool_with};

async fn backend_on(path: &std::path::Path) -> AsyncDieselBackend<Conn> {
    let url = path.display().to_string();
    let manager = sqlite_manager(&url, Duration::from_secs(30));
    let pool = async_pool_with("SQLite", &url, manager, 4).await;
    AsyncDieselBackend::new("diesel-async sqlite", pool, Visibility::InOrder).await
}

async fn backend() -> AsyncDieselBackend<Conn> {
    backend_on(&outbox_core::testing::sqlite_file("outbox-diesel-tests")).await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

outbox_diesel::async_transaction_suite!(backend());

/// Rows written through diesel-async are claimed and settled by the sqlx store, and back, on
/// one database file.
mod interop_sqlx {
    use outbox_sqlx::testing::{SqlxBackend, sqlite_pool};

    outbox_core::interop_suite!(async {
        let path = outbox_core::testing::sqlite_file("outbox-diesel-tests");
        let diesel = super::backend_on(&path).await;
        let sqlx = SqlxBackend::new(
            "sqlx sqlite",
            sqlite_pool(&path).await,
            super::Visibility::InOrder,
        )
        .await;
        (diesel, sqlx)
    });
}
