//! What the HTTP suites of outbox-axum and outbox-actix share: the scenarios
//! ([`web_suite!`]), run for every adapter and database ([`adapters!`]) against an app each
//! framework builds with the same routes; a plain HTTP/1.1 client; and a pool wrapper that
//! counts what the unit of work asks of the database.
//!
//! The app a framework's suite serves has these routes, each writing order `id` (through
//! `insert`) and enqueueing its events on the request's transaction:
//!
//! | route | answer |
//! |---|---|
//! | `POST /orders/{id}/{events}` | 201, with `events` events |
//! | `POST /reject/{id}` | 422 |
//! | `POST /panic/{id}` | a panic |
//! | `POST /conflict/{id}` | 409 with the decision to commit |
//! | `POST /preview/{id}` | 200 with the decision to roll back |
//! | `POST /held/{id}` | 200, with the transaction moved into a task that outlives the handler |
//! | `POST /slow/{id}` | 201 after 2 s |
//! | `POST /twice` | takes two handles at once |
//! | `POST /big/{id}` | enqueues a 4 KiB payload |
//! | `POST /audited/{id}` | takes the transaction, writes order `id + 1,000,000`, drops it, takes it again and answers as `/orders/{id}/1` |
//! | `GET /health` | 200 `ok`, without the transaction |

#![allow(missing_docs)]

pub use {
    diesel, diesel_async, outbox_core, outbox_diesel, outbox_seaorm, outbox_sqlx, sea_orm,
    serde_json, sqlx, tokio, tokio_util,
};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outbox_core::sql::{DbError, Dialect, Executor, Query, Rows, TransactionPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection and sends `method path` with an empty body.
pub async fn open(addr: SocketAddr, method: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Sends `method path` and reads the response: its status and body; status 0 when the server
/// closed the connection without a response.
pub async fn send(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = open(addr, method, path).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("no response to {method} {path} within 30s"));
    if read.is_err() || raw.is_empty() {
        return (0, String::new());
    }
    let text = String::from_utf8(raw).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `check` every 10 ms until it holds or `within` has passed; whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a [`Counting`] pool has been asked for.
#[derive(Debug, Default)]
pub struct Counts {
    pub begins: AtomicUsize,
    /// Statements the unit of work sent through its executor (the outbox's, not the handler's).
    pub outbox_statements: AtomicUsize,
    pub commits: AtomicUsize,
    pub rollbacks: AtomicUsize,
    /// How long each commit waits before it is sent.
    pub commit_delay_ms: AtomicU64,
}

impl Counts {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// A real pool that counts begins, the outbox's statements, commits and rollbacks.
#[derive(Debug, Clone)]
pub struct Counting<P> {
    pub inner: P,
    pub counts: Arc<Counts>,
}

impl<P> Counting<P> {
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }
}

pub struct CountingTx<T> {
    tx: T,
    counts: Arc<Counts>,
}

impl<T> CountingTx<T> {
    /// A transaction begun outside the pool, counted by `pool`.
    pub fn wrap<P>(tx: T, pool: &Counting<P>) -> Self {
        Self {
            tx,
            counts: Arc::clone(&pool.counts),
        }
    }
}

struct CountingExecutor<'a, E> {
    inner: E,
    counts: &'a Counts,
}

impl<E: Executor> Executor for CountingExecutor<'_, E> {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        self.counts.outbox_statements.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(query)
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        self.counts.outbox_statements.fetch_add(1, Ordering::SeqCst);
        self.inner.execute(query)
    }
}

impl<P: TransactionPool> TransactionPool for Counting<P> {
    type Transaction = CountingTx<P::Transaction>;
    type Connection = P::Connection;

    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    async fn begin(&self) -> Result<Self::Transaction, DbError> {
        self.counts.begins.fetch_add(1, Ordering::SeqCst);
        Ok(CountingTx {
            tx: self.inner.begin().await?,
            counts: Arc::clone(&self.counts),
        })
    }

    fn connection(tx: &Self::Transaction) -> &Self::Connection {
        P::connection(&tx.tx)
    }

    fn connection_mut(tx: &mut Self::Transaction) -> &mut Self::Connection {
        P::connection_mut(&mut tx.tx)
    }

    fn executor(tx: &mut Self::Transaction) -> impl Executor + '_ {
        CountingExecutor {
            inner: P::executor(&mut tx.tx),
            counts: &tx.counts,
        }
    }

    async fn commit(tx: Self::Transaction) -> Result<(), DbError> {
        tx.counts.commits.fetch_add(1, Ordering::SeqCst);
        let delay = tx.counts.commit_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        P::commit(tx.tx).await
    }

    async fn rollback(tx: Self::Transaction) -> Result<(), DbError> {
        tx.counts.rollbacks.fetch_add(1, Ordering::SeqCst);
        P::rollback(tx.tx).await
    }
}

/// How a framework's suite is to set its layer or middleware up for one test.
#[derive(Debug, Default, Clone)]
pub struct Setup {
    /// No layer at all.
    pub without_layer: bool,
    /// Another outbox table than the test's.
    pub table: Option<outbox_core::sql::OutboxTable>,
    /// The relay to wake.
    pub wake: Option<outbox_core::WakeHandle>,
    /// Another success predicate, on the status code.
    pub commit_when: Option<fn(u16) -> bool>,
}

/// The scenarios, for one adapter on one database. The invoking module names `Orm` (the
/// adapter's pool type), `serve(&Env, Setup) -> SocketAddr` (the framework's app, with
/// the routes of the [crate docs](crate), on a loopback port) and `CANCELS_ON_DISCONNECT`
/// (whether the server drops a handler whose client went away); `$db` is the sqlx database the
/// scenarios check the tables with, `$pools` gives a sqlx pool and an `Orm` on the same
/// database.
#[macro_export]
macro_rules! web_suite {
    ($db:ty, $pools:expr) => {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        use std::time::{Duration, Instant};

        use $crate::outbox_core::memory::CollectingPublisher;
        use $crate::outbox_sqlx::{Message, Outbox, Relay};
        use $crate::sqlx::AssertSqlSafe;
        use $crate::{Counting, Counts, Setup, outbox_core, sqlx, tokio};

        /// The pool the app's layer runs on: the adapter's, counted.
        type Pool = Counting<Orm>;

        /// One test's world: a pool, a fresh outbox table, an orders table beside it.
        struct Env {
            pool: sqlx::Pool<$db>,
            outbox: Outbox<$db>,
            orders: Arc<str>,
            counting: Pool,
        }

        impl Env {
            async fn new() -> Self {
                let (pool, orm) = $pools;
                let outbox =
                    Outbox::<$db>::with_table(&outbox_core::testing::fresh_table()).unwrap();
                outbox.migrate(&mut *pool.acquire().await.unwrap()).await.unwrap();
                let orders: Arc<str> = format!("{}_orders", outbox.table()).into();
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE TABLE {orders} (id BIGINT PRIMARY KEY, total BIGINT NOT NULL)"
                )))
                .execute(&pool)
                .await
                .unwrap();
                let counting = Counting::new(orm);
                Self { pool, outbox, orders, counting }
            }

            /// The table the app's layer writes to, unless the setup says otherwise.
            fn table(&self, setup: &Setup) -> outbox_core::sql::OutboxTable {
                setup.table.clone().unwrap_or_else(|| self.outbox.outbox_table().clone())
            }

            fn counts(&self) -> &Counts {
                &self.counting.counts
            }

            async fn scalar(&self, sql: String) -> i64 {
                sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&self.pool).await.unwrap()
            }

            async fn orders(&self, id: i64) -> i64 {
                self.scalar(format!("SELECT COUNT(*) FROM {} WHERE id = {id}", self.orders)).await
            }

            async fn events(&self, id: i64) -> i64 {
                self.scalar(format!(
                    "SELECT COUNT(*) FROM {} WHERE partition_key = '{id}'",
                    self.outbox.table()
                ))
                .await
            }

            /// The order's row and events: `(1, n)` committed, `(0, 0)` rolled back.
            async fn saved(&self, id: i64) -> (i64, i64) {
                (self.orders(id).await, self.events(id).await)
            }

            async fn all_events(&self) -> i64 {
                self.scalar(format!("SELECT COUNT(*) FROM {}", self.outbox.table())).await
            }

            async fn until(&self, what: &str, check: impl Fn(&Counts) -> bool) {
                assert!(
                    $crate::eventually(Duration::from_secs(5), || async { check(self.counts()) })
                        .await,
                    "{what} within 5s: {:?}",
                    self.counts()
                );
            }

            async fn served(&self) -> std::net::SocketAddr {
                serve(self, Setup::default()).await
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_success_commits_the_row_and_its_events_in_one_statement() {
            let env = Env::new().await;
            let addr = env.served().await;
            assert_eq!($crate::send(addr, "POST", "/orders/1/5").await.0, 201);
            assert_eq!(env.saved(1).await, (1, 5), "the order and its five events commit");
            assert_eq!(
                Counts::get(&env.counts().outbox_statements),
                1,
                "the five buffered events cost one statement"
            );
            assert_eq!(Counts::get(&env.counts().commits), 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_error_status_rolls_back_the_row_and_its_events() {
            let env = Env::new().await;
            let addr = env.served().await;
            assert_eq!($crate::send(addr, "POST", "/reject/2").await.0, 422);
            assert_eq!(env.saved(2).await, (0, 0));
            assert_eq!(Counts::get(&env.counts().rollbacks), 1);
            assert_eq!(Counts::get(&env.counts().outbox_statements), 0, "nothing was flushed");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_panic_rolls_back_the_row_and_its_events() {
            let env = Env::new().await;
            let addr = env.served().await;
            let (status, _) = $crate::send(addr, "POST", "/panic/3").await;
            assert!(!(200..400).contains(&status), "a panic is no success: {status}");
            env.until("the panicked request's rollback", |c| Counts::get(&c.rollbacks) == 1).await;
            assert_eq!(env.saved(3).await, (0, 0));
            assert_eq!(Counts::get(&env.counts().commits), 0);
            assert_eq!($crate::send(addr, "GET", "/health").await.0, 200, "the server lives on");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_per_response_decision_overrides_the_status() {
            let env = Env::new().await;
            let addr = env.served().await;
            assert_eq!($crate::send(addr, "POST", "/conflict/5").await.0, 409);
            assert_eq!(env.saved(5).await, (1, 1), "409 committed");
            assert_eq!($crate::send(addr, "POST", "/preview/6").await.0, 200);
            assert_eq!(env.saved(6).await, (0, 0), "200 rolled back");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_success_predicate_is_configurable() {
            let env = Env::new().await;
            let only_created = Setup { commit_when: Some(|status| status == 201), ..Setup::default() };
            let addr = serve(&env, only_created).await;
            assert_eq!($crate::send(addr, "POST", "/orders/7/1").await.0, 201);
            assert_eq!($crate::send(addr, "POST", "/conflict/8").await.0, 409);
            assert_eq!(env.saved(7).await, (1, 1));
            assert_eq!(env.saved(8).await, (1, 1), "the per-response decision wins");
            let never = Setup { commit_when: Some(|_| false), ..Setup::default() };
            let addr = serve(&env, never).await;
            assert_eq!($crate::send(addr, "POST", "/orders/9/1").await.0, 201);
            assert_eq!(env.saved(9).await, (0, 0));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_request_that_never_asks_takes_no_connection() {
            let env = Env::new().await;
            let addr = env.served().await;
            for _ in 0..10 {
                let (status, body) = $crate::send(addr, "GET", "/health").await;
                assert_eq!((status, body.as_str()), (200, "ok"));
            }
            assert_eq!(Counts::get(&env.counts().begins), 0, "no transaction was begun");
            assert_eq!(Counts::get(&env.counts().commits), 0);
            assert_eq!(Counts::get(&env.counts().rollbacks), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_hundred_concurrent_requests_each_get_their_own_transaction() {
            let env = Env::new().await;
            let addr = env.served().await;
            let requests: Vec<_> = (100..200)
                .map(|id| {
                    tokio::spawn(async move {
                        let path = if id % 10 == 0 {
                            format!("/reject/{id}")
                        } else {
                            format!("/orders/{id}/2")
                        };
                        $crate::send(addr, "POST", &path).await.0
                    })
                })
                .collect();
            for (id, request) in (100..200).zip(requests) {
                let expected = if id % 10 == 0 { 422 } else { 201 };
                assert_eq!(request.await.unwrap(), expected, "request {id}");
            }
            assert_eq!(Counts::get(&env.counts().begins), 100, "one transaction per request");
            for id in 100..200 {
                let want = if id % 10 == 0 { (0, 0) } else { (1, 2) };
                assert_eq!(env.saved(id).await, want, "order {id}");
            }
            assert_eq!(env.all_events().await, 180, "no event leaked into another request");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_client_that_disconnects_while_the_handler_runs_leaves_neither() {
            let env = Env::new().await;
            let addr = env.served().await;
            let stream = $crate::open(addr, "POST", "/slow/10").await;
            env.until("the handler's begin", |c| Counts::get(&c.begins) == 1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(stream);
            // The handler would have answered after 2 s: by 3 s it has either been cancelled
            // and rolled back, or run to its end and committed; never half of it.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let saved = env.saved(10).await;
            if CANCELS_ON_DISCONNECT {
                assert_eq!(saved, (0, 0), "a disconnected client's unfinished request rolls back");
                assert_eq!(Counts::get(&env.counts().rollbacks), 1);
            } else {
                assert_eq!(saved, (1, 1), "the handler ran to its end and committed");
                assert_eq!(Counts::get(&env.counts().commits), 1);
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_client_that_disconnects_during_the_commit_leaves_both() {
            let env = Env::new().await;
            env.counts().commit_delay_ms.store(500, Ordering::SeqCst);
            let addr = env.served().await;
            let stream = $crate::open(addr, "POST", "/orders/11/1").await;
            env.until("the commit's start", |c| Counts::get(&c.commits) == 1).await;
            drop(stream);
            assert!(
                $crate::eventually(Duration::from_secs(5), || async {
                    env.orders(11).await == 1
                })
                .await,
                "the commit completes without its client"
            );
            assert_eq!(env.events(11).await, 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handle_still_held_is_a_server_error_not_a_silent_commit() {
            let env = Env::new().await;
            let addr = env.served().await;
            let (status, body) = $crate::send(addr, "POST", "/held/14").await;
            assert_eq!(status, 500, "{body}");
            assert!(body.contains("not saved"), "{body}");
            env.until("the rollback once the task drops its handle", |c| {
                Counts::get(&c.rollbacks) == 1
            })
            .await;
            assert_eq!(env.saved(14).await, (0, 0));
            assert_eq!(Counts::get(&env.counts().commits), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_failed_flush_is_a_server_error_and_saves_nothing() {
            let env = Env::new().await;
            let missing = Outbox::<$db>::with_table(&outbox_core::testing::fresh_table()).unwrap();
            let setup = Setup { table: Some(missing.outbox_table().clone()), ..Setup::default() };
            let addr = serve(&env, setup).await;
            let (status, body) = $crate::send(addr, "POST", "/orders/15/1").await;
            assert_eq!(status, 500, "{body}");
            assert_eq!(env.orders(15).await, 0, "the business row went with the failed flush");
            assert_eq!(Counts::get(&env.counts().commits), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_oversized_payload_is_refused_when_enqueued() {
            let env = Env::new().await;
            let table = env.outbox.outbox_table().clone().max_payload_bytes(1024);
            let addr = serve(&env, Setup { table: Some(table), ..Setup::default() }).await;
            assert_eq!($crate::send(addr, "POST", "/big/16").await.0, 413);
            assert_eq!(env.saved(16).await, (0, 0));
            assert_eq!(Counts::get(&env.counts().outbox_statements), 0, "refused before any flush");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_transaction_can_be_taken_again_but_not_twice_at_once() {
            let env = Env::new().await;
            let addr = env.served().await;
            assert_eq!($crate::send(addr, "POST", "/audited/17").await.0, 201);
            assert_eq!(env.saved(17).await, (1, 1));
            assert_eq!(env.orders(1_000_017).await, 1, "the first handle's row, same transaction");
            assert_eq!(Counts::get(&env.counts().begins), 1);
            assert_eq!($crate::send(addr, "POST", "/twice").await.0, 500);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_missing_layer_is_a_server_error() {
            let env = Env::new().await;
            let addr = serve(&env, Setup { without_layer: true, ..Setup::default() }).await;
            assert_eq!($crate::send(addr, "POST", "/orders/18/1").await.0, 500);
            assert_eq!(env.saved(18).await, (0, 0));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_woken_relay_publishes_at_once_after_the_commit() {
            let env = Env::new().await;
            let publisher = CollectingPublisher::new();
            let relay = Relay::builder(env.outbox.store(env.pool.clone()), publisher.clone())
                .poll_interval(Duration::from_secs(30))
                .build()
                .unwrap();
            let setup = Setup { wake: Some(relay.wake_handle()), ..Setup::default() };
            let shutdown = $crate::tokio_util::sync::CancellationToken::new();
            let running = {
                let shutdown = shutdown.clone();
                tokio::spawn(async move { relay.run(shutdown.cancelled_owned()).await })
            };
            // Let the relay's first (empty) poll pass, so only a wake can bring it back soon.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let addr = serve(&env, setup).await;
            let mut slowest = Duration::ZERO;
            for id in 19..29 {
                assert_eq!($crate::send(addr, "POST", &format!("/orders/{id}/1")).await.0, 201);
                let sent = Instant::now();
                let want = (id - 18) as usize;
                assert!(
                    $crate::eventually(Duration::from_secs(5), || async {
                        publisher.published().len() == want
                    })
                    .await,
                    "event {id} published within 5s (the relay polls every 30s)"
                );
                slowest = slowest.max(sent.elapsed());
            }
            assert!(slowest < Duration::from_secs(1), "slowest response -> publish: {slowest:?}");
            shutdown.cancel();
            running.await.unwrap().unwrap();
        }

        /// An event for order `id`, the `n`th of its request.
        #[allow(dead_code)]
        fn event(id: i64, n: usize) -> Message {
            Message::json("order.created", &$crate::serde_json::json!({ "id": id, "n": n }))
                .unwrap()
                .key(id)
                .unwrap()
        }

        /// The SQL that writes order `id`.
        #[allow(dead_code)]
        fn order_sql(orders: &str, id: i64) -> String {
            format!("INSERT INTO {orders} (id, total) VALUES ({id}, {})", id * 100)
        }
    };
}

/// The suites for every adapter on every database, each a module that invokes `$app!()` (the
/// framework's app and `serve`, in terms of `Orm` and `insert(&mut Orm::Connection, sql)`)
/// and then [`web_suite!`].
#[macro_export]
macro_rules! adapters {
    ($app:ident) => {
        mod sqlx_postgres {
            type Orm = $crate::outbox_sqlx::SqlxPool<$crate::sqlx::Postgres>;
            $crate::sqlx_insert!($crate::sqlx::PgConnection);
            $app!();
            $crate::web_suite!($crate::sqlx::Postgres, {
                let pool = $crate::outbox_sqlx::testing::postgres_pool().await;
                (pool.clone(), Orm::from(pool))
            });
        }

        mod sqlx_mysql {
            type Orm = $crate::outbox_sqlx::SqlxPool<$crate::sqlx::MySql>;
            $crate::sqlx_insert!($crate::sqlx::MySqlConnection);
            $app!();
            $crate::web_suite!($crate::sqlx::MySql, {
                let pool = $crate::outbox_sqlx::testing::mysql_pool().await;
                (pool.clone(), Orm::from(pool))
            });
        }

        mod sqlx_sqlite {
            type Orm = $crate::outbox_sqlx::SqlxPool<$crate::sqlx::Sqlite>;
            $crate::sqlx_insert!($crate::sqlx::SqliteConnection);
            $app!();
            $crate::web_suite!($crate::sqlx::Sqlite, {
                let file = $crate::outbox_core::testing::sqlite_file("outbox-web");
                let pool = $crate::outbox_sqlx::testing::sqlite_pool(&file).await;
                (pool.clone(), Orm::from(pool))
            });
        }

        mod seaorm_postgres {
            $crate::seaorm_insert!();
            $app!();
            $crate::web_suite!($crate::sqlx::Postgres, {
                let pool = $crate::outbox_sqlx::testing::postgres_pool().await;
                let db =
                    $crate::sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
                (pool, Orm::from(db))
            });
        }

        mod seaorm_mysql {
            $crate::seaorm_insert!();
            $app!();
            $crate::web_suite!($crate::sqlx::MySql, {
                let pool = $crate::outbox_sqlx::testing::mysql_pool().await;
                let db = $crate::sea_orm::SqlxMySqlConnector::from_sqlx_mysql_pool(pool.clone());
                (pool, Orm::from(db))
            });
        }

        mod seaorm_sqlite {
            $crate::seaorm_insert!();
            $app!();
            $crate::web_suite!($crate::sqlx::Sqlite, {
                let file = $crate::outbox_core::testing::sqlite_file("outbox-web");
                let pool = $crate::outbox_sqlx::testing::sqlite_pool(&file).await;
                let db = $crate::sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
                (pool, Orm::from(db))
            });
        }

        mod diesel_async_postgres {
            $crate::diesel_async_insert!($crate::diesel_async::AsyncPgConnection);
            $app!();
            $crate::web_suite!($crate::sqlx::Postgres, {
                let pool = $crate::outbox_sqlx::testing::postgres_pool().await;
                let url = $crate::outbox_sqlx::testing::url(
                    "OUTBOX_TEST_POSTGRES_URL",
                    $crate::outbox_sqlx::testing::POSTGRES_DEFAULT,
                );
                let diesel =
                    $crate::outbox_diesel::testing::async_pool("PostgreSQL", &url, 32).await;
                (pool, Orm::from(diesel))
            });
        }

        mod diesel_async_mysql {
            $crate::diesel_async_insert!($crate::diesel_async::AsyncMysqlConnection);
            $app!();
            $crate::web_suite!($crate::sqlx::MySql, {
                let pool = $crate::outbox_sqlx::testing::mysql_pool().await;
                let url = $crate::outbox_sqlx::testing::url(
                    "OUTBOX_TEST_MYSQL_URL",
                    $crate::outbox_sqlx::testing::MYSQL_DEFAULT,
                );
                let diesel = $crate::outbox_diesel::testing::async_pool("MariaDB", &url, 32).await;
                (pool, Orm::from(diesel))
            });
        }

        mod diesel_async_sqlite {
            $crate::diesel_async_insert!($crate::outbox_diesel::asynchronous::SqliteConnection);
            $app!();
            $crate::web_suite!($crate::sqlx::Sqlite, {
                let file = $crate::outbox_core::testing::sqlite_file("outbox-web");
                let pool = $crate::outbox_sqlx::testing::sqlite_pool(&file).await;
                let manager = $crate::outbox_diesel::asynchronous::sqlite_manager(
                    file.to_str().unwrap(),
                    std::time::Duration::from_secs(30),
                );
                let diesel =
                    $crate::outbox_diesel::testing::async_pool_with("SQLite", "file", manager, 4)
                        .await;
                (pool, Orm::from(diesel))
            });
        }
    };
}

/// `insert` on a sqlx connection (`&mut PgConnection`, ...).
#[macro_export]
macro_rules! sqlx_insert {
    ($conn:ty) => {
        async fn insert(conn: &mut $conn, sql: &str) -> Result<(), $crate::BoxError> {
            $crate::sqlx::query($crate::sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(conn)
                .await?;
            Ok(())
        }
    };
}

/// `Orm` and `insert` for sea-orm: the connection is the `DatabaseTransaction`.
#[macro_export]
macro_rules! seaorm_insert {
    () => {
        type Orm = $crate::outbox_seaorm::SeaOrmPool;

        async fn insert(
            tx: &mut $crate::sea_orm::DatabaseTransaction,
            sql: &str,
        ) -> Result<(), $crate::BoxError> {
            $crate::sea_orm::ConnectionTrait::execute_unprepared(&*tx, sql).await?;
            Ok(())
        }
    };
}

/// `Orm` and `insert` for diesel-async: the connection is diesel-async's, pooled by deadpool.
#[macro_export]
macro_rules! diesel_async_insert {
    ($conn:ty) => {
        type Orm = $crate::outbox_diesel::asynchronous::AsyncDieselPool<$conn>;

        async fn insert(conn: &mut $conn, sql: &str) -> Result<(), $crate::BoxError> {
            $crate::diesel_async::RunQueryDsl::execute($crate::diesel::sql_query(sql), conn)
                .await?;
            Ok(())
        }
    };
}

/// Any error, as the handlers' `insert` returns it.
pub type BoxError = outbox_core::BoxError;
