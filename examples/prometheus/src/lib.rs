//! The relay's metrics for Prometheus (see `main.rs`): what the program and its test share.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use outbox_publishers::JsonLinesPublisher;
use outbox_sqlx::{Message, Relay, SqliteStore, WakeHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Errors of the example.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running relay whose metrics are served at `metrics`.
pub struct Running {
    /// The scrape endpoint (any path answers).
    pub metrics: SocketAddr,
    /// Wakes the relay after a commit.
    pub wake: WakeHandle,
    /// The pool the application writes through.
    pub pool: sqlx::SqlitePool,
    /// The relay's task: it runs until the process ends.
    pub relay: tokio::task::JoinHandle<outbox_sqlx::Result<()>>,
}

/// Installs the Prometheus exporter on `metrics` (the process's `metrics` recorder: once per
/// process), migrates the outbox in the SQLite database at `url`, and starts a relay that
/// publishes JSON lines on stdout and refreshes the outbox gauges every `gauges`.
///
/// # Errors
///
/// The exporter cannot listen on `metrics`, or the database cannot be opened.
pub async fn start(url: &str, metrics: SocketAddr, gauges: Duration) -> Result<Running, BoxError> {
    PrometheusBuilder::new()
        .with_http_listener(metrics)
        .install()?;
    let pool = sqlx::SqlitePool::connect(url).await?;
    let store = SqliteStore::new(pool.clone());
    store.migrate().await?;
    let relay = Relay::builder(store, JsonLinesPublisher::stdout())
        .gauges(gauges)
        .build()?;
    let wake = relay.wake_handle();
    let relay = tokio::spawn(async move { relay.run(std::future::pending()).await });
    Ok(Running {
        metrics,
        wake,
        pool,
        relay,
    })
}

impl Running {
    /// Commits one `order.placed` event for order `id` and wakes the relay.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn place_order(&self, id: i64) -> Result<(), BoxError> {
        let mut tx = self.pool.begin().await?;
        let order = serde_json::json!({ "order_id": id, "total_cents": 1999 });
        outbox_sqlx::enqueue(&mut *tx, Message::json("order.placed", &order)?.key(id)?).await?;
        tx.commit().await?;
        self.wake.wake();
        Ok(())
    }

    /// The scrape endpoint's page, as Prometheus reads it.
    ///
    /// # Errors
    ///
    /// The endpoint did not answer with 200.
    pub async fn scrape(&self) -> Result<String, BoxError> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
            _ => Err(format!("the metrics endpoint answered: {response}").into()),
        }
    }
}

/// The lines of a scraped page about the outbox's own metrics, without the histogram
/// quantiles.
pub fn outbox_lines(page: &str) -> Vec<&str> {
    page.lines()
        .filter(|l| l.starts_with("outbox_") && !l.contains("quantile="))
        .collect()
}
