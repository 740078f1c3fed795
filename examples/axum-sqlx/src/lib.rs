//! The order service of `example-axum-sqlx`, as a library so that its test can start it: see
//! `main.rs` for how to run it.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use outbox_axum::OutboxLayer;
use outbox_sqlx::{
    Message, OutboxConnection, OutboxDatabase, Publisher, Relay, SqlxPool, SqlxStore,
};
use sqlx::{Database, Executor, IntoArguments, Pool};
use tokio_util::sync::CancellationToken;

/// Any error, for `main` and the test.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Orders above this total are refused (after their row and event were written, which then
/// roll back together).
pub const CREDIT_LIMIT_CENTS: i64 = 100_000;

/// The orders table and its INSERT, in the database's own placeholder style.
#[derive(Debug, Clone, Copy)]
pub struct OrdersSql {
    create: &'static str,
    insert: &'static str,
}

/// PostgreSQL's.
pub const POSTGRES: OrdersSql = OrdersSql {
    create: "CREATE TABLE IF NOT EXISTS axum_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
    insert: "INSERT INTO axum_orders (id, total_cents) VALUES ($1, $2)",
};
/// MySQL's and MariaDB's.
pub const MYSQL: OrdersSql = OrdersSql {
    create: "CREATE TABLE IF NOT EXISTS axum_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
    insert: "INSERT INTO axum_orders (id, total_cents) VALUES (?, ?)",
};
/// SQLite's.
pub const SQLITE: OrdersSql = OrdersSql {
    create: "CREATE TABLE IF NOT EXISTS axum_orders (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL)",
    insert: "INSERT INTO axum_orders (id, total_cents) VALUES (?, ?)",
};

/// What `POST /orders` takes.
#[derive(Debug, serde::Deserialize)]
pub struct NewOrder {
    /// The order's total, in cents.
    pub total_cents: i64,
}

/// What `POST /orders` answers, and the `order.created` event's payload.
#[derive(Debug, serde::Serialize)]
pub struct OrderCreated {
    /// The new order's id.
    pub order_id: i64,
    /// Its total, in cents.
    pub total_cents: i64,
}

/// The handlers' state: the orders SQL and the next order id.
#[derive(Clone)]
struct App {
    sql: OrdersSql,
    next_id: Arc<AtomicI64>,
}

/// The request's transaction on a sqlx pool of `DB`.
type Tx<DB> = outbox_axum::Tx<SqlxPool<DB>>;

/// `POST /orders`: writes the order and enqueues `order.created` in the request's
/// transaction, which the layer commits with the 201, or rolls back with the 422.
async fn create_order<DB>(
    State(app): State<App>,
    mut tx: Tx<DB>,
    Json(order): Json<NewOrder>,
) -> Result<(StatusCode, Json<OrderCreated>), outbox_axum::Error>
where
    DB: OutboxDatabase,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let order_id = app.next_id.fetch_add(1, Ordering::Relaxed);
    sqlx::query(app.sql.insert)
        .bind(order_id)
        .bind(order.total_cents)
        .execute(&mut *tx)
        .await?;
    let created = OrderCreated {
        order_id,
        total_cents: order.total_cents,
    };
    tx.enqueue(Message::json("order.created", &created)?.key(order_id)?)?;
    if order.total_cents > CREDIT_LIMIT_CENTS {
        // The row and the event were written; the 422 rolls both back.
        return Err(outbox_axum::Error::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the order is over the credit limit",
        ));
    }
    Ok((StatusCode::CREATED, Json(created)))
}

/// The service, running: its address, and what stops it.
pub struct Running<DB: OutboxDatabase> {
    addr: SocketAddr,
    store: SqlxStore<DB>,
    shutdown: CancellationToken,
    relay: tokio::task::JoinHandle<outbox_sqlx::Result<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl<DB: OutboxDatabase> example_support::Service for Running<DB> {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn drained(&self, within: Duration) -> Result<(), BoxError> {
        example_support::drained(&self.store, within).await
    }

    async fn stop(self) -> Result<(), BoxError> {
        self.shutdown.cancel();
        self.server.await??;
        self.relay.await??;
        Ok(())
    }
}

/// Creates the schema on `pool`, starts the relay (publishing with `publisher`) and the HTTP
/// service on `addr`.
pub async fn start<DB, P>(
    pool: Pool<DB>,
    sql: OrdersSql,
    publisher: P,
    addr: SocketAddr,
) -> Result<Running<DB>, BoxError>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    P: Publisher,
{
    // Once at start-up: the outbox table (idempotent) and the application's own.
    let store = SqlxStore::new(pool.clone());
    store.migrate().await?;
    pool.execute(sql.create).await?;

    // The relay, in-process. The layer wakes it after every commit; its poll is a backstop.
    let relay = Relay::builder(store.clone(), publisher)
        .poll_interval(Duration::from_secs(1))
        .build()?;
    let shutdown = CancellationToken::new();
    let layer = OutboxLayer::new(SqlxPool::from(pool)).wake(relay.wake_handle());
    let stop = shutdown.clone().cancelled_owned();
    let relay = tokio::spawn(async move { relay.run(stop).await });

    // A fresh id range each run, so that it can run again on the same database.
    let first_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        * 1_000;
    let app = App {
        sql,
        next_id: Arc::new(AtomicI64::new(first_id)),
    };
    let router = Router::new()
        .route("/orders", post(create_order::<DB>))
        .with_state(app)
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let server = tokio::spawn(server);
    Ok(Running {
        addr,
        store,
        shutdown,
        relay,
        server,
    })
}
