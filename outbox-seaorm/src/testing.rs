//! The backend the core's suites run on for this crate (feature `testing`), and the cases
//! every sea-orm database runs besides them: a transaction sea-orm commits, one it rolls back
//! on an error and on a panic, and an enqueue outside any transaction.

use outbox_core::sql::Statements;
use outbox_core::testing::{Backend, SqlBackend, Visibility, fresh_table};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement, TransactionError,
    TransactionTrait,
};

use crate::error::error;
use crate::{Message, Outbox, Result, SeaOrmStore};

/// A backend for the core's suites: a sea-orm `DatabaseConnection` and a fresh outbox table.
#[derive(Debug, Clone)]
pub struct SeaOrmBackend {
    /// For failure messages.
    pub name: &'static str,
    /// The connection pool every store and transaction of the backend uses.
    pub db: DatabaseConnection,
    /// The table under test.
    pub outbox: Outbox,
    /// How the database orders visibility.
    pub visibility: Visibility,
}

impl SeaOrmBackend {
    /// A backend on a fresh, migrated table (migrated twice: `migrate` is idempotent), over
    /// `db` (build it from one of `outbox_sqlx::testing`'s pools: `pool.into()`).
    pub async fn new(name: &'static str, db: DatabaseConnection, visibility: Visibility) -> Self {
        let outbox = Outbox::with_table(&fresh_table()).unwrap();
        outbox.migrate(&db).await.unwrap();
        outbox.migrate(&db).await.expect("migrate is idempotent");
        Self {
            name,
            db,
            outbox,
            visibility,
        }
    }

    fn statement(&self, sql: &str) -> Statement {
        Statement::from_string(self.db.get_database_backend(), sql)
    }
}

impl Backend for SeaOrmBackend {
    type Store = SeaOrmStore;
    type Tx = DatabaseTransaction;

    fn name(&self) -> String {
        format!("{} {}", self.name, self.outbox.table())
    }

    fn store(&self) -> SeaOrmStore {
        self.outbox.store(self.db.clone()).unwrap()
    }

    async fn begin(&self) -> Result<DatabaseTransaction> {
        self.db.begin().await.map_err(error)
    }

    async fn enqueue(&self, tx: &mut DatabaseTransaction, messages: Vec<Message>) -> Result<()> {
        self.outbox.enqueue_all(tx, messages).await
    }

    async fn commit(&self, tx: DatabaseTransaction) -> Result<()> {
        tx.commit().await.map_err(error)
    }

    async fn rollback(&self, tx: DatabaseTransaction) -> Result<()> {
        tx.rollback().await.map_err(error)
    }

    fn visibility(&self) -> Visibility {
        self.visibility
    }
}

impl SqlBackend for SeaOrmBackend {
    fn statements(&self) -> &Statements {
        self.outbox
            .statements(self.db.get_database_backend())
            .unwrap()
    }

    fn with_table(&self, table: &str, max_payload: usize) -> Result<Self> {
        Ok(Self {
            outbox: Outbox::with_table(table)?.max_payload_bytes(max_payload),
            ..self.clone()
        })
    }

    async fn migrate(&self) -> Result<()> {
        self.outbox.migrate(&self.db).await
    }

    async fn uninstall(&self) -> Result<()> {
        self.outbox.uninstall(&self.db).await
    }

    async fn execute(&self, sql: &str) -> Result<u64> {
        let done = self.db.execute_raw(self.statement(sql)).await;
        Ok(done.map_err(error)?.rows_affected())
    }

    async fn execute_in(&self, tx: &mut DatabaseTransaction, sql: &str) -> Result<u64> {
        let done = tx.execute_raw(self.statement(sql)).await;
        Ok(done.map_err(error)?.rows_affected())
    }

    async fn fetch_count(&self, sql: &str) -> Result<i64> {
        let row = self.db.query_one_raw(self.statement(sql)).await;
        let row = row
            .map_err(error)?
            .ok_or_else(|| outbox_core::Error::from(outbox_core::sql::DbError::decode("no row")))?;
        row.try_get_by_index::<i64>(0).map_err(error)
    }

    fn store_keeping_published(&self) -> SeaOrmStore {
        self.store().keep_published(true)
    }

    async fn process_once(
        &self,
        tx: &mut DatabaseTransaction,
        consumer: &str,
        id: outbox_core::Uuid,
        effect: &str,
        hold: std::time::Duration,
    ) -> Result<outbox_core::sql::Processed<()>> {
        self.outbox
            .process_once(tx, consumer, id, async |txn| {
                txn.execute_raw(self.statement(effect))
                    .await
                    .map_err(error)?;
                tokio::time::sleep(hold).await;
                Ok(())
            })
            .await
    }

    async fn purge_inbox(&self, older_than: std::time::Duration) -> Result<u64> {
        self.store().purge_inbox(older_than).await
    }
}

/// Expands to one `#[tokio::test]` per transaction case of this crate, each on a fresh
/// [`SeaOrmBackend`] built by `$make` (an expression producing a future of one).
#[macro_export]
macro_rules! transaction_suite {
    ($make:expr) => {
        $crate::transaction_suite!(@cases $make;
            a_committed_transaction_closure_keeps_the_business_row_and_its_messages,
            an_error_returned_from_the_closure_leaves_neither,
            a_panic_inside_the_closure_leaves_neither,
            a_transaction_begun_by_hand_commits_and_rolls_back_with_its_messages,
            enqueue_on_the_connection_commits_at_once,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = $make.await;
                $crate::testing::$case(&backend).await;
            }
        )*
    };
}

type AppError = Box<dyn std::error::Error + Send + Sync>;

/// A business table beside the outbox, as an application has.
struct Orders(String);

impl Orders {
    async fn create(backend: &SeaOrmBackend) -> Self {
        let name = format!("orders_{}", fresh_table());
        let sql = format!("CREATE TABLE {name} (id BIGINT PRIMARY KEY)");
        backend.execute(&sql).await.unwrap();
        Self(name)
    }

    async fn insert<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: i64,
    ) -> std::result::Result<(), AppError> {
        let sql = format!("INSERT INTO {} (id) VALUES ({id})", self.0);
        conn.execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn count(&self, backend: &SeaOrmBackend) -> i64 {
        let sql = format!("SELECT COUNT(*) AS n FROM {}", self.0);
        backend.fetch_count(&sql).await.unwrap()
    }

    async fn drop_table(self, backend: &SeaOrmBackend) {
        let _ = backend.execute(&format!("DROP TABLE {}", self.0)).await;
    }
}

async fn unpublished(backend: &SeaOrmBackend) -> u64 {
    outbox_core::Inspect::stats(&backend.store())
        .await
        .unwrap()
        .unpublished()
}

fn order_created(id: i64) -> Message {
    Message::json("order.created", &serde_json::json!({ "id": id }))
        .unwrap()
        .key(id)
        .unwrap()
}

/// `db.transaction(|txn| ...)` returning `Ok` commits the business row and its messages
/// together.
pub async fn a_committed_transaction_closure_keeps_the_business_row_and_its_messages(
    backend: &SeaOrmBackend,
) {
    let orders = Orders::create(backend).await;
    let (outbox, table) = (backend.outbox.clone(), Orders(orders.0.clone()));
    backend
        .db
        .transaction::<_, (), AppError>(|txn| {
            Box::pin(async move {
                table.insert(txn, 1).await?;
                outbox.enqueue(txn, order_created(1)).await?;
                outbox
                    .enqueue_all(txn, [order_created(2), order_created(3)])
                    .await?;
                Ok(())
            })
        })
        .await
        .unwrap();
    let name = backend.name();
    assert_eq!(orders.count(backend).await, 1, "[{name}] the business row");
    assert_eq!(unpublished(backend).await, 3, "[{name}] the messages");
    orders.drop_table(backend).await;
}

/// A closure that returns an error rolls back the business row and its message.
pub async fn an_error_returned_from_the_closure_leaves_neither(backend: &SeaOrmBackend) {
    let orders = Orders::create(backend).await;
    let (outbox, table) = (backend.outbox.clone(), Orders(orders.0.clone()));
    let result = backend
        .db
        .transaction::<_, (), AppError>(|txn| {
            Box::pin(async move {
                table.insert(txn, 1).await?;
                outbox.enqueue(txn, order_created(1)).await?;
                Err("the payment was declined".into())
            })
        })
        .await;
    match result {
        Err(TransactionError::Transaction(err)) => {
            assert_eq!(err.to_string(), "the payment was declined");
        }
        other => panic!("expected the closure's error, got {other:?}"),
    }
    let name = backend.name();
    assert_eq!(orders.count(backend).await, 0, "[{name}] the business row");
    assert_eq!(unpublished(backend).await, 0, "[{name}] the message");
    orders.drop_table(backend).await;
}

/// A panic inside the closure (here in a task of its own, as in a request handler) drops the
/// transaction uncommitted, which rolls it back: neither the row nor the message is committed.
pub async fn a_panic_inside_the_closure_leaves_neither(backend: &SeaOrmBackend) {
    let orders = Orders::create(backend).await;
    let (db, outbox, table) = (
        backend.db.clone(),
        backend.outbox.clone(),
        Orders(orders.0.clone()),
    );
    let handler = tokio::spawn(async move {
        db.transaction::<_, (), AppError>(|txn| {
            Box::pin(async move {
                table.insert(txn, 1).await?;
                outbox.enqueue(txn, order_created(1)).await?;
                panic!("a bug in the handler");
            })
        })
        .await
    });
    assert!(
        handler.await.unwrap_err().is_panic(),
        "the closure panicked"
    );
    let name = backend.name();
    assert_eq!(orders.count(backend).await, 0, "[{name}] the business row");
    assert_eq!(unpublished(backend).await, 0, "[{name}] the message");
    orders.drop_table(backend).await;
}

/// After `db.begin()`, the messages commit with `commit()` and vanish with `rollback()`.
pub async fn a_transaction_begun_by_hand_commits_and_rolls_back_with_its_messages(
    backend: &SeaOrmBackend,
) {
    let orders = Orders::create(backend).await;
    let txn = backend.db.begin().await.unwrap();
    orders.insert(&txn, 1).await.unwrap();
    backend
        .outbox
        .enqueue(&txn, order_created(1))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    let name = backend.name();
    assert_eq!(unpublished(backend).await, 0, "[{name}] rolled back");

    let txn = backend.db.begin().await.unwrap();
    orders.insert(&txn, 2).await.unwrap();
    backend
        .outbox
        .enqueue(&txn, order_created(2))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(orders.count(backend).await, 1, "[{name}] the business row");
    assert_eq!(unpublished(backend).await, 1, "[{name}] committed");
    orders.drop_table(backend).await;
}

/// On the `DatabaseConnection` itself (no transaction), each enqueue commits at once.
pub async fn enqueue_on_the_connection_commits_at_once(backend: &SeaOrmBackend) {
    backend
        .outbox
        .enqueue(&backend.db, order_created(1))
        .await
        .unwrap();
    backend
        .outbox
        .enqueue_all(&backend.db, [order_created(2), order_created(3)])
        .await
        .unwrap();
    let name = backend.name();
    assert_eq!(unpublished(backend).await, 3, "[{name}] committed at once");
}
