//! The conformance suite and adapter tests on MySQL/MariaDB through diesel-async
//! (`OUTBOX_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`).

use diesel_async::AsyncMysqlConnection;
use outbox_core::testing::Visibility;
use outbox_diesel::testing::{AsyncDieselBackend, async_pool};

async fn backend() -> AsyncDieselBackend<AsyncMysqlConnection> {
    let url = std::env::var("OUTBOX_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let pool = async_pool("MariaDB/MySQL", &url, 16).await;
    AsyncDieselBackend::new("diesel-async mysql", pool, Visibility::KeySerialized).await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

outbox_diesel::async_transaction_suite!(backend());

/// Rows written through diesel-async are claimed and settled by the sqlx store, and back.
mod interop_sqlx {
    use outbox_sqlx::testing::{SqlxBackend, mysql_pool};

    outbox_core::interop_suite!(async {
        let sqlx = SqlxBackend::new(
            "sqlx mysql",
            mysql_pool().await,
            super::Visibility::KeySerialized,
        )
        .await;
        (super::backend().await, sqlx)
    });
}
