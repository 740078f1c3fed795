//! The conformance suite and adapter tests on MySQL/MariaDB (`OUTBOX_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306/test`).

mod common;

use common::{MYSQL_DEFAULT, SqlxBackend, connect_or_explain, url};
use outbox_core::testing::stale_tables;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{Executor, MySql};

async fn pool() -> MySqlPool {
    let url = url("OUTBOX_TEST_MYSQL_URL", MYSQL_DEFAULT);
    let pool = connect_or_explain(
        "MariaDB/MySQL",
        &url,
        MySqlPoolOptions::new().max_connections(32).connect(&url),
    )
    .await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name LIKE 'outbox\\_t\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in stale_tables(tables) {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{table}`"
            )))
            .await;
    }
    pool
}

async fn backend() -> SqlxBackend<MySql> {
    SqlxBackend::new(
        "mysql",
        pool().await,
        outbox_core::testing::Visibility::KeySerialized,
    )
    .await
}

outbox_core::conformance_suite!(backend());

outbox_core::adapter_suite!(backend());

// sqlx against itself until a second adapter exists; each new adapter adds its pair here.
outbox_core::interop_suite!(async { (backend().await, backend().await) });

/// With `lock_keys(false)` the weaker promise holds: a key with a row in flight is held back,
/// so a late-committing older row never overtakes it, and nothing is skipped.
mod without_key_locks {
    use super::*;

    async fn backend() -> SqlxBackend<MySql> {
        let mut backend = SqlxBackend::new(
            "mysql without key locks",
            pool().await,
            outbox_core::testing::Visibility::Unordered,
        )
        .await;
        backend.outbox = backend.outbox.clone().lock_keys(false);
        backend
    }

    outbox_core::conformance_suite!(@cases backend();
        sequence_visibility_skips_nothing,
        per_key_order_holds_with_random_failures,
    );
}
