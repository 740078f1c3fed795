//! Starts the order service on a SQLite file, POSTs to it over HTTP, and sees the event.

use std::net::SocketAddr;

use example_axum_sqlx::{SQLITE, start};
use example_support::{ExampleDatabase, assert_order_service};
use outbox_sqlx::memory::CollectingPublisher;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_order_is_published_and_a_refused_one_is_not() {
    let database = ExampleDatabase::sqlite("example-axum-sqlx-test").unwrap();
    let pool = sqlx::SqlitePool::connect(&database.url).await.unwrap();
    let publisher = CollectingPublisher::new();
    let running = start(
        pool.clone(),
        SQLITE,
        publisher.clone(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    assert_order_service(running, &publisher).await;

    let totals: Vec<i64> = sqlx::query_scalar("SELECT total_cents FROM axum_orders")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(totals, [4200], "the refused order's row rolled back");
}
