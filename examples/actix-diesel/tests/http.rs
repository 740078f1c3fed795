//! Starts the order service on a SQLite file, POSTs to it over HTTP, and sees the event.

use std::net::SocketAddr;
use std::time::Duration;

use diesel_async::pooled_connection::deadpool::Pool;
use example_actix_diesel::start;
use example_support::post_json;
use outbox_diesel::asynchronous::sqlite_manager;
use outbox_diesel::memory::CollectingPublisher;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_order_is_published_and_a_refused_one_is_not() {
    let dir = std::env::temp_dir().join(format!("example-actix-diesel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("orders.db").display().to_string();
    let pool = Pool::builder(sqlite_manager(file, Duration::from_secs(5)))
        .build()
        .unwrap();
    let publisher = CollectingPublisher::new();
    let running = start(
        pool,
        publisher.clone(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();

    let (status, body) = post_json(running.addr, "/orders", r#"{"total_cents":4200}"#)
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""total_cents":4200"#), "{body}");
    let (status, _) = post_json(running.addr, "/orders", r#"{"total_cents":999999}"#)
        .await
        .unwrap();
    assert_eq!(status, 422);
    let (status, _) = post_json(running.addr, "/orders", "not json")
        .await
        .unwrap();
    assert_eq!(
        status, 400,
        "a body that is no order is refused before the handler"
    );

    running.drained(Duration::from_secs(10)).await.unwrap();
    let published = publisher.published();
    assert_eq!(published.len(), 1, "only the committed order's event");
    assert_eq!(published[0].event_type, "order.created");
    let payload = String::from_utf8(published[0].payload.to_vec()).unwrap();
    assert!(payload.contains(r#""total_cents":4200"#), "{payload}");
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
