//! Scrapes the example's endpoint the way Prometheus does and checks the relay's metrics.

use std::time::{Duration, Instant};

use example_prometheus::{outbox_lines, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_relays_metrics() {
    let dir = std::env::temp_dir().join(format!("outbox-prometheus-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("orders.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let app = start(&url, listen, Duration::from_millis(100))
        .await
        .unwrap();
    for id in 1..=3 {
        app.place_order(id).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = app.scrape().await.unwrap();
        if page.contains("outbox_published_total{event_type=\"order.placed\"} 3")
            && page.contains("outbox_messages{status=\"pending\"} 0")
        {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape never showed three published events:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines = outbox_lines(&page);
    for expected in [
        "# TYPE",
        "outbox_messages{status=\"dead\"} 0",
        "outbox_claimed_total 3",
        "outbox_claim_batch_size_count",
        "outbox_publish_latency_seconds_count 3",
        "outbox_gauge_refresh_seconds_count",
        "outbox_oldest_unpublished_age_seconds 0",
    ] {
        assert!(page.contains(expected), "no {expected:?} in:\n{page}");
    }
    assert!(lines.len() >= 8, "{lines:?}");
    app.relay.abort();
    std::fs::remove_dir_all(dir).ok();
}
