//! What the HTTP suites share: a server on a loopback port, a plain HTTP/1.1 client, and a
//! pool wrapper that counts what the unit of work asks of the database.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outbox_core::sql::{DbError, Dialect, Executor, Query, Rows, TransactionPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `app` on a free loopback port until the test ends.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Opens a connection and sends `method path` with an empty body.
pub async fn open(addr: SocketAddr, method: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Sends `method path` and reads the response: its status and body.
pub async fn send(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = open(addr, method, path).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("no response to {method} {path} within 30s"))
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `check` every 10 ms until it holds or `within` has passed; whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a [`Counting`] pool has been asked for.
#[derive(Debug, Default)]
pub struct Counts {
    pub begins: AtomicUsize,
    /// Statements the unit of work sent through its executor (the outbox's, not the handler's).
    pub outbox_statements: AtomicUsize,
    pub commits: AtomicUsize,
    pub rollbacks: AtomicUsize,
    /// How long each commit waits before it is sent.
    pub commit_delay_ms: AtomicU64,
}

impl Counts {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// A real pool that counts begins, the outbox's statements, commits and rollbacks.
#[derive(Debug, Clone)]
pub struct Counting<P> {
    pub inner: P,
    pub counts: Arc<Counts>,
}

impl<P> Counting<P> {
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }
}

pub struct CountingTx<T> {
    tx: T,
    counts: Arc<Counts>,
}

impl<T> CountingTx<T> {
    /// A transaction begun outside the pool, counted by `pool`.
    pub fn wrap<P>(tx: T, pool: &Counting<P>) -> Self {
        Self {
            tx,
            counts: Arc::clone(&pool.counts),
        }
    }
}

struct CountingExecutor<'a, E> {
    inner: E,
    counts: &'a Counts,
}

impl<E: Executor> Executor for CountingExecutor<'_, E> {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        self.counts.outbox_statements.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(query)
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        self.counts.outbox_statements.fetch_add(1, Ordering::SeqCst);
        self.inner.execute(query)
    }
}

impl<P: TransactionPool> TransactionPool for Counting<P> {
    type Transaction = CountingTx<P::Transaction>;
    type Connection = P::Connection;

    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    async fn begin(&self) -> Result<Self::Transaction, DbError> {
        self.counts.begins.fetch_add(1, Ordering::SeqCst);
        Ok(CountingTx {
            tx: self.inner.begin().await?,
            counts: Arc::clone(&self.counts),
        })
    }

    fn connection(tx: &Self::Transaction) -> &Self::Connection {
        P::connection(&tx.tx)
    }

    fn connection_mut(tx: &mut Self::Transaction) -> &mut Self::Connection {
        P::connection_mut(&mut tx.tx)
    }

    fn executor(tx: &mut Self::Transaction) -> impl Executor + '_ {
        CountingExecutor {
            inner: P::executor(&mut tx.tx),
            counts: &tx.counts,
        }
    }

    async fn commit(tx: Self::Transaction) -> Result<(), DbError> {
        tx.counts.commits.fetch_add(1, Ordering::SeqCst);
        let delay = tx.counts.commit_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        P::commit(tx.tx).await
    }

    async fn rollback(tx: Self::Transaction) -> Result<(), DbError> {
        tx.counts.rollbacks.fetch_add(1, Ordering::SeqCst);
        P::rollback(tx.tx).await
    }
}
