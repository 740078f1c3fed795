//! An order service on synchronous diesel: each order and its events commit in one diesel
//! transaction, and the relay, on a thread with a tokio runtime of its own, publishes them.
//!
//! Run with `cargo run -p example-diesel`.
//!
//! With no environment set it uses a SQLite file in a temporary directory, so no server is
//! needed. Set `DATABASE_URL` to a `postgres://` or `mysql://` URL to run the same program on
//! PostgreSQL or MariaDB/MySQL.
//!
//! It places three orders (two events each, on the order's key), lets a fourth fail inside its
//! transaction (its row and its event roll back together), and prints one JSON line per
//! published event on stdout. It exits once the outbox is drained.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel::sql_types::BigInt;
use outbox_diesel::{DieselStore, Inspect, Message, OutboxConnection, Relay, SqliteSetup};
use outbox_publishers::JsonLinesPublisher;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(serde::Serialize)]
struct OrderPlaced {
    order_id: i64,
    total_cents: i64,
}

#[derive(serde::Serialize)]
struct PaymentRequested {
    order_id: i64,
    amount_cents: i64,
}

/// The application's own table on one database: its schema, and its INSERT in that
/// database's placeholder style.
struct Orders<C> {
    create: &'static str,
    insert: fn(&mut C, i64, i64) -> QueryResult<usize>,
}

fn main() -> Result<(), BoxError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let orders = Orders::<PgConnection> {
                create: "CREATE TABLE IF NOT EXISTS diesel_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
                insert: |conn, id, total| {
                    diesel::sql_query("INSERT INTO diesel_orders (id, total_cents) VALUES ($1, $2)")
                        .bind::<BigInt, _>(id)
                        .bind::<BigInt, _>(total)
                        .execute(conn)
                },
            };
            run(Pool::builder().build(ConnectionManager::new(url))?, &orders)
        }
        Ok(url) if url.starts_with("mysql://") => {
            let orders = Orders::<MysqlConnection> {
                create: "CREATE TABLE IF NOT EXISTS diesel_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
                insert: |conn, id, total| {
                    diesel::sql_query("INSERT INTO diesel_orders (id, total_cents) VALUES (?, ?)")
                        .bind::<BigInt, _>(id)
                        .bind::<BigInt, _>(total)
                        .execute(conn)
                },
            };
            run(Pool::builder().build(ConnectionManager::new(url))?, &orders)
        }
        Ok(url) => Err(format!("DATABASE_URL must start with postgres:// or mysql://, got {url:?} (unset it for SQLite)").into()),
        Err(_) => {
            let dir = std::env::temp_dir().join(format!("outbox-example-diesel-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let orders = Orders::<SqliteConnection> {
                create: "CREATE TABLE IF NOT EXISTS diesel_orders (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL)",
                insert: |conn, id, total| {
                    diesel::sql_query("INSERT INTO diesel_orders (id, total_cents) VALUES (?, ?)")
                        .bind::<BigInt, _>(id)
                        .bind::<BigInt, _>(total)
                        .execute(conn)
                },
            };
            let pool = Pool::builder()
                .connection_customizer(Box::new(SqliteSetup::default()))
                .build(ConnectionManager::new(dir.join("orders.db").display().to_string()))?;
            let result = run(pool, &orders);
            let _ = std::fs::remove_dir_all(dir);
            result
        }
    }
}

fn run<C>(pool: Pool<ConnectionManager<C>>, orders: &Orders<C>) -> Result<(), BoxError>
where
    C: OutboxConnection + R2D2Connection + 'static,
{
    let mut pooled = pool.get()?;
    let conn: &mut C = &mut pooled;
    // Once at start-up: the outbox table (idempotent) and the application's own table.
    outbox_diesel::migrate(conn)?;
    conn.batch_execute(orders.create)?;

    // The relay, on a thread with a runtime of its own; the application stays synchronous.
    let store: DieselStore<C> = DieselStore::new(pool.clone());
    let relay = Relay::builder(store.clone(), JsonLinesPublisher::stdout())
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let wake = relay.wake_handle();
    let runtime = tokio::runtime::Runtime::new()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay_thread = std::thread::spawn({
        let handle = runtime.handle().clone();
        move || handle.block_on(relay.run(async move { drop(stopped.await) }))
    });

    // A fresh id range each run, so the example can run again on the same database.
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        * 10;
    for (n, total_cents) in [4_200, 1_999, 650].into_iter().enumerate() {
        let order_id = first + n as i64;
        conn.transaction::<_, BoxError, _>(|conn| {
            (orders.insert)(conn, order_id, total_cents)?;
            let key = format!("order-{order_id}");
            outbox_diesel::enqueue_all(
                conn,
                [
                    Message::json(
                        "order.placed",
                        &OrderPlaced {
                            order_id,
                            total_cents,
                        },
                    )?
                    .key(&key)?,
                    Message::json(
                        "payment.requested",
                        &PaymentRequested {
                            order_id,
                            amount_cents: total_cents,
                        },
                    )?
                    .key(&key)?,
                ],
            )?;
            Ok(())
        })?;
        wake.wake();
    }

    // An order whose payment check fails after its event was enqueued: the closure's error
    // rolls back the order row and the event together.
    let declined = conn.transaction::<(), BoxError, _>(|conn| {
        let order_id = first + 3;
        (orders.insert)(conn, order_id, 999_999)?;
        outbox_diesel::enqueue(
            conn,
            Message::json(
                "order.placed",
                &OrderPlaced {
                    order_id,
                    total_cents: 999_999,
                },
            )?
            .key(format!("order-{order_id}"))?,
        )?;
        Err("payment declined".into())
    });
    eprintln!(
        "example-diesel: the fourth order was rolled back: {}",
        declined.unwrap_err()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = runtime.block_on(store.stats())?;
        if stats.unpublished() == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the outbox was not drained within 30 s: {stats:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = stop.send(());
    relay_thread
        .join()
        .map_err(|_| "the relay thread panicked")??;
    eprintln!(
        "example-diesel: outbox drained; 6 events published, the declined order's never written"
    );
    Ok(())
}
