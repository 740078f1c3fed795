//! The conformance suite and adapter tests on MySQL/MariaDB through diesel
//! (`OUTBOX_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`).

use diesel::MysqlConnection;
use outbox_core::testing::Visibility;
use outbox_diesel::testing::{DieselBackend, pool};

fn backend() -> DieselBackend<MysqlConnection> {
    let url = std::env::var("OUTBOX_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    DieselBackend::new(
        "diesel mysql",
        pool("MariaDB/MySQL", &url, 16),
        Visibility::KeySerialized,
    )
}

outbox_core::conformance_suite!(async { tokio::task::block_in_place(backend) });

outbox_core::adapter_suite!(async { tokio::task::block_in_place(backend) });

outbox_diesel::transaction_suite!(backend());

/// Rows written through diesel are claimed and settled by the sqlx store, and back.
mod interop_sqlx {
    use outbox_sqlx::testing::{SqlxBackend, mysql_pool};

    async fn sqlx_backend() -> SqlxBackend<outbox_sqlx::MySql> {
        SqlxBackend::new(
            "sqlx mysql",
            mysql_pool().await,
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
