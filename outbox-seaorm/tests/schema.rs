//! `OutboxMigration` in a `Migrator` creates the table and drops it again, and the entities
//! read what enqueue wrote, on each database: the default `outbox` table in a schema
//! (PostgreSQL), database (MySQL) or file (SQLite) of its own.

use outbox_seaorm::{Error, Message, OutboxMigration};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(OutboxMigration::default())]
    }
}

type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Migrates up, enqueues two messages through the free functions, reads them back through
/// `$entity`, then migrates down.
macro_rules! migrates_and_reads_what_enqueue_wrote {
    ($db:expr, $entity:ident) => {{
        let db: DatabaseConnection = $db;
        Migrator::up(&db, None).await.unwrap();
        let applied = Migrator::get_applied_migrations(&db).await.unwrap();
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].name(), "m20261201_000001_create_outbox");
        let keyed = Message::json("order.created", &serde_json::json!({"id": 7}))
            .unwrap()
            .key(7)
            .unwrap();
        let unkeyed = Message::json("stock.low", &serde_json::json!({})).unwrap();
        db.transaction::<_, (), AppError>(|txn| {
            Box::pin(async move {
                outbox_seaorm::enqueue(txn, keyed).await?;
                outbox_seaorm::enqueue_all(txn, [unkeyed]).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
        let rows = $entity::Entity::find()
            .filter($entity::Column::State.eq(0))
            .order_by_asc($entity::Column::Id)
            .all(&db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].id < rows[1].id, "ids follow enqueue order: {rows:?}");
        assert_eq!(
            (rows[0].event_type.as_str(), rows[0].partition_key.as_deref()),
            ("order.created", Some("7"))
        );
        assert_eq!((rows[0].attempts, rows[0].last_error.as_deref()), (0, None));
        assert_eq!(rows[0].payload, br#"{"id":7}"#);
        assert!(rows[0].available_at >= rows[0].created_at);
        assert_eq!(
            (rows[1].event_type.as_str(), rows[1].partition_key.as_deref()),
            ("stock.low", None)
        );
        Migrator::down(&db, None).await.unwrap();
        let after = Message::json("order.created", &serde_json::json!({})).unwrap();
        let err = outbox_seaorm::enqueue(&db, after).await.unwrap_err();
        assert!(matches!(err, Error::MissingTable { .. }), "{err}");
        db
    }};
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres() {
    use outbox_seaorm::entity::postgres as outbox;
    use outbox_sqlx::testing::{POSTGRES_DEFAULT, url};
    let url = url("OUTBOX_TEST_POSTGRES_URL", POSTGRES_DEFAULT);
    // One connection, so that its search path holds for every statement.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"));
    let db = DatabaseConnection::from(pool);
    let schema = outbox_core::testing::fresh_table();
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!("SET search_path TO {schema}"),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    let db = migrates_and_reads_what_enqueue_wrote!(db, outbox);
    db.execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql() {
    use outbox_seaorm::entity::mysql as outbox;
    use outbox_sqlx::testing::{MYSQL_DEFAULT, url};
    let url = url("OUTBOX_TEST_MYSQL_URL", MYSQL_DEFAULT);
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("MariaDB/MySQL is not reachable at {url}: {e}"));
    let db = DatabaseConnection::from(pool);
    let database = outbox_core::testing::fresh_table();
    for sql in [
        format!("CREATE DATABASE {database}"),
        format!("USE {database}"),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    let db = migrates_and_reads_what_enqueue_wrote!(db, outbox);
    db.execute_unprepared(&format!("DROP DATABASE {database}"))
        .await
        .unwrap();
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite() {
    use outbox_seaorm::entity::sqlite as outbox;
    let path = outbox_core::testing::sqlite_file("outbox-seaorm-tests");
    let pool = outbox_sqlx::testing::sqlite_pool(&path).await;
    migrates_and_reads_what_enqueue_wrote!(DatabaseConnection::from(pool), outbox);
}
