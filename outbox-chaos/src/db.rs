//! What the harness needs from each database beyond the outbox: its own server, the per-key
//! commit counter, rows written corrupt by hand, and killing the relays' connections.

use std::future::Future;
use std::time::Duration;

use outbox_sqlx::{OutboxConnection, OutboxDatabase, Uuid};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Pool, Postgres};

use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool as DeadPool;

use crate::BoxError;
use crate::relays::{RelayArgs, run_relay};
use crate::services;

/// The event type of the rows written corrupt.
pub(crate) const CORRUPT_EVENT: &str = "chaos.corrupt";

/// Who the relays connect as: the harness kills their connections by it.
const RELAY: &str = "outbox-chaos-relay";
/// The slow relay, frozen later, is left alone: it must be mid-batch, not backing off, when
/// it is frozen.
const SLOW_RELAY: &str = "outbox-chaos-relay-slow";

/// The name a relay's connections go by: the slow relay's (acks delayed) or the others'.
fn relay_name(ack_delay: u64) -> &'static str {
    if ack_delay > 0 { SLOW_RELAY } else { RELAY }
}

/// A lazy r2d2 pool (no connection until the relay asks) of at most 4 connections to `url`.
fn r2d2_pool<C: diesel::r2d2::R2D2Connection + 'static>(
    url: String,
) -> diesel::r2d2::Pool<diesel::r2d2::ConnectionManager<C>> {
    diesel::r2d2::Pool::builder()
        .max_size(4)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .build_unchecked(diesel::r2d2::ConnectionManager::new(url))
}

/// A database the harness runs on.
pub(crate) trait ChaosDb:
    OutboxDatabase + sqlx::Database<Connection: OutboxConnection<Database = Self>>
{
    /// The name `--db` takes and the summary shows.
    const DB_NAME: &'static str;
    /// Its name in progress lines.
    const PRODUCT: &'static str;
    /// A server of the run's own.
    type Server: Server;

    /// A lazy pool for a relay process, whose connections the harness can find.
    fn relay_pool(url: &str, slow: bool) -> Result<Pool<Self>, BoxError>;

    /// A sea-orm connection over `pool`.
    fn seaorm(pool: Pool<Self>) -> sea_orm::DatabaseConnection;

    /// Runs a relay process on the diesel store (r2d2) or, with `asynchronous`, the
    /// diesel-async store (deadpool), over a lazy pool whose connections the harness can find.
    fn run_diesel(
        table: &str,
        url: &str,
        asynchronous: bool,
        relay: RelayArgs<'_>,
    ) -> impl Future<Output = Result<(), BoxError>>;

    /// Creates the per-key counter table `seq`.
    fn create_seq_table(
        pool: &Pool<Self>,
        seq: &str,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Adds one to the counter of each key in `keys` (a key may repeat), holding the counter
    /// rows' locks to commit, and returns each key's counter after.
    fn bump(
        conn: &mut Self::Connection,
        seq: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<(String, i64)>, BoxError>> + Send;

    /// The outbox sequence numbers of `ids`.
    fn lookup(
        conn: &mut Self::Connection,
        table: &str,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<(Uuid, i64)>, BoxError>> + Send;

    /// Writes a row by hand whose headers are JSON but not an object of strings, on `key`.
    fn insert_corrupt(
        pool: &Pool<Self>,
        table: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// How many corrupt rows are dead with an error naming the headers.
    fn corrupt_dead(
        pool: &Pool<Self>,
        table: &str,
    ) -> impl Future<Output = Result<u64, BoxError>> + Send;

    /// Kills every database connection of the relays but the slow one; returns how many.
    fn kill_relay_connections(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<u64, BoxError>> + Send;
}

/// A database server of the run's own.
pub(crate) trait Server: Send + Sized {
    /// Starts it.
    fn start() -> impl Future<Output = Result<Self, BoxError>> + Send;
    /// Its URL.
    fn url(&self) -> String;
    /// Crashes it and starts it again; returns how long it was down.
    fn crash_and_restart(&mut self) -> impl Future<Output = Result<Duration, BoxError>> + Send;
    /// Stops it and removes its files.
    fn stop(self) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl Server for services::Postgres {
    fn start() -> impl Future<Output = Result<Self, BoxError>> + Send {
        services::Postgres::start()
    }
    fn url(&self) -> String {
        services::Postgres::url(self)
    }
    fn crash_and_restart(&mut self) -> impl Future<Output = Result<Duration, BoxError>> + Send {
        services::Postgres::crash_and_restart(self)
    }
    fn stop(self) -> impl Future<Output = Result<(), BoxError>> + Send {
        services::Postgres::stop(self)
    }
}

impl Server for services::MariaDb {
    fn start() -> impl Future<Output = Result<Self, BoxError>> + Send {
        services::MariaDb::start()
    }
    fn url(&self) -> String {
        services::MariaDb::url(self)
    }
    fn crash_and_restart(&mut self) -> impl Future<Output = Result<Duration, BoxError>> + Send {
        services::MariaDb::crash_and_restart(self)
    }
    fn stop(self) -> impl Future<Output = Result<(), BoxError>> + Send {
        services::MariaDb::stop(self)
    }
}

fn dead() -> i16 {
    outbox_sqlx::sql::state::DEAD
}

impl ChaosDb for Postgres {
    const DB_NAME: &'static str = "postgres";
    const PRODUCT: &'static str = "PostgreSQL";
    type Server = services::Postgres;

    fn seaorm(pool: Pool<Self>) -> sea_orm::DatabaseConnection {
        pool.into()
    }

    async fn run_diesel(
        table: &str,
        url: &str,
        asynchronous: bool,
        relay: RelayArgs<'_>,
    ) -> Result<(), BoxError> {
        let name = relay_name(relay.ack_delay);
        let outbox = outbox_diesel::Outbox::<outbox_diesel::Pg>::with_table(table)?;
        // libpq and tokio-postgres both take the application name from the URL; libpq is
        // asked for no TLS, as the bench and tests do.
        let url = format!("{url}?application_name={name}&sslmode=disable");
        if asynchronous {
            let manager = AsyncDieselConnectionManager::<diesel_async::AsyncPgConnection>::new(url);
            let pool = DeadPool::builder(manager).max_size(4).build()?;
            run_relay(outbox.async_store(pool), relay).await
        } else {
            run_relay(outbox.store(r2d2_pool::<diesel::PgConnection>(url)), relay).await
        }
    }

    fn relay_pool(url: &str, slow: bool) -> Result<Pool<Self>, BoxError> {
        let options: PgConnectOptions = url.parse()?;
        Ok(PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.application_name(if slow { SLOW_RELAY } else { RELAY })))
    }

    async fn create_seq_table(pool: &Pool<Self>, seq: &str) -> Result<(), BoxError> {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS \"{seq}\" (key TEXT PRIMARY KEY, n BIGINT NOT NULL)"
        )))
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn bump(
        conn: &mut sqlx::PgConnection,
        seq: &str,
        keys: &[String],
    ) -> Result<Vec<(String, i64)>, BoxError> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO \"{seq}\" (key, n) \
             SELECT k, count(*) FROM unnest($1::text[]) AS k GROUP BY k ORDER BY k \
             ON CONFLICT (key) DO UPDATE SET n = \"{seq}\".n + excluded.n \
             RETURNING key, n"
        )))
        .bind(keys)
        .fetch_all(conn)
        .await?)
    }

    async fn lookup(
        conn: &mut sqlx::PgConnection,
        table: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, i64)>, BoxError> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT message_id, id FROM {table} WHERE message_id = ANY($1)"
        )))
        .bind(ids)
        .fetch_all(conn)
        .await?)
    }

    async fn insert_corrupt(pool: &Pool<Self>, table: &str, key: &str) -> Result<(), BoxError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (message_id, event_type, partition_key, payload, headers) \
             VALUES ($1, '{CORRUPT_EVENT}', $2, '\\x00', '[1]')"
        )))
        .bind(Uuid::new_v4())
        .bind(key)
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn corrupt_dead(pool: &Pool<Self>, table: &str) -> Result<u64, BoxError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE event_type = '{CORRUPT_EVENT}' \
             AND state = {} AND last_error LIKE '%headers%'",
            dead()
        )))
        .fetch_one(pool)
        .await?;
        Ok(n as u64)
    }

    async fn kill_relay_connections(pool: &Pool<Self>) -> Result<u64, BoxError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) t",
        )
        .bind(RELAY)
        .fetch_one(pool)
        .await?;
        Ok(n as u64)
    }
}

impl ChaosDb for MySql {
    const DB_NAME: &'static str = "mysql";
    const PRODUCT: &'static str = "MariaDB";
    type Server = services::MariaDb;

    fn seaorm(pool: Pool<Self>) -> sea_orm::DatabaseConnection {
        pool.into()
    }

    async fn run_diesel(
        table: &str,
        url: &str,
        asynchronous: bool,
        relay: RelayArgs<'_>,
    ) -> Result<(), BoxError> {
        // The server skips its grant tables, so the relay's name can be its user name.
        let url = url.replacen(
            "://root@",
            &format!("://{}@", relay_name(relay.ack_delay)),
            1,
        );
        let outbox = outbox_diesel::Outbox::<outbox_diesel::Mysql>::with_table(table)?;
        if asynchronous {
            let manager =
                AsyncDieselConnectionManager::<diesel_async::AsyncMysqlConnection>::new(url);
            let pool = DeadPool::builder(manager).max_size(4).build()?;
            run_relay(outbox.async_store(pool), relay).await
        } else {
            run_relay(
                outbox.store(r2d2_pool::<diesel::MysqlConnection>(url)),
                relay,
            )
            .await
        }
    }

    fn relay_pool(url: &str, slow: bool) -> Result<Pool<Self>, BoxError> {
        // The server skips its grant tables, so any user name is let in.
        let options: MySqlConnectOptions = url.parse()?;
        Ok(MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.username(if slow { SLOW_RELAY } else { RELAY })))
    }

    async fn create_seq_table(pool: &Pool<Self>, seq: &str) -> Result<(), BoxError> {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS `{seq}` (k VARCHAR(255) PRIMARY KEY, n BIGINT NOT NULL) \
             ENGINE=InnoDB"
        )))
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn bump(
        conn: &mut sqlx::MySqlConnection,
        seq: &str,
        keys: &[String],
    ) -> Result<Vec<(String, i64)>, BoxError> {
        let mut counts = std::collections::BTreeMap::<&str, i64>::new();
        for key in keys {
            *counts.entry(key).or_default() += 1;
        }
        let mut last = Vec::with_capacity(counts.len());
        // In key order, as the PostgreSQL statement does, so producers never deadlock here.
        for (key, count) in counts {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO `{seq}` (k, n) VALUES (?, ?) ON DUPLICATE KEY UPDATE n = n + ?"
            )))
            .bind(key)
            .bind(count)
            .bind(count)
            .execute(&mut *conn)
            .await?;
            let n: i64 =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT n FROM `{seq}` WHERE k = ?")))
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await?;
            last.push((key.to_owned(), n));
        }
        Ok(last)
    }

    async fn lookup(
        conn: &mut sqlx::MySqlConnection,
        table: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, i64)>, BoxError> {
        let list = vec!["?"; ids.len()].join(", ");
        let mut query = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(format!(
            "SELECT message_id, id FROM {table} WHERE message_id IN ({list})"
        )));
        for id in ids {
            query = query.bind(id.to_string());
        }
        query
            .fetch_all(conn)
            .await?
            .into_iter()
            .map(|(id, seq)| Ok((id.parse()?, seq)))
            .collect()
    }

    async fn insert_corrupt(pool: &Pool<Self>, table: &str, key: &str) -> Result<(), BoxError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (message_id, event_type, partition_key, payload, headers, \
             created_at, available_at) \
             VALUES (?, '{CORRUPT_EVENT}', ?, X'00', '[1]', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(key)
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn corrupt_dead(pool: &Pool<Self>, table: &str) -> Result<u64, BoxError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS SIGNED) FROM {table} WHERE event_type = '{CORRUPT_EVENT}' \
             AND state = {} AND last_error LIKE '%headers%'",
            dead()
        )))
        .fetch_one(pool)
        .await?;
        Ok(n as u64)
    }

    async fn kill_relay_connections(pool: &Pool<Self>) -> Result<u64, BoxError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE user = ?",
        )
        .bind(RELAY)
        .fetch_all(pool)
        .await?;
        let mut killed = 0;
        for id in ids {
            // A connection that ended meanwhile is not an error worth stopping for.
            if sqlx::query(AssertSqlSafe(format!("KILL CONNECTION {id}")))
                .execute(pool)
                .await
                .is_ok()
            {
                killed += 1;
            }
        }
        Ok(killed)
    }
}
