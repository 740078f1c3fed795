//! The outbox in one file: enqueue in a transaction, roll one back, relay the rest.
//!
//! Run with `cargo run -p example-quickstart`.
//!
//! With no environment set it uses a SQLite file in a temporary directory, so no server is
//! needed. Set `DATABASE_URL` to a `postgres://` or `mysql://` URL to run the same program on
//! PostgreSQL or MariaDB/MySQL.
//!
//! It creates the schema, commits one order with three messages (two share the order's key),
//! rolls back a second order that also enqueued a message, then runs the relay in-process with
//! the JSON-lines publisher: one line per published message on stdout. It exits once the
//! outbox is drained. The rolled-back message never appears.

use std::time::Duration;

use outbox_publishers::JsonLinesPublisher;
use outbox_sqlx::{Inspect, Message, OutboxConnection, OutboxDatabase, Relay, SqlxStore};
use serde::Serialize;
use sqlx::{Database, Executor, IntoArguments, Pool};

#[derive(Serialize)]
struct OrderPlaced {
    order_id: i64,
    total_cents: i64,
}

#[derive(Serialize)]
struct PaymentRequested {
    order_id: i64,
    amount_cents: i64,
}

#[derive(Serialize)]
struct AuditEntry {
    action: &'static str,
}

/// The business table and its INSERT, in the database's own placeholder style.
struct BusinessSql {
    create: &'static str,
    insert: &'static str,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut scratch = None;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            let dir =
                std::env::temp_dir().join(format!("outbox-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}?mode=rwc", dir.join("quickstart.db").display());
            scratch = Some(dir);
            url
        }
    };
    let result = dispatch(&url).await;
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn dispatch(url: &str) -> Result<(), BoxError> {
    eprintln!("quickstart: database {}", redact(url));
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = sqlx::PgPool::connect(url).await?;
        let sql = BusinessSql {
            create: "CREATE TABLE IF NOT EXISTS quickstart_orders (id bigint PRIMARY KEY, total_cents bigint NOT NULL)",
            insert: "INSERT INTO quickstart_orders (id, total_cents) VALUES ($1, $2)",
        };
        run(pool, sql).await
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let pool = sqlx::MySqlPool::connect(&url.replacen("mariadb://", "mysql://", 1)).await?;
        let sql = BusinessSql {
            create: "CREATE TABLE IF NOT EXISTS quickstart_orders (id BIGINT PRIMARY KEY, total_cents BIGINT NOT NULL)",
            insert: "INSERT INTO quickstart_orders (id, total_cents) VALUES (?, ?)",
        };
        run(pool, sql).await
    } else if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let sql = BusinessSql {
            create: "CREATE TABLE IF NOT EXISTS quickstart_orders (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL)",
            insert: "INSERT INTO quickstart_orders (id, total_cents) VALUES (?, ?)",
        };
        run(pool, sql).await
    } else {
        Err(format!(
            "DATABASE_URL must start with postgres://, mysql:// or sqlite:, got {}",
            redact(url)
        )
        .into())
    }
}

async fn run<DB>(pool: Pool<DB>, sql: BusinessSql) -> Result<(), BoxError>
where
    DB: OutboxDatabase,
    DB::Connection: OutboxConnection<Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    // Schema: the outbox table and the application's own table.
    let store = SqlxStore::new(pool.clone());
    store.migrate().await?;
    pool.execute(sql.create).await?;
    // A fresh id each run, so the example can run again on the same database.
    let order_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        * 10;

    // 1. A committed order: the business row and three messages in one transaction.
    let mut tx = pool.begin().await?;
    sqlx::query(sql.insert)
        .bind(order_id)
        .bind(4_200_i64)
        .execute(&mut *tx)
        .await?;
    let key = format!("order-{order_id}");
    outbox_sqlx::enqueue_all(
        &mut *tx,
        [
            Message::json(
                "order.placed",
                &OrderPlaced {
                    order_id,
                    total_cents: 4_200,
                },
            )?
            .key(&key)?
            .aggregate_type("order")?,
            Message::json(
                "payment.requested",
                &PaymentRequested {
                    order_id,
                    amount_cents: 4_200,
                },
            )?
            .key(&key)?
            .aggregate_type("order")?,
            Message::json(
                "audit.recorded",
                &AuditEntry {
                    action: "order placed",
                },
            )?,
        ],
    )
    .await?;
    tx.commit().await?;

    // 2. A rolled-back order: its message disappears with it.
    let mut tx = pool.begin().await?;
    sqlx::query(sql.insert)
        .bind(order_id + 1)
        .bind(999_i64)
        .execute(&mut *tx)
        .await?;
    outbox_sqlx::enqueue(
        &mut *tx,
        Message::json(
            "order.placed",
            &OrderPlaced {
                order_id: order_id + 1,
                total_cents: 999,
            },
        )?
        .key(format!("order-{}", order_id + 1))?,
    )
    .await?;
    tx.rollback().await?;

    // 3. The relay, in-process, publishing to stdout. It is woken at once; the poll interval is
    //    only a backstop for commits from other processes.
    let relay = Relay::builder(store.clone(), JsonLinesPublisher::stdout())
        .batch_size(100)
        .poll_interval(Duration::from_millis(100))
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let relay = relay.clone();
        async move {
            relay
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        }
    });
    relay.wake_handle().wake();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = store.stats().await?;
        if stats.unpublished() == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("outbox not drained after 30s: {stats:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    running.await??;
    eprintln!("quickstart: outbox drained; the rolled-back order's message was never written");
    Ok(())
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
