//! Starts the order service on a SQLite file, POSTs to it over HTTP, and sees the event.

use std::net::SocketAddr;

use example_axum_seaorm::order;
use example_axum_seaorm::{Migrator, start};
use example_support::{ExampleDatabase, assert_order_service};
use outbox_seaorm::memory::CollectingPublisher;
use sea_orm::EntityTrait;
use sea_orm_migration::MigratorTrait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_order_is_published_and_a_refused_one_is_not() {
    let database = ExampleDatabase::sqlite("example-axum-seaorm-test").unwrap();
    let db = sea_orm::Database::connect(database.url.as_str())
        .await
        .unwrap();
    let publisher = CollectingPublisher::new();
    let running = start(
        db.clone(),
        publisher.clone(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    assert_order_service(running, &publisher).await;

    let rows = order::Entity::find().all(&db).await.unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the refused order's row rolled back: {rows:?}"
    );
    assert_eq!(rows[0].total_cents, 4200);

    // Both migrations are applied, once: a second `up` finds nothing to do.
    let applied = Migrator::get_applied_migrations(&db).await.unwrap();
    assert_eq!(applied.len(), 2, "the orders table and the outbox's");
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        Migrator::get_applied_migrations(&db).await.unwrap().len(),
        2
    );
}
