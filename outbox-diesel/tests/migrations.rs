//! `OutboxMigrations` run by diesel_migrations' harness after an application's own
//! `embed_migrations!` source, then reverted and run again, on each database: in a schema
//! (PostgreSQL), database (MySQL) or file (SQLite) of its own.

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use outbox_diesel::{Error, Message, OutboxBackend, OutboxConnection, OutboxMigrations};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations");

fn message() -> Message {
    Message::json("order.created", &serde_json::json!({"id": 7}))
        .unwrap()
        .key(7)
        .unwrap()
}

fn migrates<C>(conn: &mut C)
where
    C: OutboxConnection + MigrationHarness<C::Backend>,
    C::Backend: OutboxBackend + Backend,
{
    let applied = conn.run_pending_migrations(MIGRATIONS).unwrap();
    assert_eq!(applied.len(), 1, "the application's own migration");
    let applied = conn
        .run_pending_migrations(OutboxMigrations::<C::Backend>::default())
        .unwrap();
    assert_eq!(
        applied.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["20261201000001"],
        "the outbox's migration, recorded by its version"
    );
    let versions: Vec<String> = conn
        .applied_migrations()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        !conn
            .has_pending_migration(OutboxMigrations::<C::Backend>::default())
            .unwrap()
    );
    outbox_diesel::enqueue(conn, message()).unwrap();

    let reverted = conn
        .revert_last_migration(OutboxMigrations::<C::Backend>::default())
        .unwrap();
    assert_eq!(reverted.to_string(), "20261201000001");
    let err = outbox_diesel::enqueue(conn, message()).unwrap_err();
    assert!(matches!(err, Error::MissingTable { .. }), "{err}");

    conn.run_pending_migrations(OutboxMigrations::<C::Backend>::default())
        .unwrap();
    outbox_diesel::enqueue(conn, message()).unwrap();
}

#[cfg(feature = "postgres")]
#[test]
fn postgres() {
    let url = std::env::var("OUTBOX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
    let mut conn = PgConnection::establish(&url)
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"));
    let schema = outbox_core::testing::fresh_table();
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!("SET search_path TO {schema}"),
    ] {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    }
    migrates(&mut conn);
    diesel::sql_query(format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .unwrap();
}

#[cfg(feature = "mysql")]
#[test]
fn mysql() {
    let url = std::env::var("OUTBOX_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let mut conn = MysqlConnection::establish(&url)
        .unwrap_or_else(|e| panic!("MariaDB/MySQL is not reachable at {url}: {e}"));
    let database = outbox_core::testing::fresh_table();
    for sql in [
        format!("CREATE DATABASE {database}"),
        format!("USE {database}"),
    ] {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    }
    migrates(&mut conn);
    diesel::sql_query(format!("DROP DATABASE {database}"))
        .execute(&mut conn)
        .unwrap();
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite() {
    let path = outbox_core::testing::sqlite_file("outbox-diesel-tests");
    let mut conn = SqliteConnection::establish(&path.display().to_string()).unwrap();
    migrates(&mut conn);
}
