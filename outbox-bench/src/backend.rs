//! What the bench needs from each database beyond the outbox itself: its DDL, the
//! hand-written baselines, and how to count the statements a transaction sends.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::r2d2::{ConnectionManager, Pool as R2d2Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool as DeadPool;
use outbox_sqlx::sql::{SqlStore, Statements};
use outbox_sqlx::{Message, Outbox, OutboxConnection, OutboxDatabase, Store};
use sqlx::mysql::MySql;
use sqlx::sqlite::Sqlite;
use sqlx::{AssertSqlSafe, Connection, Pool, Postgres, QueryBuilder, Row};

use crate::BoxError;

/// The statements of the enqueue baseline through diesel, on one transaction's connection:
/// the hand-written outbox `INSERT` (its text for a table, and how to run it for a message)
/// and the business `INSERT`.
pub(crate) struct DieselSql<C> {
    pub(crate) hand_written: fn(&str) -> String,
    pub(crate) insert: fn(&mut C, &str, &Message) -> diesel::QueryResult<usize>,
    pub(crate) business: fn(&mut C, &str, i64) -> diesel::QueryResult<usize>,
}

/// [`DieselSql`] for one diesel connection type, with the hand-written `INSERT`'s text.
macro_rules! diesel_sql {
    ($conn:ty, $hand_written:expr) => {
        DieselSql {
            hand_written: $hand_written,
            insert: |conn: &mut $conn, sql: &str, message: &Message| {
                use diesel::RunQueryDsl;
                use diesel::sql_types::{Binary, Nullable, Text};
                diesel::sql_query(sql)
                    .bind::<Text, _>(message.id().to_string())
                    .bind::<Text, _>(message.event_type())
                    .bind::<Nullable<Text>, _>(message.partition_key())
                    .bind::<Nullable<Text>, _>(message.aggregate_type_name())
                    .bind::<Binary, _>(&message.payload()[..])
                    .bind::<Text, _>(message.headers_json())
                    .execute(conn)
            },
            business: |conn: &mut $conn, sql: &str, total: i64| {
                use diesel::RunQueryDsl;
                diesel::sql_query(sql)
                    .bind::<diesel::sql_types::BigInt, _>(total)
                    .execute(conn)
            },
        }
    };
}

/// The hand-written insert with a text id, for MySQL and SQLite, with `now` for the clock.
fn text_id_hand_written(table: &str, now: &str) -> String {
    format!(
        "INSERT INTO {table} (message_id, event_type, partition_key, aggregate_type, payload, \
         headers, created_at, available_at) VALUES (?, ?, ?, ?, ?, ?, {now}, {now})"
    )
}

/// The diesel-async store on the table of `statements`, over a pool of at most `max`
/// connections from `manager`.
fn deadpool_store<C>(
    manager: AsyncDieselConnectionManager<C>,
    max: usize,
    statements: Arc<Statements>,
) -> Result<outbox_diesel::asynchronous::AsyncDieselStore<C>, BoxError>
where
    C: outbox_diesel::asynchronous::AsyncOutboxConnection
        + diesel_async::pooled_connection::PoolableConnection
        + 'static,
    AsyncDieselConnectionManager<C>:
        deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
{
    let pool = DeadPool::builder(manager).max_size(max).build()?;
    Ok(SqlStore::with_statements(pool, statements))
}

/// SQLite's clock in the outbox's unit, microseconds since the epoch.
const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

/// A database the bench runs on.
pub(crate) trait Backend:
    OutboxDatabase + sqlx::Database<Connection: OutboxConnection<Database = Self>>
{
    /// The name `--db` takes.
    const DB_NAME: &'static str;
    /// The first bind parameter's placeholder.
    const PARAM: &'static str = "?";

    /// Runs `sql` without binds and returns the rows it affected.
    fn exec(pool: &Pool<Self>, sql: &str) -> impl Future<Output = Result<u64, BoxError>> + Send;

    /// `outbox` with keyed inserts not locking their keys, where that is an option (MySQL).
    fn without_key_locks(outbox: Outbox<Self>) -> Option<Outbox<Self>> {
        let _ = outbox;
        None
    }

    /// Refreshes the planner's statistics of `table` after a bulk load.
    fn analyze(table: &str) -> String;

    /// The synchronous diesel connection.
    type DieselConn: outbox_diesel::OutboxConnection<Backend: outbox_diesel::OutboxBackend>
        + diesel::r2d2::R2D2Connection
        + 'static;
    /// The enqueue baseline's statements through diesel.
    const DIESEL_SQL: DieselSql<Self::DieselConn>;

    /// The diesel-async adapter's store (over a deadpool pool).
    type DieselAsyncStore: Store + outbox_sqlx::Inspect + Clone;

    /// An r2d2 pool of diesel connections to `url` (a file path on SQLite).
    fn diesel_pool(url: &str) -> Result<R2d2Pool<ConnectionManager<Self::DieselConn>>, BoxError>;

    /// The diesel store on the table of `statements`, at `url`.
    fn diesel_store(
        url: &str,
        statements: Arc<Statements>,
    ) -> Result<outbox_diesel::DieselStore<Self::DieselConn>, BoxError> {
        Ok(SqlStore::with_statements(
            Self::diesel_pool(url)?,
            statements,
        ))
    }

    /// The diesel-async store on the table of `statements`, at `url`.
    fn diesel_async_store(
        url: &str,
        statements: Arc<Statements>,
    ) -> Result<Self::DieselAsyncStore, BoxError>;

    /// A sea-orm connection on `pool` (the sqlx pool sea-orm wraps).
    fn seaorm_db(pool: &Pool<Self>) -> sea_orm::DatabaseConnection;

    /// `CREATE TABLE` for a table with an auto-increment `id` and the given other columns.
    fn create_table(table: &str, columns: &str) -> String;

    /// Inserts one row into the business table, on a transaction's connection.
    fn insert_business(
        conn: &mut Self::Connection,
        sql: &str,
        total: i64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// The hand-written outbox INSERT of `messages`, one row each in one statement: what a
    /// user would write.
    fn insert_by_hand(
        conn: &mut Self::Connection,
        table: &str,
        messages: &[Message],
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// One batch of the bare SQL floor: claims up to `batch` rows in id order, skipping locked
    /// ones, and deletes them. Returns how many it took.
    fn floor_batch(
        pool: &Pool<Self>,
        table: &str,
        batch: usize,
    ) -> impl Future<Output = Result<usize, BoxError>> + Send;

    /// Ids from a `SELECT id, payload ...`.
    fn fetch_ids(
        pool: &Pool<Self>,
        sql: &str,
    ) -> impl Future<Output = Result<Vec<i64>, BoxError>> + Send;

    /// Runs `sql` with `limit` as its one bind and returns how many rows it returned.
    fn fetch_count(
        pool: &Pool<Self>,
        sql: &str,
        limit: usize,
    ) -> impl Future<Output = Result<usize, BoxError>> + Send;

    /// Runs `sql` with `id` as its one bind.
    fn exec_id(
        pool: &Pool<Self>,
        sql: &str,
        id: i64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Statements a transaction sends for `enqueue_all` of `n` messages, counted outside the
    /// library.
    fn batch_statements(
        url: &str,
        pool: &Pool<Self>,
        outbox: &Outbox<Self>,
        n: usize,
    ) -> impl Future<Output = Result<u64, BoxError>> + Send;
}

/// `n` keyed messages for a batch enqueue.
pub(crate) fn batch_messages(n: usize) -> Result<Vec<Message>, BoxError> {
    Ok((0..n)
        .map(|i| Message::json("bench.batch", &serde_json::json!({ "i": i }))?.key(i % 3))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The trait's methods whose code is the same on every database, with its placeholders.
macro_rules! common {
    ($db:ty) => {
        fn seaorm_db(pool: &Pool<$db>) -> sea_orm::DatabaseConnection {
            pool.clone().into()
        }

        fn exec(pool: &Pool<$db>, sql: &str) -> impl Future<Output = Result<u64, BoxError>> + Send {
            let sql = sql.to_owned();
            async move {
                Ok(sqlx::query(AssertSqlSafe(sql))
                    .execute(pool)
                    .await?
                    .rows_affected())
            }
        }

        async fn insert_business(
            conn: &mut <$db as sqlx::Database>::Connection,
            sql: &str,
            total: i64,
        ) -> Result<(), BoxError> {
            sqlx::query(AssertSqlSafe(sql.to_owned()))
                .bind(total)
                .execute(conn)
                .await?;
            Ok(())
        }

        async fn fetch_ids(pool: &Pool<$db>, sql: &str) -> Result<Vec<i64>, BoxError> {
            let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .map(|row| row.try_get::<i64, _>(0))
                .collect::<Result<_, _>>()?)
        }

        async fn fetch_count(pool: &Pool<$db>, sql: &str, limit: usize) -> Result<usize, BoxError> {
            Ok(sqlx::query(AssertSqlSafe(sql.to_owned()))
                .bind(limit as i64)
                .fetch_all(pool)
                .await?
                .len())
        }

        async fn exec_id(pool: &Pool<$db>, sql: &str, id: i64) -> Result<(), BoxError> {
            sqlx::query(AssertSqlSafe(sql.to_owned()))
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        }
    };
}

/// The hand-written INSERT on MySQL and SQLite, which store the message id as text and take
/// timestamps from `$now`.
macro_rules! text_id_insert_by_hand {
    ($db:ty, $now:expr) => {
        async fn insert_by_hand(
            conn: &mut <$db as sqlx::Database>::Connection,
            table: &str,
            messages: &[Message],
        ) -> Result<(), BoxError> {
            let mut insert = QueryBuilder::<$db>::new(format!(
                "INSERT INTO {table} (message_id, event_type, partition_key, aggregate_type, \
                 payload, headers, created_at, available_at) "
            ));
            insert.push_values(messages, |mut row, message| {
                row.push_bind(message.id().to_string())
                    .push_bind(message.event_type())
                    .push_bind(message.partition_key())
                    .push_bind(message.aggregate_type_name())
                    .push_bind(&message.payload()[..])
                    .push_bind(message.headers_json())
                    .push($now)
                    .push($now);
            });
            insert.build().execute(conn).await?;
            Ok(())
        }
    };
}

impl Backend for Postgres {
    const DB_NAME: &'static str = "postgres";
    const PARAM: &'static str = "$1";

    common!(Postgres);

    type DieselConn = diesel::PgConnection;
    const DIESEL_SQL: DieselSql<diesel::PgConnection> = diesel_sql!(diesel::PgConnection, |t| {
        format!(
            "INSERT INTO {t} (message_id, event_type, partition_key, aggregate_type, payload, \
             headers) VALUES ($1::uuid, $2, $3, $4, $5, $6::jsonb)"
        )
    });
    type DieselAsyncStore = outbox_diesel::asynchronous::PgStore;

    fn diesel_pool(url: &str) -> Result<R2d2Pool<ConnectionManager<Self::DieselConn>>, BoxError> {
        // libpq without TLS: its OpenSSL teardown at exit can crash a process whose pool
        // threads are still connecting.
        let url = match url.contains('?') {
            true => format!("{url}&sslmode=disable"),
            false => format!("{url}?sslmode=disable"),
        };
        Ok(R2d2Pool::builder()
            .max_size(16)
            .build(ConnectionManager::new(url))?)
    }

    fn diesel_async_store(
        url: &str,
        statements: Arc<Statements>,
    ) -> Result<Self::DieselAsyncStore, BoxError> {
        deadpool_store(AsyncDieselConnectionManager::new(url), 16, statements)
    }

    fn analyze(table: &str) -> String {
        format!("VACUUM ANALYZE {table}")
    }

    fn create_table(table: &str, columns: &str) -> String {
        format!("CREATE TABLE {table} (id bigserial PRIMARY KEY, {columns})")
    }

    async fn insert_by_hand(
        conn: &mut sqlx::PgConnection,
        table: &str,
        messages: &[Message],
    ) -> Result<(), BoxError> {
        let mut insert = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO {table} (message_id, event_type, partition_key, aggregate_type, \
             payload, headers) "
        ));
        insert.push_values(messages, |mut row, message| {
            row.push_bind(message.id())
                .push_bind(message.event_type())
                .push_bind(message.partition_key())
                .push_bind(message.aggregate_type_name())
                .push_bind(&message.payload()[..])
                .push_bind(message.headers_json())
                .push_unseparated("::jsonb");
        });
        insert.build().execute(conn).await?;
        Ok(())
    }

    async fn floor_batch(
        pool: &Pool<Postgres>,
        table: &str,
        batch: usize,
    ) -> Result<usize, BoxError> {
        // One round trip: the claim and the delete in one statement.
        let sql = format!(
            "WITH c AS (SELECT id FROM {table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             DELETE FROM {table} o USING c WHERE o.id = c.id RETURNING o.id, o.payload"
        );
        Self::fetch_count(pool, &sql, batch).await
    }

    async fn batch_statements(
        url: &str,
        _pool: &Pool<Postgres>,
        outbox: &Outbox<Postgres>,
        n: usize,
    ) -> Result<u64, BoxError> {
        crate::statements::enqueue_all(url, outbox, n).await
    }
}

/// MySQL and MariaDB have no `DELETE ... RETURNING` with `SKIP LOCKED`: the floor is the
/// classic transaction (lock a batch, read it, delete it, commit).
async fn mysql_floor_batch(
    pool: &Pool<MySql>,
    table: &str,
    batch: usize,
) -> Result<usize, BoxError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, payload FROM {table} ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED"
    )))
    .bind(batch as i64)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<i64, _>(0).map(|id| id.to_string()))
        .collect::<Result<_, _>>()?;
    // The id list makes a new statement text every batch: sent as text, not prepared. As a
    // cached prepared statement it would fill the connection's statement cache with texts
    // never used again, and each eviction costs the next statement a delayed ACK (~40 ms).
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE id IN ({})",
        ids.join(",")
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// The server's count of statements this session sent (`Questions`).
async fn mysql_questions(conn: &mut sqlx::MySqlConnection) -> Result<u64, BoxError> {
    let row = sqlx::query("SHOW SESSION STATUS LIKE 'Questions'")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<String, _>(1)?.parse()?)
}

impl Backend for MySql {
    const DB_NAME: &'static str = "mysql";

    common!(MySql);

    fn without_key_locks(outbox: Outbox<Self>) -> Option<Outbox<Self>> {
        Some(outbox.lock_keys(false))
    }

    type DieselConn = diesel::MysqlConnection;
    const DIESEL_SQL: DieselSql<diesel::MysqlConnection> = diesel_sql!(
        diesel::MysqlConnection,
        |t| text_id_hand_written(t, "UTC_TIMESTAMP(6)")
    );
    type DieselAsyncStore = outbox_diesel::asynchronous::MysqlStore;

    fn diesel_pool(url: &str) -> Result<R2d2Pool<ConnectionManager<Self::DieselConn>>, BoxError> {
        Ok(R2d2Pool::builder()
            .max_size(16)
            .build(ConnectionManager::new(url))?)
    }

    fn diesel_async_store(
        url: &str,
        statements: Arc<Statements>,
    ) -> Result<Self::DieselAsyncStore, BoxError> {
        deadpool_store(AsyncDieselConnectionManager::new(url), 16, statements)
    }

    fn analyze(table: &str) -> String {
        format!("ANALYZE TABLE {table}")
    }

    fn create_table(table: &str, columns: &str) -> String {
        format!("CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, {columns})")
    }

    text_id_insert_by_hand!(MySql, "UTC_TIMESTAMP(6)");

    async fn floor_batch(pool: &Pool<MySql>, table: &str, batch: usize) -> Result<usize, BoxError> {
        mysql_floor_batch(pool, table, batch).await
    }

    async fn batch_statements(
        _url: &str,
        pool: &Pool<MySql>,
        outbox: &Outbox<MySql>,
        n: usize,
    ) -> Result<u64, BoxError> {
        let mut conn = pool.acquire().await?;
        // Warm the statement cache, so the count is a steady-state transaction's.
        let mut tx = conn.begin().await?;
        outbox.enqueue_all(&mut *tx, batch_messages(n)?).await?;
        tx.rollback().await?;
        // Reading the counter is itself a statement: measure what one read adds.
        mysql_questions(&mut conn).await?;
        let a = mysql_questions(&mut conn).await?;
        let reading = mysql_questions(&mut conn).await? - a;
        let mut tx = conn.begin().await?;
        let before = mysql_questions(&mut tx).await?;
        outbox.enqueue_all(&mut *tx, batch_messages(n)?).await?;
        let sent = mysql_questions(&mut tx).await? - before - reading;
        tx.rollback().await?;
        Ok(sent)
    }
}

/// Counts sqlx's per-query log events: SQLite runs in-process, so there is no wire to watch,
/// but the driver reports every query it runs.
struct QueryCounter {
    queries: AtomicU64,
}

static QUERIES: QueryCounter = QueryCounter {
    queries: AtomicU64::new(0),
};

impl tracing::Subscriber for &'static QueryCounter {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "sqlx::query" {
            self.queries.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl Backend for Sqlite {
    const DB_NAME: &'static str = "sqlite";

    common!(Sqlite);

    type DieselConn = diesel::SqliteConnection;
    const DIESEL_SQL: DieselSql<diesel::SqliteConnection> = diesel_sql!(
        diesel::SqliteConnection,
        |t| text_id_hand_written(t, SQLITE_NOW)
    );
    type DieselAsyncStore = outbox_diesel::asynchronous::SqliteStore;

    fn diesel_pool(url: &str) -> Result<R2d2Pool<ConnectionManager<Self::DieselConn>>, BoxError> {
        let setup = outbox_diesel::SqliteSetup::default().busy_timeout(Duration::from_secs(30));
        Ok(R2d2Pool::builder()
            .max_size(8)
            .connection_customizer(Box::new(setup))
            .build(ConnectionManager::new(url))?)
    }

    fn diesel_async_store(
        url: &str,
        statements: Arc<Statements>,
    ) -> Result<Self::DieselAsyncStore, BoxError> {
        let manager = outbox_diesel::asynchronous::sqlite_manager(url, Duration::from_secs(30));
        deadpool_store(manager, 8, statements)
    }

    fn analyze(table: &str) -> String {
        format!("ANALYZE {table}")
    }

    fn create_table(table: &str, columns: &str) -> String {
        format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, {columns})")
    }

    text_id_insert_by_hand!(Sqlite, SQLITE_NOW);

    async fn floor_batch(
        pool: &Pool<Sqlite>,
        table: &str,
        batch: usize,
    ) -> Result<usize, BoxError> {
        // One writer at a time: nothing to skip, and DELETE ... RETURNING is one statement.
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?) \
             RETURNING id, payload"
        );
        Self::fetch_count(pool, &sql, batch).await
    }

    async fn batch_statements(
        _url: &str,
        pool: &Pool<Sqlite>,
        outbox: &Outbox<Sqlite>,
        n: usize,
    ) -> Result<u64, BoxError> {
        // Installed once per process, and only by this SQLite-only measurement.
        let _ = tracing::subscriber::set_global_default(&QUERIES);
        let mut tx = pool.begin().await?;
        let before = QUERIES.queries.load(Ordering::Relaxed);
        outbox.enqueue_all(&mut *tx, batch_messages(n)?).await?;
        let sent = QUERIES.queries.load(Ordering::Relaxed) - before;
        tx.rollback().await?;
        if sent == 0 {
            return Err(
                "no sqlx query events were seen: is another tracing subscriber set?".into(),
            );
        }
        Ok(sent)
    }
}
