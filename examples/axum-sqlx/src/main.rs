//! An order service on axum and sqlx: `POST /orders` writes the order and enqueues
//! `order.created` in the request's transaction (outbox-axum's `OutboxLayer` and `Tx`); the
//! layer commits both with the response and wakes the relay, which runs in the same process.
//!
//! Run with `cargo run -p example-axum-sqlx -- serve`, then, in another terminal:
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
//! MariaDB/MySQL, and `NATS_URL` (`nats://127.0.0.1:4222`) to publish to NATS JetStream instead
//! of printing one JSON line per event on stdout (create a stream for the subjects first:
//! `nats stream add ORDERS --subjects 'order.>' --defaults`).

use example_axum_sqlx::{BoxError, MYSQL, OrdersSql, POSTGRES, SQLITE, start};
use example_support::ExampleDatabase;
use outbox_publishers::{JsonLinesPublisher, NatsPublisher};
use outbox_sqlx::{OutboxConnection, OutboxDatabase, Publisher};
use sqlx::{Database, Executor, IntoArguments, Pool};

const NAME: &str = "example-axum-sqlx";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let database = ExampleDatabase::from_env(NAME)?;
    match std::env::var("NATS_URL") {
        Ok(nats) => dispatch(&database.url, NatsPublisher::connect(&nats).await?).await,
        Err(_) => dispatch(&database.url, JsonLinesPublisher::stdout()).await,
    }
}

/// Runs the service on the database `url` names: sqlx's pool type is chosen at run time.
async fn dispatch<P: Publisher>(url: &str, publisher: P) -> Result<(), BoxError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        run(sqlx::PgPool::connect(url).await?, POSTGRES, publisher).await
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        run(sqlx::MySqlPool::connect(&url).await?, MYSQL, publisher).await
    } else if url.starts_with("sqlite:") {
        run(sqlx::SqlitePool::connect(url).await?, SQLITE, publisher).await
    } else {
        Err(format!(
            "DATABASE_URL must start with postgres://, mysql:// or sqlite:, got {url:?} (unset it for a SQLite file)"
        )
        .into())
    }
}

async fn run<DB, P>(pool: Pool<DB>, sql: OrdersSql, publisher: P) -> Result<(), BoxError>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    P: Publisher,
{
    example_support::run(NAME, |addr| start(pool, sql, publisher, addr)).await
}
