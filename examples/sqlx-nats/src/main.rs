//! An order service: the order and its event commit together, and a relay publishes the event.

use outbox_publishers::NatsPublisher;
use outbox_sqlx::{Message, PgStore, Relay};

#[derive(serde::Serialize)]
struct Order {
    id: i64,
    total: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = sqlx::PgPool::connect(&url).await?;

    // Once at start-up: the outbox table (idempotent), and here the application's own table.
    let store = PgStore::new(pool.clone());
    store.migrate().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS orders \
         (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, total BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await?;

    // Relay: in-process here, or in a process of its own. It starts even while NATS is down,
    // and publishes once it is up.
    let publisher = NatsPublisher::connect("127.0.0.1:4222").await?;
    let relay = Relay::builder(store, publisher).batch_size(500).build()?;
    let wake = relay.wake_handle();
    let relay = tokio::spawn(async move {
        relay
            .run(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
            .await
    });

    // Producer: inside the transaction you already have.
    let mut tx = pool.begin().await?;
    let total = 1999;
    let id: i64 = sqlx::query_scalar("INSERT INTO orders (total) VALUES ($1) RETURNING id")
        .bind(total)
        .fetch_one(&mut *tx)
        .await?;
    let order = Order { id, total };
    outbox_sqlx::enqueue(
        &mut *tx,
        Message::json("order.created", &order)?.key(order.id)?,
    )
    .await?;
    tx.commit().await?;
    wake.wake();

    relay.await??; // until Ctrl-C
    Ok(())
}
