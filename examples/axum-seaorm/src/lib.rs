//! The order service of `example-axum-seaorm`, as a library so that its test can start it: see
//! `main.rs` for how to run it.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use outbox_axum::OutboxLayer;
use outbox_seaorm::{Message, OutboxMigration, Publisher, Relay, SeaOrmPool, SeaOrmStore};
use sea_orm::sea_query::IntoIden;
use sea_orm::{ActiveModelTrait, DatabaseConnection, NotSet, Set};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

/// Any error, for `main` and the test.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Orders above this total are refused (after their row and event were written, which then
/// roll back together).
pub const CREDIT_LIMIT_CENTS: i64 = 100_000;

/// The application's own entity: an order, whose id the database assigns. Its model is also
/// what `POST /orders` answers and the `order.created` event's payload.
pub mod order {
    use sea_orm::entity::prelude::*;

    /// An order.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "axum_seaorm_orders")]
    pub struct Model {
        /// The order's id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Its total, in cents.
        pub total_cents: i64,
    }

    /// Orders relate to nothing here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The application's migrations: its orders table (derived from the entity), then the
/// outbox's table. `Migrator::up(&db, None)` runs both, once each. They are recorded in a
/// table of this service's own, so that it can share a database with another sea-orm
/// service (the `example-seaorm` program) without either finding the other's migrations.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOrders), Box::new(OutboxMigration::default())]
    }

    fn migration_table_name() -> sea_orm::DynIden {
        sea_orm::sea_query::Alias::new("axum_seaorm_migrations").into_iden()
    }
}

/// Creates the orders table from [`order::Entity`].
struct CreateOrders;

impl sea_orm_migration::MigrationName for CreateOrders {
    fn name(&self) -> &str {
        "m20261203_000000_create_axum_seaorm_orders"
    }
}

// async-trait's expansion needs the elided lifetime as the trait declares it.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateOrders {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm::DbErr> {
        let schema = sea_orm::Schema::new(manager.get_database_backend());
        manager
            .create_table(
                schema
                    .create_table_from_entity(order::Entity)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm::DbErr> {
        manager
            .drop_table(
                sea_orm::sea_query::Table::drop()
                    .table(order::Entity)
                    .to_owned(),
            )
            .await
    }
}

/// What `POST /orders` takes.
#[derive(Debug, serde::Deserialize)]
pub struct NewOrder {
    /// The order's total, in cents.
    pub total_cents: i64,
}

/// The request's transaction: a sea-orm `DatabaseTransaction`, which `&*tx` lends to
/// `ActiveModel::insert` and `Entity::find`.
type Tx = outbox_axum::Tx<SeaOrmPool>;

/// `POST /orders`: inserts the order and enqueues `order.created` in the request's
/// transaction, which the layer commits with the 201, or rolls back with the 422.
async fn create_order(
    mut tx: Tx,
    Json(order): Json<NewOrder>,
) -> Result<(StatusCode, Json<order::Model>), outbox_axum::Error> {
    let created = order::ActiveModel {
        id: NotSet,
        total_cents: Set(order.total_cents),
    }
    .insert(&*tx)
    .await?;
    tx.enqueue(Message::json("order.created", &created)?.key(created.id)?)?;
    if created.total_cents > CREDIT_LIMIT_CENTS {
        // The row and the event were written; the 422 rolls both back.
        return Err(outbox_axum::Error::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the order is over the credit limit",
        ));
    }
    Ok((StatusCode::CREATED, Json(created)))
}

/// The service, running: its address, and what stops it.
pub struct Running {
    addr: SocketAddr,
    store: SeaOrmStore,
    shutdown: CancellationToken,
    relay: tokio::task::JoinHandle<outbox_seaorm::Result<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl example_support::Service for Running {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn drained(&self, within: Duration) -> Result<(), BoxError> {
        example_support::drained(&self.store, within).await
    }

    async fn stop(self) -> Result<(), BoxError> {
        self.shutdown.cancel();
        self.server.await??;
        self.relay.await??;
        Ok(())
    }
}

/// Migrates `db` (the orders table and the outbox's), starts the relay (publishing with
/// `publisher`) and the HTTP service on `addr`.
pub async fn start<P: Publisher>(
    db: DatabaseConnection,
    publisher: P,
    addr: SocketAddr,
) -> Result<Running, BoxError> {
    Migrator::up(&db, None).await?;

    // The relay, in-process. The layer wakes it after every commit; its poll is a backstop.
    let store = SeaOrmStore::new(db.clone());
    let relay = Relay::builder(store.clone(), publisher)
        .poll_interval(Duration::from_secs(1))
        .build()?;
    let layer = OutboxLayer::new(SeaOrmPool::from(db)).wake(relay.wake_handle());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone().cancelled_owned();
    let relay = tokio::spawn(async move { relay.run(stop).await });

    let router = Router::new()
        .route("/orders", post(create_order))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    Ok(Running {
        addr,
        store,
        shutdown,
        relay,
        server: tokio::spawn(server),
    })
}
