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

use std::time::Duration;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolError};
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection};
use example_actix_diesel::{BoxError, OrdersConnection, start};
use example_support::ExampleDatabase;
use outbox_diesel::asynchronous::{AsyncDieselStore, SqliteConnection, sqlite_manager};
use outbox_diesel::{Inspect, Publisher, Store};
use outbox_publishers::{JsonLinesPublisher, NatsPublisher};

const NAME: &str = "example-actix-diesel";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let database = ExampleDatabase::from_env(NAME)?;
    match std::env::var("NATS_URL") {
        Ok(nats) => dispatch(&database, NatsPublisher::connect(&nats).await?).await,
        Err(_) => dispatch(&database, JsonLinesPublisher::stdout()).await,
    }
}

/// Runs the service on the database `DATABASE_URL` names, or on a SQLite file: diesel's
/// connection type is chosen at run time.
async fn dispatch<P: Publisher>(database: &ExampleDatabase, publisher: P) -> Result<(), BoxError> {
    let url = database.url.clone();
    if let Some(file) = &database.sqlite_file {
        let manager = sqlite_manager(file.display().to_string(), Duration::from_secs(5));
        run::<SqliteConnection, P>(Pool::builder(manager).build()?, publisher).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
        run(Pool::builder(manager).build()?, publisher).await
    } else if url.starts_with("mysql://") {
        let manager = AsyncDieselConnectionManager::<AsyncMysqlConnection>::new(url);
        run(Pool::builder(manager).build()?, publisher).await
    } else {
        Err(format!(
            "DATABASE_URL must start with postgres:// or mysql://, got {url:?} (unset it for a SQLite file)"
        )
        .into())
    }
}

async fn run<C, P>(pool: Pool<C>, publisher: P) -> Result<(), BoxError>
where
    C: OrdersConnection,
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = PoolError>,
    AsyncDieselStore<C>: Store + Inspect,
    P: Publisher,
{
    example_support::run(NAME, |addr| start(pool, publisher, addr)).await
}
