//! The conformance suite and adapter tests on PostgreSQL through diesel
//! (`OUTBOX_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, without
//! TLS: libpq's OpenSSL is torn down at process exit while r2d2's threads may still be
//! connecting, which crashes the test process after its test passed).

use diesel::PgConnection;
use outbox_core::testing::Visibility;
use outbox_diesel::testing::{DieselBackend, pool};

fn backend() -> DieselBackend<PgConnection> {
    let url = std::env::var("OUTBOX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
    DieselBackend::new(
        "diesel postgres",
        pool("PostgreSQL", &url, 16),
        Visibility::KeySerialized,
    )
}

outbox_core::conformance_suite!(async { tokio::task::block_in_place(backend) });

outbox_core::adapter_suite!(async { tokio::task::block_in_place(backend) });

outbox_diesel::transaction_suite!(backend());

/// Rows written through diesel are claimed and settled by the sqlx store, and back.
mod interop_sqlx {
    use outbox_sqlx::testing::{SqlxBackend, postgres_pool};

    async fn sqlx_backend() -> SqlxBackend<outbox_sqlx::Postgres> {
        SqlxBackend::new(
            "sqlx postgres",
            postgres_pool().await,
            super::Visibility::KeySerialized,
        )
        .await
    }

    outbox_core::interop_suite!(async {
        (
            tokio::task::block_in_place(super::backend),
            sqlx_backend().await,
        )
    });
}
