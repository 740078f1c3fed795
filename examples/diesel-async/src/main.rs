//! An order service on diesel-async: each order and its events commit in one
//! `conn.transaction(async |conn| ..)`, and the relay, in the same process, publishes them.
//!
//! Run with `cargo run -p example-diesel-async`.
//!
//! With no environment set it uses a SQLite file in a temporary directory (through
//! diesel-async's `SyncConnectionWrapper`), so no server is needed. Set `DATABASE_URL` to a
//! `postgres://` or `mysql://` URL to run the same program on PostgreSQL or MariaDB/MySQL.
//!
//! It places three orders (two events each, on the order's key), lets a fourth fail inside its
//! transaction (its row and its event roll back together), and prints one JSON line per
//! published event on stdout. It exits once the outbox is drained.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl};
use outbox_diesel::asynchronous::{AsyncDieselStore, SqliteConnection, sqlite_manager};
use outbox_diesel::{Inspect, Message, Relay};
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

/// The application's own table: its schema, and its INSERT in the database's placeholder style.
struct Orders {
    create: &'static str,
    insert: &'static str,
}

const SERVER_ORDERS: Orders = Orders {
    create: "CREATE TABLE IF NOT EXISTS diesel_async_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
    insert: "INSERT INTO diesel_async_orders (id, total_cents) VALUES (?, ?)",
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let orders = Orders {
                insert: "INSERT INTO diesel_async_orders (id, total_cents) VALUES ($1, $2)",
                ..SERVER_ORDERS
            };
            let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
            run(Pool::builder(manager).build()?, &orders).await
        }
        Ok(url) if url.starts_with("mysql://") => {
            let manager = AsyncDieselConnectionManager::<AsyncMysqlConnection>::new(url);
            run(Pool::builder(manager).build()?, &SERVER_ORDERS).await
        }
        Ok(url) => Err(format!(
            "DATABASE_URL must start with postgres:// or mysql://, got {url:?} (unset it for SQLite)"
        )
        .into()),
        Err(_) => {
            let dir = std::env::temp_dir()
                .join(format!("outbox-example-diesel-async-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let orders = Orders {
                create: "CREATE TABLE IF NOT EXISTS diesel_async_orders (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL)",
                ..SERVER_ORDERS
            };
            let file = dir.join("orders.db").display().to_string();
            let pool = Pool::builder(sqlite_manager(file, Duration::from_secs(5))).build()?;
            let result = run::<SqliteConnection>(pool, &orders).await;
            let _ = std::fs::remove_dir_all(dir);
            result
        }
    }
}

/// The service on one database: everything the program does once the pool exists.
macro_rules! service {
    ($($conn:ty),*) => {$(
        impl Service for $conn {
            async fn insert_order(&mut self, orders: &Orders, id: i64, total: i64) -> Result<(), BoxError> {
                diesel::sql_query(orders.insert)
                    .bind::<BigInt, _>(id)
                    .bind::<BigInt, _>(total)
                    .execute(self)
                    .await?;
                Ok(())
            }
        }
    )*};
}

/// What differs per connection type: the business INSERT (diesel's typed binds need the
/// concrete backend).
trait Service: outbox_diesel::asynchronous::AsyncOutboxConnection + Sized {
    fn insert_order(
        &mut self,
        orders: &Orders,
        id: i64,
        total: i64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

service!(AsyncPgConnection, AsyncMysqlConnection, SqliteConnection);

async fn run<C>(pool: Pool<C>, orders: &Orders) -> Result<(), BoxError>
where
    C: Service + diesel_async::pooled_connection::PoolableConnection + 'static,
    AsyncDieselStore<C>: outbox_diesel::Store + Inspect,
    AsyncDieselConnectionManager<C>:
        deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
{
    let mut pooled = pool.get().await?;
    let conn: &mut C = &mut pooled;
    // Once at start-up: the outbox table (idempotent) and the application's own table.
    outbox_diesel::asynchronous::migrate(conn).await?;
    conn.batch_execute(orders.create).await?;

    // The relay, in process; woken after each commit, polling only as a backstop.
    let store = AsyncDieselStore::new(pool.clone());
    let relay = Relay::builder(store.clone(), JsonLinesPublisher::stdout())
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let wake = relay.wake_handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { relay.run(async move { drop(stopped.await) }).await });

    // A fresh id range each run, so the example can run again on the same database.
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        * 10;
    for (n, total_cents) in [4_200, 1_999, 650].into_iter().enumerate() {
        let order_id = first + n as i64;
        conn.transaction::<_, BoxError, _>(async |conn| {
            conn.insert_order(orders, order_id, total_cents).await?;
            let key = format!("order-{order_id}");
            outbox_diesel::asynchronous::enqueue_all(
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
            )
            .await?;
            Ok(())
        })
        .await?;
        wake.wake();
    }

    // An order whose payment check fails after its event was enqueued: the closure's error
    // rolls back the order row and the event together.
    let declined = conn
        .transaction::<(), BoxError, _>(async |conn| {
            let order_id = first + 3;
            conn.insert_order(orders, order_id, 999_999).await?;
            let message = Message::json(
                "order.placed",
                &OrderPlaced {
                    order_id,
                    total_cents: 999_999,
                },
            )?
            .key(format!("order-{order_id}"))?;
            outbox_diesel::asynchronous::enqueue(conn, message).await?;
            Err("payment declined".into())
        })
        .await;
    eprintln!(
        "example-diesel-async: the fourth order was rolled back: {}",
        declined.unwrap_err()
    );
    drop(pooled);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = store.stats().await?;
        if stats.unpublished() == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the outbox was not drained within 30 s: {stats:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    running.await??;
    eprintln!(
        "example-diesel-async: outbox drained; 6 events published, the declined order's never written"
    );
    Ok(())
}
