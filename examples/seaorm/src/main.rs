//! An order service on sea-orm: an `orders` entity, a `Migrator` that creates its table and the
//! outbox's, and each order and its events committed in one `db.transaction(|txn| ..)`; the
//! relay, in the same process, publishes them.
//!
//! Run with `cargo run -p example-seaorm`.
//!
//! With no environment set it uses a SQLite file in a temporary directory, so no server is
//! needed. Set `DATABASE_URL` to a `postgres://` or `mysql://` URL to run the same program on
//! PostgreSQL or MariaDB/MySQL: as with sea-orm, the database is chosen at run time.
//!
//! It places three orders (two events each, on the order's key), lets a fourth fail inside its
//! transaction (its row and its event roll back together), and prints one JSON line per
//! published event on stdout. It exits once the outbox is drained.

use std::time::Duration;

use outbox_publishers::JsonLinesPublisher;
use outbox_seaorm::{Inspect, Message, OutboxMigration, Relay, SeaOrmStore};
use sea_orm::{ActiveModelTrait, Database, DatabaseConnection, Set, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The application's own entity (sea-orm's derive makes its items `pub`).
#[allow(unreachable_pub)]
mod order {
    use sea_orm::entity::prelude::*;

    /// An order.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "seaorm_orders")]
    pub struct Model {
        /// The order's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// Its total, in cents.
        pub total_cents: i64,
    }

    /// Orders relate to nothing here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The application's migrations: its own table, then the outbox's.
mod migration {
    use sea_orm_migration::prelude::*;

    /// Creates the `seaorm_orders` table.
    pub(crate) struct CreateOrders;

    impl MigrationName for CreateOrders {
        fn name(&self) -> &str {
            "m20261201_000000_create_seaorm_orders"
        }
    }

    // async-trait's expansion needs the elided lifetime as the trait declares it.
    #[allow(elided_lifetimes_in_paths)]
    #[async_trait::async_trait]
    impl MigrationTrait for CreateOrders {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("seaorm_orders")
                        .if_not_exists()
                        .col(ColumnDef::new("id").big_integer().not_null().primary_key())
                        .col(ColumnDef::new("total_cents").big_integer().not_null())
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("seaorm_orders").to_owned())
                .await
        }
    }
}

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(migration::CreateOrders),
            Box::new(OutboxMigration::default()),
        ]
    }
}

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

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") || url.starts_with("mysql://") => {
            run(Database::connect(url).await?).await
        }
        Ok(url) => Err(format!(
            "DATABASE_URL must start with postgres:// or mysql://, got {url:?} (unset it for SQLite)"
        )
        .into()),
        Err(_) => {
            let dir =
                std::env::temp_dir().join(format!("outbox-example-seaorm-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}?mode=rwc", dir.join("orders.db").display());
            let result = run(Database::connect(url).await?).await;
            let _ = std::fs::remove_dir_all(dir);
            result
        }
    }
}

fn order_events(order_id: i64, total_cents: i64) -> Result<[Message; 2], BoxError> {
    let key = format!("order-{order_id}");
    Ok([
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
    ])
}

async fn run(db: DatabaseConnection) -> Result<(), BoxError> {
    // Once at start-up: the application's table and the outbox's (both idempotent).
    Migrator::up(&db, None).await?;

    // The relay, in process; woken after each commit, polling only as a backstop.
    let store = SeaOrmStore::new(db.clone());
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
        let events = order_events(order_id, total_cents)?;
        db.transaction::<_, (), BoxError>(|txn| {
            Box::pin(async move {
                order::ActiveModel {
                    id: Set(order_id),
                    total_cents: Set(total_cents),
                }
                .insert(txn)
                .await?;
                outbox_seaorm::enqueue_all(txn, events).await?;
                Ok(())
            })
        })
        .await?;
        wake.wake();
    }

    // An order whose payment check fails after its event was enqueued: the closure's error
    // rolls back the order row and the event together.
    let order_id = first + 3;
    let [placed, _] = order_events(order_id, 999_999)?;
    let declined = db
        .transaction::<_, (), BoxError>(|txn| {
            Box::pin(async move {
                order::ActiveModel {
                    id: Set(order_id),
                    total_cents: Set(999_999),
                }
                .insert(txn)
                .await?;
                outbox_seaorm::enqueue(txn, placed).await?;
                Err("payment declined".into())
            })
        })
        .await;
    eprintln!(
        "example-seaorm: the fourth order was rolled back: {}",
        declined.unwrap_err()
    );

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
        "example-seaorm: outbox drained; 6 events published, the declined order's never written"
    );
    Ok(())
}
