//! What the web examples share: how they run ([`run`]: the demo or `-- serve`), their database
//! ([`ExampleDatabase`]), the plain HTTP/1.1 client their demo mode sends its requests with, as
//! `curl` would, the demo's requests, and the wait for the outbox to drain.

use std::net::SocketAddr;
use std::time::Duration;

use outbox_core::Inspect;
use outbox_core::memory::CollectingPublisher;

/// Any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The demo mode's requests, as the examples' "Run with" headers give them with curl: three
/// orders and one over the credit limit (refused with 422, its row and event rolled back).
pub async fn send_demo_orders(addr: SocketAddr, example: &str) -> Result<(), BoxError> {
    for body in [
        r#"{"total_cents":4200}"#,
        r#"{"total_cents":1999}"#,
        r#"{"total_cents":999999}"#,
        r#"{"total_cents":250}"#,
    ] {
        let (status, answer) = post_json(addr, "/orders", body).await?;
        eprintln!("{example}: POST /orders {body} -> {status} {answer}");
    }
    Ok(())
}

/// Waits until `store` has no unpublished message (at most `within`).
pub async fn drained(store: &impl Inspect, within: Duration) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stats = store.stats().await?;
        if stats.unpublished() == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("outbox not drained after {within:?}: {stats:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` (JSON) to `path` on `addr` over a plain HTTP/1.1 connection, as `curl` would;
/// returns the status and the body.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> Result<(u16, String), BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A web example's service once started: what [`run`] needs of it.
pub trait Service: Sized {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;

    /// Waits until every committed event has been published (at most `within`).
    fn drained(&self, within: Duration) -> impl Future<Output = Result<(), BoxError>>;

    /// Stops the server and the relay, and waits for both.
    fn stop(self) -> impl Future<Output = Result<(), BoxError>>;
}

/// Runs a web example the way its "Run with" header says. With `-- serve` as the first
/// argument: listens on `127.0.0.1:$PORT` (3000 by default) until Ctrl-C. Without: starts on a
/// free port, sends it [the demo's requests](send_demo_orders), waits for the outbox to drain
/// and stops.
pub async fn run<S, F>(example: &str, start: impl FnOnce(SocketAddr) -> F) -> Result<(), BoxError>
where
    S: Service,
    F: Future<Output = Result<S, BoxError>>,
{
    if std::env::args().nth(1).as_deref() == Some("serve") {
        let port = match std::env::var("PORT") {
            Ok(port) => port
                .parse()
                .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
            Err(_) => 3000,
        };
        let service = start(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        eprintln!(
            "{example}: listening on http://{} (Ctrl-C stops)",
            service.addr()
        );
        tokio::signal::ctrl_c().await?;
        return service.stop().await;
    }
    let service = start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    send_demo_orders(service.addr(), example).await?;
    service.drained(Duration::from_secs(30)).await?;
    service.stop().await?;
    eprintln!("{example}: outbox drained; the refused order's event was never committed");
    Ok(())
}

/// The database a web example runs on: `DATABASE_URL` when set and not empty, otherwise a SQLite file in a
/// directory of its own under the system's temporary directory, removed when this is dropped.
#[derive(Debug)]
pub struct ExampleDatabase {
    /// `DATABASE_URL`, or the SQLite file's `sqlite://…?mode=rwc` URL.
    pub url: String,
    /// The SQLite file's path, when it is one.
    pub sqlite_file: Option<std::path::PathBuf>,
    scratch: Option<std::path::PathBuf>,
}

impl ExampleDatabase {
    /// `DATABASE_URL`, or a new SQLite file for `example`.
    pub fn from_env(example: &str) -> std::io::Result<Self> {
        if let Some(url) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            return Ok(Self {
                url,
                sqlite_file: None,
                scratch: None,
            });
        }
        Self::sqlite(example)
    }

    /// A new SQLite file for `example`, whatever `DATABASE_URL` says.
    pub fn sqlite(example: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{example}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("orders.db");
        Ok(Self {
            url: format!("sqlite://{}?mode=rwc", file.display()),
            sqlite_file: Some(file),
            scratch: Some(dir),
        })
    }
}

impl Drop for ExampleDatabase {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What each web example's integration test checks, over HTTP, of a service started with
/// `publisher`: an order within the limit answers 201 and is published; one over it answers
/// 422 and is not; a body that is no order is refused with 400 before the handler. Stops the
/// service.
///
/// # Panics
///
/// When any of that does not hold.
pub async fn assert_order_service(service: impl Service, publisher: &CollectingPublisher) {
    let addr = service.addr();
    let (status, body) = post_json(addr, "/orders", r#"{"total_cents":4200}"#)
        .await
        .expect("POST an order");
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""total_cents":4200"#), "{body}");
    let (status, _) = post_json(addr, "/orders", r#"{"total_cents":999999}"#)
        .await
        .expect("POST an order over the limit");
    assert_eq!(status, 422);
    let (status, _) = post_json(addr, "/orders", "not json")
        .await
        .expect("POST a body that is no order");
    assert_eq!(
        status, 400,
        "a body that is no order is refused before the handler"
    );

    service
        .drained(Duration::from_secs(10))
        .await
        .expect("the outbox drains");
    let published = publisher.published();
    assert_eq!(published.len(), 1, "only the committed order's event");
    let event = &published[0];
    assert_eq!(event.event_type, "order.created");
    let payload = String::from_utf8(event.payload.to_vec()).expect("a JSON payload");
    assert!(payload.contains(r#""total_cents":4200"#), "{payload}");
    service.stop().await.expect("the service stops");
}
