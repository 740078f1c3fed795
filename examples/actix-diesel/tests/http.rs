//! Starts the order service on a SQLite file, POSTs to it over HTTP, and sees the event.

use std::net::SocketAddr;
use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::deadpool::Pool;
use example_actix_diesel::start;
use example_support::{ExampleDatabase, assert_order_service};
use outbox_diesel::asynchronous::sqlite_manager;
use outbox_diesel::memory::CollectingPublisher;

#[derive(diesel::QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    total_cents: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_order_is_published_and_a_refused_one_is_not() {
    let database = ExampleDatabase::sqlite("example-actix-diesel-test").unwrap();
    let file = database.sqlite_file.as_ref().unwrap().display().to_string();
    let pool = Pool::builder(sqlite_manager(file, Duration::from_secs(5)))
        .build()
        .unwrap();
    let publisher = CollectingPublisher::new();
    let running = start(
        pool.clone(),
        publisher.clone(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    assert_order_service(running, &publisher).await;

    let mut conn = pool.get().await.unwrap();
    let totals: Vec<Total> = diesel::sql_query("SELECT total_cents FROM actix_orders")
        .load(&mut *conn)
        .await
        .unwrap();
    let totals: Vec<i64> = totals.into_iter().map(|t| t.total_cents).collect();
    assert_eq!(totals, [4200], "the refused order's row rolled back");
}
