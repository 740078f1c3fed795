//! Opening the outbox named on the command line: the database by its URL, the table by name.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use outbox_sqlx::sql::{AnyStore, SqlPool, SqlStore, Statements, TableName};
use outbox_sqlx::{MySql, Postgres, Sqlite, SqlxPool};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::error::{CliError, Exit, Result};

/// How long to wait for the database before saying it cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to open.
pub(crate) struct Target<'a> {
    pub(crate) url: Option<&'a str>,
    pub(crate) table: &'a str,
    /// Create a SQLite file that does not exist yet (`migrate`).
    pub(crate) create: bool,
    /// Keep published rows instead of deleting them (the relay's `--keep-published`).
    pub(crate) keep_published: bool,
    /// Connections to allow.
    pub(crate) connections: u32,
}

/// The outbox at `target`, connected.
pub(crate) async fn open(target: &Target<'_>) -> Result<AnyStore> {
    let url = target.url.ok_or_else(|| {
        CliError::new(
            Exit::Usage,
            "no database given: pass --database-url or set DATABASE_URL \
             (postgres://…, mysql://… or sqlite:PATH)",
        )
    })?;
    let table = TableName::new(target.table).map_err(CliError::from)?;
    let shown = redact(url);
    let invalid = |err: sqlx::Error| {
        CliError::new(Exit::Usage, format!("invalid database URL {shown}: {err}"))
    };
    let unreachable = |err: sqlx::Error| {
        CliError::new(
            Exit::Unreachable,
            format!(
                "cannot reach the database at {shown}: {err}; check that it is running and \
                 that the URL's host, port, user, password and database are right"
            ),
        )
    };
    let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url).map_err(invalid)?;
        let pool = pool(PgPoolOptions::new(), options, target.connections)
            .await
            .map_err(unreachable)?;
        any_store(
            SqlxPool::<Postgres>::from(pool),
            &table,
            target.keep_published,
        )
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let options = MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))
            .map_err(invalid)?;
        let pool = pool(MySqlPoolOptions::new(), options, target.connections)
            .await
            .map_err(unreachable)?;
        any_store(SqlxPool::<MySql>::from(pool), &table, target.keep_published)
    } else if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(invalid)?
            .create_if_missing(target.create)
            .busy_timeout(Duration::from_secs(5));
        let path = options.get_filename().to_owned();
        if !target.create
            && !path.as_os_str().is_empty()
            && !path.exists()
            && !url.contains(":memory:")
        {
            return Err(CliError::new(
                Exit::Unreachable,
                format!(
                    "the SQLite file {} does not exist; check the path, or create it with \
                     `outbox migrate`",
                    path.display()
                ),
            ));
        }
        let pool = pool(SqlitePoolOptions::new(), options, target.connections)
            .await
            .map_err(unreachable)?;
        any_store(
            SqlxPool::<Sqlite>::from(pool),
            &table,
            target.keep_published,
        )
    } else {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "unsupported database URL {shown}: it must start with postgres://, \
                 postgresql://, mysql://, mariadb:// or sqlite:"
            ),
        ));
    };
    Ok(store)
}

/// The store on `table` over `pool`.
fn any_store<P: SqlPool>(pool: P, table: &TableName, keep_published: bool) -> AnyStore {
    let statements = Arc::new(Statements::new(pool.dialect(), table.clone()));
    AnyStore::new(SqlStore::<P>::with_statements(pool, statements).keep_published(keep_published))
}

/// A pool of up to `connections`, once one connection to the database succeeded: a pool's own
/// timeout would hide why it could not connect.
async fn pool<DB: sqlx::Database>(
    pool: sqlx::pool::PoolOptions<DB>,
    options: <DB::Connection as Connection>::Options,
    connections: u32,
) -> Result<sqlx::Pool<DB>, sqlx::Error> {
    let first = options.connect().await?;
    first.close().await?;
    Ok(pool
        .max_connections(connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options))
}

/// `url` with its password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("postgres://app:s3cr3t@db:5432/orders?sslmode=disable"),
            "postgres://app:***@db:5432/orders?sslmode=disable"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite:/tmp/a.db"), "sqlite:/tmp/a.db");
    }
}
