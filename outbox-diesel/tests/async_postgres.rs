//! The conformance suite and adapter tests on PostgreSQL through diesel-async
//! (`OUTBOX_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use diesel_async::AsyncPgConnection;
use outbox_core::testing::Visibility;
use outbox_diesel::testing::{AsyncDieselBackend, async_pool};

async fn backend() -> AsyncDieselBackend<AsyncPgConnection> {
    let url = std::env::var("OUTBOX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = async_pool("PostgreSQL", &url, 16).await;
    AsyncDieselBackend::new("diesel-async postgres", pool, Visibility::KeySerialized).await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

outbox_diesel::async_transaction_suite!(backend());

/// Rows written through diesel-async are claimed and settled by the sqlx store, and back.
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
