//! The conformance suite and adapter tests on SQLite through sea-orm, one database file per
//! test.

use outbox_core::testing::{Visibility, sqlite_file};
use outbox_seaorm::testing::SeaOrmBackend;
use outbox_sqlx::testing::sqlite_pool;

async fn backend_on(path: &std::path::Path) -> SeaOrmBackend {
    SeaOrmBackend::new(
        "sea-orm sqlite",
        sqlite_pool(path).await.into(),
        Visibility::InOrder,
    )
    .await
}

async fn backend() -> SeaOrmBackend {
    backend_on(&sqlite_file("outbox-seaorm-tests")).await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

outbox_seaorm::transaction_suite!(backend());

/// Rows written through sea-orm are claimed and settled by the sqlx store, and back, on one
/// database file.
mod interop_sqlx {
    use outbox_sqlx::testing::{SqlxBackend, sqlite_pool};

    outbox_core::interop_suite!(async {
        let path = outbox_core::testing::sqlite_file("outbox-seaorm-tests");
        let sea = super::backend_on(&path).await;
        let sqlx = SqlxBackend::new(
            "sqlx sqlite",
            sqlite_pool(&path).await,
            super::Visibility::InOrder,
        )
        .await;
        (sea, sqlx)
    });
}
