//! The conformance suite and adapter tests on PostgreSQL (`OUTBOX_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`).

mod common;

use common::{POSTGRES_DEFAULT, SqlxBackend, connect_or_explain, stale, url};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Postgres};

async fn pool() -> PgPool {
    let url = url("OUTBOX_TEST_POSTGRES_URL", POSTGRES_DEFAULT);
    let pool = connect_or_explain(
        "PostgreSQL",
        &url,
        PgPoolOptions::new().max_connections(12).connect(&url),
    )
    .await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'outbox\\_t\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in stale(tables) {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS \"{table}\""
            )))
            .await;
    }
    pool
}

async fn backend() -> SqlxBackend<Postgres> {
    SqlxBackend::new("postgres", pool().await, true).await
}

outbox_core::conformance_suite!(backend());

type DbUnderTest = Postgres;

adapter_tests!(
    pool().await,
    "CREATE TABLE \"{}\" (id bigint PRIMARY KEY)",
    "INSERT INTO \"{}\" (id) VALUES ($1)",
    "SELECT count(*) FROM \"{}\""
);
