//! The conformance suite and adapter tests on PostgreSQL through sea-orm
//! (`OUTBOX_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use outbox_core::testing::Visibility;
use outbox_seaorm::testing::SeaOrmBackend;
use outbox_sqlx::testing::postgres_pool;

async fn backend() -> SeaOrmBackend {
    SeaOrmBackend::new(
        "sea-orm postgres",
        postgres_pool().await.into(),
        Visibility::KeySerialized,
    )
    .await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

outbox_seaorm::transaction_suite!(backend());

/// Rows written through sea-orm are claimed and settled by the sqlx store, and back.
mod interop_sqlx {
    use outbox_sqlx::testing::{SqlxBackend, postgres_pool};

    outbox_core::interop_suite!(async {
        let sqlx = SqlxBackend::new(
            "sqlx postgres",
            postgres_pool().await,
            super::Visibility::KeySerialized,
        )
        .await;
        (super::backend().await, sqlx)
    });
}
