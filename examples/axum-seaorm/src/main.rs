//! An order service on axum and sea-orm: `POST /orders` inserts an `order::ActiveModel` and
//! enqueues `order.created` in the request's transaction (outbox-axum's `OutboxLayer` and
//! `Tx`); the layer commits both with the response and wakes the relay, which runs in the same
//! process. A sea-orm `Migrator` creates the orders table and the outbox's at start-up.
//!
//! Run with `cargo run -p example-axum-seaorm -- serve`, then, in another terminal:
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
//! With no environment set it uses a SQLite file in a temporary directory, so no server is
//! needed. Set `DATABASE_URL` to a `postgres://` or `mysql://` URL to run it on PostgreSQL or
//! MariaDB/MySQL (as with sea-orm, the database is chosen at run time), and `NATS_URL`
//! (`nats://127.0.0.1:4222`) to publish to NATS JetStream instead of printing one JSON line per
//! event on stdout (create a stream for the subjects first:
//! `nats stream add ORDERS --subjects 'order.>' --defaults`).

use example_axum_seaorm::{BoxError, start};
use example_support::ExampleDatabase;
use outbox_publishers::{JsonLinesPublisher, NatsPublisher};
use outbox_seaorm::Publisher;

const NAME: &str = "example-axum-seaorm";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let database = ExampleDatabase::from_env(NAME)?;
    match std::env::var("NATS_URL") {
        Ok(nats) => run(&database, NatsPublisher::connect(&nats).await?).await,
        Err(_) => run(&database, JsonLinesPublisher::stdout()).await,
    }
}

async fn run(database: &ExampleDatabase, publisher: impl Publisher) -> Result<(), BoxError> {
    let url = &database.url;
    if !["postgres://", "postgresql://", "mysql://", "sqlite:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Err(format!(
            "DATABASE_URL must start with postgres://, mysql:// or sqlite:, got {url:?} (unset it for a SQLite file)"
        )
        .into());
    }
    let db = sea_orm::Database::connect(url.as_str()).await?;
    example_support::run(NAME, |addr| start(db, publisher, addr)).await
}
