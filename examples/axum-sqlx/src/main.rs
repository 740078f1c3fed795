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

use std::net::SocketAddr;
use std::time::Duration;

use example_axum_sqlx::{BoxError, MYSQL, OrdersSql, POSTGRES, SQLITE, start};
use outbox_publishers::{JsonLinesPublisher, NatsPublisher};
use outbox_sqlx::{OutboxConnection, OutboxDatabase, Publisher};
use sqlx::{Database, Executor, IntoArguments, Pool};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().nth(1).as_deref() == Some("serve");
    let mut scratch = None;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            let dir = std::env::temp_dir().join(format!("outbox-axum-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}?mode=rwc", dir.join("orders.db").display());
            scratch = Some(dir);
            url
        }
    };
    let result = match std::env::var("NATS_URL") {
        Ok(nats) => dispatch(&url, NatsPublisher::connect(&nats).await?, serve).await,
        Err(_) => dispatch(&url, JsonLinesPublisher::stdout(), serve).await,
    };
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// Runs the service on the database `url` names.
async fn dispatch<P: Publisher>(url: &str, publisher: P, serve: bool) -> Result<(), BoxError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        run(
            sqlx::PgPool::connect(url).await?,
            POSTGRES,
            publisher,
            serve,
        )
        .await
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        run(
            sqlx::MySqlPool::connect(&url).await?,
            MYSQL,
            publisher,
            serve,
        )
        .await
    } else if url.starts_with("sqlite:") {
        run(
            sqlx::SqlitePool::connect(url).await?,
            SQLITE,
            publisher,
            serve,
        )
        .await
    } else {
        Err("DATABASE_URL must start with postgres://, mysql:// or sqlite:".into())
    }
}

async fn run<DB, P>(
    pool: Pool<DB>,
    sql: OrdersSql,
    publisher: P,
    serve: bool,
) -> Result<(), BoxError>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    P: Publisher,
{
    if serve {
        let port = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(3000);
        let running = start(
            pool,
            sql,
            publisher,
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .await?;
        eprintln!(
            "example-axum-sqlx: listening on http://{} (Ctrl-C stops)",
            running.addr
        );
        return running.until_ctrl_c().await;
    }
    let running = start(pool, sql, publisher, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    example_support::send_demo_orders(running.addr, "example-axum-sqlx").await?;
    running.drained(Duration::from_secs(30)).await?;
    running.stop().await?;
    eprintln!("example-axum-sqlx: outbox drained; the refused order's event was never committed");
    Ok(())
}
