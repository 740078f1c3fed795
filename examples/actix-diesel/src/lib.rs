//! The order service of `example-actix-diesel`, as a library so that its test can start it:
//! see `main.rs` for how to run it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, PoolError, PoolableConnection,
};
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use outbox_actix::OutboxMiddleware;
use outbox_diesel::asynchronous::{AsyncDieselPool, AsyncDieselStore, SqliteConnection};
use outbox_diesel::{Inspect, Message, Publisher, Relay, Store};

/// Any error, for `main` and the test.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Orders above this total are refused (after their row and event were written, which then
/// roll back together).
pub const CREDIT_LIMIT_CENTS: i64 = 100_000;

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

/// A diesel-async connection the service runs on: what differs per database is the orders
/// table's SQL (diesel's typed binds need the concrete backend).
pub trait OrdersConnection:
    outbox_diesel::asynchronous::AsyncOutboxConnection + PoolableConnection + 'static
{
    /// The orders table, if missing.
    const CREATE: &'static str;

    /// Writes order `id`.
    fn insert_order(
        &mut self,
        id: i64,
        total_cents: i64,
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;
}

macro_rules! orders {
    ($($conn:ty => $create:literal, $insert:literal;)*) => {$(
        impl OrdersConnection for $conn {
            const CREATE: &'static str = $create;

            async fn insert_order(&mut self, id: i64, total_cents: i64) -> diesel::QueryResult<usize> {
                diesel::sql_query($insert)
                    .bind::<BigInt, _>(id)
                    .bind::<BigInt, _>(total_cents)
                    .execute(self)
                    .await
            }
        }
    )*};
}

orders! {
    AsyncPgConnection =>
        "CREATE TABLE IF NOT EXISTS actix_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
        "INSERT INTO actix_orders (id, total_cents) VALUES ($1, $2)";
    AsyncMysqlConnection =>
        "CREATE TABLE IF NOT EXISTS actix_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
        "INSERT INTO actix_orders (id, total_cents) VALUES (?, ?)";
    SqliteConnection =>
        "CREATE TABLE IF NOT EXISTS actix_orders (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL)",
        "INSERT INTO actix_orders (id, total_cents) VALUES (?, ?)";
}

/// The request's transaction on a deadpool pool of `C`.
type Tx<C> = outbox_actix::Tx<AsyncDieselPool<C>>;

/// `POST /orders`: writes the order and enqueues `order.created` in the request's
/// transaction, which the middleware commits with the 201, or rolls back with the 422.
async fn create_order<C>(
    next_id: web::Data<AtomicI64>,
    mut tx: Tx<C>,
    order: web::Json<NewOrder>,
) -> Result<HttpResponse, outbox_actix::Error>
where
    C: OrdersConnection,
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = PoolError>,
{
    let order_id = next_id.fetch_add(1, Ordering::Relaxed);
    tx.insert_order(order_id, order.total_cents).await?;
    let created = OrderCreated {
        order_id,
        total_cents: order.total_cents,
    };
    tx.enqueue(Message::json("order.created", &created)?.key(order_id)?)?;
    if order.total_cents > CREDIT_LIMIT_CENTS {
        // The row and the event were written; the 422 rolls both back.
        return Err(outbox_actix::Error::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the order is over the credit limit",
        ));
    }
    Ok(HttpResponse::Created().json(created))
}

/// The service, running: its address, and what stops it.
pub struct Running<C>
where
    C: OrdersConnection,
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = PoolError>,
{
    addr: SocketAddr,
    store: AsyncDieselStore<C>,
    server: actix_web::dev::ServerHandle,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_relay: tokio::sync::oneshot::Sender<()>,
    relay: tokio::task::JoinHandle<outbox_diesel::Result<()>>,
}

impl<C> example_support::Service for Running<C>
where
    C: OrdersConnection,
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = PoolError>,
    AsyncDieselStore<C>: Store + Inspect,
{
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn drained(&self, within: Duration) -> Result<(), BoxError> {
        example_support::drained(&self.store, within).await
    }

    /// Stops the relay, then the server (finishing the requests in flight). The relay goes
    /// first: it shares the pool, and connections the workers opened die with the workers'
    /// runtimes. Events committed after it stopped wait in the outbox for the next start.
    async fn stop(self) -> Result<(), BoxError> {
        let _ = self.stop_relay.send(());
        self.relay.await??;
        self.server.stop(true).await;
        self.serving.await??;
        Ok(())
    }
}

/// Creates the schema on `pool`, starts the relay (publishing with `publisher`) and the HTTP
/// service on `addr`.
pub async fn start<C, P>(
    pool: Pool<C>,
    publisher: P,
    addr: SocketAddr,
) -> Result<Running<C>, BoxError>
where
    C: OrdersConnection,
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = PoolError>,
    AsyncDieselStore<C>: Store + Inspect,
    P: Publisher,
{
    // Once at start-up: the outbox table (idempotent) and the application's own.
    let mut conn = pool.get().await?;
    outbox_diesel::asynchronous::migrate(&mut *conn).await?;
    conn.batch_execute(C::CREATE).await?;
    drop(conn);

    // The relay, in-process. The middleware wakes it after every commit; its poll is a
    // backstop.
    let store = AsyncDieselStore::new(pool.clone());
    let relay = Relay::builder(store.clone(), publisher)
        .poll_interval(Duration::from_secs(1))
        .build()?;
    let middleware = OutboxMiddleware::new(AsyncDieselPool::from(pool)).wake(relay.wake_handle());
    let (stop_relay, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(async move { relay.run(async move { drop(stopped.await) }).await });

    // A fresh id range each run, so that it can run again on the same database.
    let first_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        * 1_000;
    let next_id = web::Data::from(Arc::new(AtomicI64::new(first_id)));
    let listener = std::net::TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(next_id.clone())
            .route("/orders", web::post().to(create_order::<C>))
            .wrap(middleware.clone())
    })
    .workers(2)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    Ok(Running {
        addr,
        store,
        server: handle,
        serving: tokio::spawn(server),
        stop_relay,
        relay,
    })
}
