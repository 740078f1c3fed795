//! The conformance suite and adapter tests on MariaDB (or MySQL) through sea-orm
//! (`OUTBOX_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`).

use outbox_core::testing::Visibility;
use outbox_seaorm::testing::SeaOrmBackend;
use outbox_sqlx::testing::mysql_pool;

async fn backend() -> SeaOrmBackend {
    SeaOrmBackend::new(
        "sea-orm mysql",
        mysql_pool().await.into(),
        Visibility::KeySerialized,
    )
    .await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

outbox_seaorm::transaction_suite!(backend());

/// Rows written through sea-orm are claimed and settled by the sqlx store, and back, both
/// on one sqlx pool (sea-orm's connection wraps it), as in an application moving from one
/// to the other: each adapter's prepared statements live beside the other's.
mod interop_sqlx {
    use outbox_seaorm::testing::SeaOrmBackend;
    use outbox_sqlx::testing::{SqlxBackend, mysql_pool};

    outbox_core::interop_suite!(async {
        let pool = mysql_pool().await;
        let visibility = super::Visibility::KeySerialized;
        let sea = SeaOrmBackend::new("sea-orm mysql", pool.clone().into(), visibility).await;
        let sqlx = SqlxBackend::new("sqlx mysql", pool, visibility).await;
        (sea, sqlx)
    });
}
