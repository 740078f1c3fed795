//! `SeaOrmStore`: the core's SQL store on a sea-orm `DatabaseConnection`.

use outbox_core::Result;
use outbox_core::sql::{DbError, Dialect, Executor, Operation, SqlPool, SqlStore, TransactionPool};
use sea_orm::{DatabaseConnection, DatabaseTransaction, IsolationLevel, TransactionTrait};

use crate::error::{db_error, error};
use crate::executor::{SeaExecutor, dialect};

/// A sea-orm `DatabaseConnection` (a pool) as the core's [`SqlPool`]: an operation that needs
/// a transaction runs in one (`begin_with_config`, READ COMMITTED where the protocol asks for
/// it; rolled back if the operation fails or is dropped), any other on the pool directly.
#[derive(Debug, Clone)]
pub struct SeaOrmPool {
    db: DatabaseConnection,
    dialect: Dialect,
}

impl SeaOrmPool {
    /// The connection.
    pub fn inner(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl From<DatabaseConnection> for SeaOrmPool {
    /// # Panics
    ///
    /// On a connection to a database other than PostgreSQL, MySQL/MariaDB and SQLite (sea-orm
    /// 2 has no other), or a disconnected one.
    fn from(db: DatabaseConnection) -> Self {
        let dialect = dialect(db.get_database_backend()).unwrap_or_else(|err| panic!("{err}"));
        Self { db, dialect }
    }
}

impl SqlPool for SeaOrmPool {
    fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn run<O: Operation>(&self, op: O) -> Result<O::Output> {
        let mode = op.tx_mode();
        // sea-orm sets the isolation of the transaction it begins on the connection it takes,
        // which is what `before_begin` asks for; a single READ COMMITTED statement runs in a
        // transaction of its own, since the pool gives no connection outside one.
        let read_committed = mode.before_begin(op.dialect()).is_some();
        if !mode.is_transaction() && !read_committed {
            return op.run(&mut SeaExecutor(&self.db)).await;
        }
        let isolation = read_committed.then_some(IsolationLevel::ReadCommitted);
        let tx = self
            .db
            .begin_with_config(isolation, None)
            .await
            .map_err(error)?;
        let output = op.run(&mut SeaExecutor(&tx)).await?;
        tx.commit().await.map_err(error)?;
        Ok(output)
    }
}

/// Request transactions for the web layers: a [`UnitOfWork`](outbox_core::sql::UnitOfWork)
/// over a `SeaOrmPool` hands out a `DatabaseTransaction` (begun with `db.begin()`), on which
/// the caller's `ActiveModel::insert(&*tx)` and `Entity::find().all(&*tx)` run unchanged.
impl TransactionPool for SeaOrmPool {
    type Transaction = DatabaseTransaction;
    type Connection = DatabaseTransaction;

    fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn begin(&self) -> Result<Self::Transaction, DbError> {
        self.db.begin().await.map_err(db_error)
    }

    fn connection(tx: &Self::Transaction) -> &Self::Connection {
        tx
    }

    fn connection_mut(tx: &mut Self::Transaction) -> &mut Self::Connection {
        tx
    }

    fn executor(tx: &mut Self::Transaction) -> impl Executor + '_ {
        SeaExecutor(&*tx)
    }

    async fn commit(tx: Self::Transaction) -> Result<(), DbError> {
        tx.commit().await.map_err(db_error)
    }

    async fn rollback(tx: Self::Transaction) -> Result<(), DbError> {
        tx.rollback().await.map_err(db_error)
    }
}

/// The relay's store on a sea-orm `DatabaseConnection`, whichever of PostgreSQL,
/// MySQL/MariaDB and SQLite it is to. It is the core's [`SqlStore`] over a [`SeaOrmPool`]:
/// `SeaOrmStore::new(db)` for the default table, [`Outbox::store`](crate::Outbox::store) for
/// another.
///
/// Cheap to clone (the connection pool is shared). Published rows are deleted on ack; call
/// [`keep_published`](SqlStore::keep_published) to keep them for a retention window instead.
pub type SeaOrmStore = SqlStore<SeaOrmPool>;
