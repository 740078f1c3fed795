//! An order service on actix-web and diesel-async: `POST /orders` writes the order and
//! enqueues `order.created` in the request's transaction (outbox-actix's `OutboxMiddleware`
//! and `Tx`); the middleware commits both with the response and wakes the relay, which runs in
//! the same process.
//!
//! Run with `cargo run -p example-actix-diesel -- serve`, then, in another terminal:
//!
//! ```sh
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' -d '{"total_cents":4200}'
//! # 201, and the relay publishes order.created
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' -d '{"total_cents":999999}'
//! # 422 (over the credit limit): the order's row and its event roll back together
//! ```
//!
//! Without `serve` it starts the service on a free port, sends it those requests itself (three
//! orders and one over the limit), prints the published events and exits once the outbox is
//! drained.
//!
//! With no environment set it uses a SQLite file in a temporary directory (through
//! diesel-async's `SyncConnectionWrapper`), so no server is needed. Set `DATABASE_URL` to a
//! `postgres://` or `mysql://` URL to run it on PostgreSQL or MariaDB/MySQL, and `NATS_URL`
//! (`nats://127.0.0.1:4222`) to publish to NATS JetStream instead of printing one JSON line per
//! event on stdout (create a stream for the subjects first:
//! `nats stream add ORDERS --subjects 'order.>' --defaults`).

use std::net::SocketAddr;
use std::time::Duration;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolError};
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection};
use example_actix_diesel::{BoxError, OrdersConnection, start};
use outbox_diesel::asynchronous::{AsyncDieselStore, SqliteConnection, sqlite_manager};
use outbox_diesel::{Inspect, Publisher, Store};
use outbox_publishers::{JsonLinesPublisher, NatsPublisher};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().nth(1).as_deref() == Some("serve");
    match std::env::var("NATS_URL") {
        Ok(nats) => dispatch(NatsPublisher::connect(&nats).await?, serve).await,
        Err(_) => dispatch(JsonLinesPublisher::stdout(), serve).await,
    }
}

/// Runs the service on the database `DATABASE_URL` names, or on a SQLite file.
async fn dispatch<P: Publisher>(publisher: P, serve: bool) -> Result<(), BoxError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
            run(Pool::builder(manager).build()?, publisher, serve).await
        }
        Ok(url) if url.starts_with("mysql://") => {
            let manager = AsyncDieselConnectionManager::<AsyncMysqlConnection>::new(url);
            run(Pool::builder(manager).build()?, publisher, serve).await
        }
        Ok(url) => Err(format!(
            "DATABASE_URL must start with postgres:// or mysql://, got {url:?} (unset it for SQLite)"
        )
        .into()),
        Err(_) => {
            let dir = std::env::temp_dir().join(format!("outbox-actix-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let file = dir.join("orders.db").display().to_string();
            let pool = Pool::builder(sqlite_manager(file, Duration::from_secs(5))).build()?;
            let result = run::<SqliteConnection, P>(pool, publisher, serve).await;
            let _ = std::fs::remove_dir_all(dir);
            result
        }
    }
}

async fn run<C, P>(pool: Pool<C>, publisher: P, serve: bool) -> Result<(), BoxError>
where
    C: OrdersConnection,
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = PoolError>,
    AsyncDieselStore<C>: Store + Inspect,
    P: Publisher,
{
    if serve {
        let port = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(3000);
        let running = start(pool, publisher, SocketAddr::from(([127, 0, 0, 1], port))).await?;
        eprintln!(
            "example-actix-diesel: listening on http://{} (Ctrl-C stops)",
            running.addr
        );
        tokio::signal::ctrl_c().await?;
        return running.stop().await;
    }
    let running = start(pool, publisher, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    example_support::send_demo_orders(running.addr, "example-actix-diesel").await?;
    running.drained(Duration::from_secs(30)).await?;
    running.stop().await?;
    eprintln!(
        "example-actix-diesel: outbox drained; the refused order's event was never committed"
    );
    Ok(())
}
