//! The relay's metrics for Prometheus: the relay runs in-process with its gauges refreshed
//! every second, and `metrics-exporter-prometheus` serves every metric the relay reports
//! (README, "Metrics") on an HTTP scrape endpoint.
//!
//! Run with `cargo run -p example-prometheus -- serve`, then, in another terminal:
//!
//! ```sh
//! curl -s localhost:9464/metrics | grep '^outbox_'
//! ```
//!
//! It commits an `order.placed` event every second. A Prometheus job scrapes it with
//! `static_configs: [{ targets: ["localhost:9464"] }]`; README "Alerts" has rules to put on it.
//!
//! Without `serve` it commits three events, waits until the relay has published them and the
//! gauges show an empty outbox, prints the outbox's lines of its own scrape endpoint, and exits.
//!
//! It uses a SQLite file in a temporary directory, so no server is needed; `METRICS_LISTEN`
//! changes the address (default 127.0.0.1:9464).

use std::time::{Duration, Instant};

use example_prometheus::{BoxError, outbox_lines, start};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().nth(1).as_deref() == Some("serve");
    let listen = std::env::var("METRICS_LISTEN").unwrap_or_else(|_| "127.0.0.1:9464".into());
    let dir = std::env::temp_dir().join(format!("outbox-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("orders.db").display());
    let result = run(&url, &listen, serve).await;
    let _ = std::fs::remove_dir_all(dir);
    result
}

async fn run(url: &str, listen: &str, serve: bool) -> Result<(), BoxError> {
    let app = start(url, listen.parse()?, Duration::from_secs(1)).await?;
    eprintln!("metrics on http://{}/metrics", app.metrics);
    if serve {
        let mut id = 0;
        loop {
            id += 1;
            app.place_order(id).await?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    for id in 1..=3 {
        app.place_order(id).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = app.scrape().await?;
        if page.contains("outbox_published_total{event_type=\"order.placed\"} 3")
            && page.contains("outbox_messages{status=\"pending\"} 0")
        {
            for line in outbox_lines(&page) {
                eprintln!("{line}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the metrics never showed three published events:\n{page}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
