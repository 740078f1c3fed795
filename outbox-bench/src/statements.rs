//! Counts the statements a client sends, with a loopback proxy that reads the PostgreSQL wire
//! protocol between the client and the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use outbox_sqlx::Outbox;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, Postgres};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::BoxError;

/// Forwards one client connection to `upstream`, counting Execute (`E`) and simple Query (`Q`)
/// messages from the client.
async fn proxy(
    client: TcpStream,
    upstream: String,
    executed: Arc<AtomicU64>,
) -> Result<(), BoxError> {
    let server = TcpStream::connect(upstream).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let to_client =
        tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    // The startup message has no type byte; every later message is type, length, body.
    let len = client_read.read_i32().await?;
    let mut body = vec![0; len as usize - 4];
    client_read.read_exact(&mut body).await?;
    server_write.write_i32(len).await?;
    server_write.write_all(&body).await?;
    while let Ok(kind) = client_read.read_u8().await {
        let len = client_read.read_i32().await?;
        let mut body = vec![0; len as usize - 4];
        client_read.read_exact(&mut body).await?;
        if kind == b'E' || kind == b'Q' {
            executed.fetch_add(1, Ordering::Relaxed);
        }
        server_write.write_u8(kind).await?;
        server_write.write_i32(len).await?;
        server_write.write_all(&body).await?;
    }
    to_client.abort();
    Ok(())
}

/// Statements sent by `enqueue_all` of `n` messages inside an open transaction.
pub(crate) async fn enqueue_all(
    url: &str,
    outbox: &Outbox<Postgres>,
    n: usize,
) -> Result<u64, BoxError> {
    let options: PgConnectOptions = url.parse()?;
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let executed = Arc::new(AtomicU64::new(0));
    let accept = tokio::spawn({
        let executed = Arc::clone(&executed);
        async move {
            let (client, _) = listener.accept().await?;
            proxy(client, upstream, executed).await
        }
    });
    let mut conn = options
        .host("127.0.0.1")
        .port(port)
        .ssl_mode(PgSslMode::Disable)
        .connect()
        .await?;
    let mut tx = conn.begin().await?;
    let messages = crate::backend::batch_messages(n)?;
    // Count from a quiet point: after BEGIN has been sent and answered.
    let before = executed.load(Ordering::Relaxed);
    outbox.enqueue_all(&mut *tx, messages).await?;
    let sent = executed.load(Ordering::Relaxed) - before;
    tx.rollback().await?;
    conn.close().await?;
    accept.abort();
    Ok(sent)
}
