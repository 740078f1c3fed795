//! The `table!` definitions read what enqueue wrote, with diesel's DSL, on each database: the
//! default `outbox` table in a schema (PostgreSQL), database (MySQL) or file (SQLite) of its
//! own.

use diesel::prelude::*;
use outbox_diesel::Message;

type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Enqueues two messages through the free functions, then reads them back through `$table`.
macro_rules! reads_what_enqueue_wrote {
    ($conn:expr, $table:ident) => {{
        let conn = $conn;
        outbox_diesel::migrate(conn).unwrap();
        let keyed = Message::json("order.created", &serde_json::json!({"id": 7}))
            .unwrap()
            .key(7)
            .unwrap();
        let unkeyed = Message::json("stock.low", &serde_json::json!({})).unwrap();
        conn.transaction::<_, AppError, _>(|conn| {
            outbox_diesel::enqueue(conn, keyed)?;
            outbox_diesel::enqueue_all(conn, [unkeyed])?;
            Ok(())
        })
        .unwrap();
        let rows: Vec<(i64, String, Option<String>, i32)> = $table::table
            .filter($table::state.eq(0))
            .order($table::id)
            .select((
                $table::id,
                $table::event_type,
                $table::partition_key,
                $table::attempts,
            ))
            .load(conn)
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].0 < rows[1].0, "ids follow enqueue order: {rows:?}");
        assert_eq!(
            (rows[0].1.as_str(), rows[0].2.as_deref(), rows[0].3),
            ("order.created", Some("7"), 0)
        );
        assert_eq!(
            (rows[1].1.as_str(), rows[1].2.as_deref()),
            ("stock.low", None)
        );
        let payload: Vec<u8> = $table::table
            .filter($table::event_type.eq("order.created"))
            .select($table::payload)
            .first(conn)
            .unwrap();
        assert_eq!(payload, br#"{"id":7}"#);
    }};
}

#[cfg(feature = "postgres")]
#[test]
fn postgres() {
    use outbox_diesel::schema::pg::outbox;
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
    reads_what_enqueue_wrote!(&mut conn, outbox);
    diesel::sql_query(format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .unwrap();
}

#[cfg(feature = "mysql")]
#[test]
fn mysql() {
    use outbox_diesel::schema::mysql::outbox;
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
    reads_what_enqueue_wrote!(&mut conn, outbox);
    diesel::sql_query(format!("DROP DATABASE {database}"))
        .execute(&mut conn)
        .unwrap();
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite() {
    use outbox_diesel::schema::sqlite::outbox;
    let path = outbox_core::testing::sqlite_file("outbox-diesel-tests");
    let mut conn = SqliteConnection::establish(&path.display().to_string()).unwrap();
    reads_what_enqueue_wrote!(&mut conn, outbox);
}
