//! The conformance suite and adapter tests on MySQL/MariaDB (`OUTBOX_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306/test`).

use outbox_sqlx::testing::{SqlxBackend, mysql_pool as pool};
use sqlx::MySql;

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
