//! What the web examples share: the plain HTTP/1.1 client their demo mode sends its requests
//! with, as `curl` would, the demo's requests, and the wait for the outbox to drain.

use std::net::SocketAddr;
use std::time::Duration;

use outbox_core::Inspect;

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
