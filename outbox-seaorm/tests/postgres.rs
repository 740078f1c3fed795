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

/// Rows written through sea-orm are claimed and settled by the sqlx store, and back, both
/// on one sqlx pool (sea-orm's connection wraps it), as in an application moving from one
/// to the other: each adapter's prepared statements live beside the other's.
mod interop_sqlx {
    use outbox_seaorm::testing::SeaOrmBackend;
    use outbox_sqlx::testing::{SqlxBackend, postgres_pool};

    outbox_core::interop_suite!(async {
        let pool = postgres_pool().await;
        let visibility = super::Visibility::KeySerialized;
        let sea = SeaOrmBackend::new("sea-orm postgres", pool.clone().into(), visibility).await;
        let sqlx = SqlxBackend::new("sqlx postgres", pool, visibility).await;
        (sea, sqlx)
    });
}

/// The sqlx and the sea-orm adapter on one table through one pooled connection: each runs the
/// statements with text-array parameters (multi-row enqueue, failing rows) that the other
/// has prepared on that connection under its own text, and neither trips on the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_and_sea_orm_share_a_connection() {
    use outbox_seaorm::{Failure, Message, Store};
    use std::time::Duration;

    let url = outbox_sqlx::testing::url(
        "OUTBOX_TEST_POSTGRES_URL",
        outbox_sqlx::testing::POSTGRES_DEFAULT,
    );
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"));
    let table = outbox_core::testing::fresh_table();
    let sqlx_outbox = outbox_sqlx::Outbox::<sqlx::Postgres>::with_table(&table).unwrap();
    let sea_outbox = outbox_seaorm::Outbox::with_table(&table).unwrap();
    let db = sea_orm::DatabaseConnection::from(pool.clone());
    sea_outbox.migrate(&db).await.unwrap();
    let batch = |n: usize| -> Vec<Message> {
        (0..n)
            .map(|i| {
                let m = Message::json("order.created", &i).unwrap();
                if i % 2 == 0 { m.key(i).unwrap() } else { m }
            })
            .collect()
    };
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        sqlx_outbox.enqueue_all(&mut *conn, batch(3)).await.unwrap();
        drop(conn);
        sea_outbox.enqueue_all(&db, batch(3)).await.unwrap();
    }
    let sqlx_store = sqlx_outbox.store(pool.clone());
    let sea_store = sea_outbox.store(db.clone()).unwrap();
    let mut failed = 0;
    for round in 0..3 {
        for store in [0, 1] {
            let claim = match store {
                0 => sqlx_store.claim(2, Duration::from_secs(30)).await.unwrap(),
                _ => sea_store.claim(2, Duration::from_secs(30)).await.unwrap(),
            };
            let failures: Vec<Failure> = claim
                .messages
                .iter()
                .map(|m| Failure {
                    seq: m.seq,
                    error: format!("broker said \"no\" in round {round}"),
                    retry_after: None,
                })
                .collect();
            let n = match store {
                0 => sqlx_store.fail(claim.token, &failures).await.unwrap(),
                _ => sea_store.fail(claim.token, &failures).await.unwrap(),
            };
            assert_eq!(n, failures.len() as u64);
            failed += n;
        }
    }
    let stats = outbox_seaorm::Inspect::stats(&sea_store).await.unwrap();
    assert_eq!((failed, stats.dead), (12, 12), "{stats:?}");
    assert_eq!(stats.unpublished(), 6, "{stats:?}");
    sea_store.uninstall().await.unwrap();
}
