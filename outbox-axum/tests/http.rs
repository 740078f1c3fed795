//! outbox-axum through a real HTTP server on a loopback port, with the request transaction on
//! sqlx, sea-orm and diesel-async, each on PostgreSQL (`OUTBOX_TEST_POSTGRES_URL`), MariaDB
//! (`OUTBOX_TEST_MYSQL_URL`) and SQLite (a file in the temporary directory).

mod support;

/// The suite for one adapter on one database. The invoking module names `Orm` (the adapter's
/// pool type) and `insert` (writes an order on the adapter's connection); `$db` is the sqlx
/// database the tests check the tables with, `$pools` gives a sqlx pool and an `Orm` on the
/// same database.
macro_rules! http_suite {
    ($db:ty, $pools:expr) => {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        use std::time::{Duration, Instant};

        use axum::Router;
        use axum::extract::{FromRequestParts, Path, Request, State};
        use axum::http::StatusCode;
        use axum::middleware::{self, Next};
        use axum::response::{IntoResponse, Response};
        use axum::routing::{get, post};
        use outbox_axum::{OutboxLayer, TxDecision, UnitOfWork};
        use outbox_core::memory::CollectingPublisher;
        use outbox_sqlx::{Message, Outbox, Relay};
        use sqlx::AssertSqlSafe;
        use tower_http::catch_panic::CatchPanicLayer;

        use crate::support::{self, Counting, Counts};

        type Pool = Counting<Orm>;
        type Tx = outbox_axum::Tx<Pool>;
        type HandlerResult<T> = Result<T, outbox_axum::Error>;

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
                let outbox = Outbox::<$db>::with_table(&outbox_core::testing::fresh_table())
                    .unwrap();
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

            fn layer(&self) -> OutboxLayer<Pool> {
                OutboxLayer::new(self.counting.clone()).table(self.outbox.outbox_table().clone())
            }

            /// The test app on a loopback port, with a panic caught outside the layer.
            async fn serve(&self, layer: OutboxLayer<Pool>) -> std::net::SocketAddr {
                support::serve(app(&self.orders).layer(layer).layer(CatchPanicLayer::new())).await
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

            async fn all_events(&self) -> i64 {
                self.scalar(format!("SELECT COUNT(*) FROM {}", self.outbox.table())).await
            }
        }

        async fn insert_order(tx: &mut Tx, orders: &str, id: i64) -> HandlerResult<()> {
            let sql = format!("INSERT INTO {orders} (id, total) VALUES ({id}, {})", id * 100);
            insert(&mut **tx, &sql).await
        }

        fn event(id: i64, n: usize) -> Message {
            Message::json("order.created", &serde_json::json!({ "id": id, "n": n }))
                .unwrap()
                .key(id)
                .unwrap()
        }

        /// Writes the order and enqueues `events` events for it.
        async fn create(
            State(orders): State<Arc<str>>,
            Path((id, events)): Path<(i64, usize)>,
            mut tx: Tx,
        ) -> HandlerResult<StatusCode> {
            insert_order(&mut tx, &orders, id).await?;
            for n in 0..events {
                tx.enqueue(event(id, n))?;
            }
            Ok(StatusCode::CREATED)
        }

        async fn reject(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            mut tx: Tx,
        ) -> HandlerResult<StatusCode> {
            insert_order(&mut tx, &orders, id).await?;
            tx.enqueue(event(id, 0))?;
            Ok(StatusCode::UNPROCESSABLE_ENTITY)
        }

        async fn panic(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            mut tx: Tx,
        ) -> HandlerResult<StatusCode> {
            insert_order(&mut tx, &orders, id).await?;
            tx.enqueue(event(id, 0))?;
            panic!("the handler panics after writing order {id}");
        }

        async fn conflict(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            mut tx: Tx,
        ) -> HandlerResult<impl IntoResponse> {
            insert_order(&mut tx, &orders, id).await?;
            tx.enqueue(event(id, 0))?;
            Ok((TxDecision::Commit, StatusCode::CONFLICT))
        }

        async fn preview(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            mut tx: Tx,
        ) -> HandlerResult<impl IntoResponse> {
            insert_order(&mut tx, &orders, id).await?;
            tx.enqueue(event(id, 0))?;
            Ok((TxDecision::Rollback, "preview only"))
        }

        /// Moves the transaction into a task that outlives the handler.
        async fn held(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            mut tx: Tx,
        ) -> StatusCode {
            tokio::spawn(async move {
                insert_order(&mut tx, &orders, id).await.unwrap();
                tx.enqueue(event(id, 0)).unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            });
            StatusCode::OK
        }

        /// Writes, then takes 2 s to answer.
        async fn slow(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            mut tx: Tx,
        ) -> HandlerResult<StatusCode> {
            insert_order(&mut tx, &orders, id).await?;
            tx.enqueue(event(id, 0))?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(StatusCode::CREATED)
        }

        /// Two handles at once.
        async fn twice(_a: Tx, _b: Tx) -> StatusCode {
            StatusCode::OK
        }

        async fn big(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            mut tx: Tx,
        ) -> HandlerResult<StatusCode> {
            insert_order(&mut tx, &orders, id).await?;
            tx.enqueue(Message::bytes("order.created", vec![b'x'; 4096])?.key(id)?)?;
            Ok(StatusCode::CREATED)
        }

        /// A middleware that takes the transaction before the handler: writes an audit order
        /// (id + 1,000,000) and hands the transaction on.
        async fn audit(State(orders): State<Arc<str>>, request: Request, next: Next) -> Response {
            let (mut parts, body) = request.into_parts();
            let id: i64 = parts.uri.path().rsplit('/').next().unwrap().parse().unwrap();
            {
                let mut tx = match Tx::from_request_parts(&mut parts, &()).await {
                    Ok(tx) => tx,
                    Err(rejection) => return rejection.into_response(),
                };
                if let Err(err) = insert_order(&mut tx, &orders, id + 1_000_000).await {
                    return err.into_response();
                }
            }
            next.run(Request::from_parts(parts, body)).await
        }

        fn app(orders: &Arc<str>) -> Router {
            let audited = Router::new()
                .route("/audited/{id}", post(create_one))
                .route_layer(middleware::from_fn_with_state(Arc::clone(orders), audit));
            Router::new()
                .route("/orders/{id}/{events}", post(create))
                .route("/reject/{id}", post(reject))
                .route("/panic/{id}", post(panic))
                .route("/conflict/{id}", post(conflict))
                .route("/preview/{id}", post(preview))
                .route("/held/{id}", post(held))
                .route("/slow/{id}", post(slow))
                .route("/twice", post(twice))
                .route("/big/{id}", post(big))
                .route("/health", get(|| async { "ok" }))
                .merge(audited)
                .with_state(Arc::clone(orders))
        }

        async fn create_one(
            State(orders): State<Arc<str>>,
            Path(id): Path<i64>,
            tx: Tx,
        ) -> HandlerResult<StatusCode> {
            create(State(orders), Path((id, 1)), tx).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_success_commits_the_row_and_its_events_in_one_statement() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            let (status, _) = support::send(addr, "POST", "/orders/1/5").await;
            assert_eq!(status, 201);
            assert_eq!(env.orders(1).await, 1, "the order is committed");
            assert_eq!(env.events(1).await, 5, "its five events are committed");
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
            let addr = env.serve(env.layer()).await;
            assert_eq!(support::send(addr, "POST", "/reject/2").await.0, 422);
            assert_eq!(env.orders(2).await, 0);
            assert_eq!(env.events(2).await, 0);
            assert_eq!(Counts::get(&env.counts().rollbacks), 1);
            assert_eq!(Counts::get(&env.counts().outbox_statements), 0, "nothing was flushed");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_panic_rolls_back_the_row_and_its_events() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            assert_eq!(support::send(addr, "POST", "/panic/3").await.0, 500);
            assert!(
                support::eventually(Duration::from_secs(5), || async {
                    Counts::get(&env.counts().rollbacks) == 1
                })
                .await,
                "the panicked request's transaction is rolled back"
            );
            assert_eq!(env.orders(3).await, 0);
            assert_eq!(env.events(3).await, 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_panic_caught_inside_the_layer_rolls_back_too() {
            let env = Env::new().await;
            let app = app(&env.orders).layer(CatchPanicLayer::new()).layer(env.layer());
            let addr = support::serve(app).await;
            assert_eq!(support::send(addr, "POST", "/panic/4").await.0, 500);
            assert_eq!(Counts::get(&env.counts().rollbacks), 1, "rolled back before the response");
            assert_eq!(env.orders(4).await, 0);
            assert_eq!(env.events(4).await, 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_per_response_decision_overrides_the_status() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            assert_eq!(support::send(addr, "POST", "/conflict/5").await.0, 409);
            assert_eq!((env.orders(5).await, env.events(5).await), (1, 1), "409 committed");
            assert_eq!(support::send(addr, "POST", "/preview/6").await.0, 200);
            assert_eq!((env.orders(6).await, env.events(6).await), (0, 0), "200 rolled back");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_success_predicate_is_configurable() {
            let env = Env::new().await;
            let layer = env.layer().commit_when(|status| status == StatusCode::CREATED);
            let addr = env.serve(layer).await;
            assert_eq!(support::send(addr, "POST", "/orders/7/1").await.0, 201);
            assert_eq!(support::send(addr, "POST", "/conflict/8").await.0, 409);
            assert_eq!((env.orders(7).await, env.events(7).await), (1, 1));
            assert_eq!((env.orders(8).await, env.events(8).await), (1, 1), "override wins");
            let layer = env.layer().commit_when(|_| false);
            let addr = env.serve(layer).await;
            assert_eq!(support::send(addr, "POST", "/orders/9/1").await.0, 201);
            assert_eq!((env.orders(9).await, env.events(9).await), (0, 0));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_request_that_never_asks_takes_no_connection() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            for _ in 0..10 {
                let (status, body) = support::send(addr, "GET", "/health").await;
                assert_eq!((status, body.as_str()), (200, "ok"));
            }
            assert_eq!(Counts::get(&env.counts().begins), 0, "no transaction was begun");
            assert_eq!(Counts::get(&env.counts().commits), 0);
            assert_eq!(Counts::get(&env.counts().rollbacks), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_hundred_concurrent_requests_each_get_their_own_transaction() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            let requests: Vec<_> = (100..200)
                .map(|id| {
                    tokio::spawn(async move {
                        let path = if id % 10 == 0 {
                            format!("/reject/{id}")
                        } else {
                            format!("/orders/{id}/2")
                        };
                        support::send(addr, "POST", &path).await.0
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
                assert_eq!((env.orders(id).await, env.events(id).await), want, "order {id}");
            }
            assert_eq!(env.all_events().await, 180, "no event leaked into another request");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_client_that_disconnects_while_the_handler_runs_leaves_neither() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            let stream = support::open(addr, "POST", "/slow/10").await;
            assert!(
                support::eventually(Duration::from_secs(5), || async {
                    Counts::get(&env.counts().begins) == 1
                })
                .await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(stream);
            // The handler would have answered after 2 s: by 3 s it is either cancelled and
            // rolled back, or done; both or neither of the row and event are saved either way.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let saved = (env.orders(10).await, env.events(10).await);
            assert!(saved == (0, 0) || saved == (1, 1), "row and event apart: {saved:?}");
            assert_eq!(saved, (0, 0), "a disconnected client's unfinished request is rolled back");
            assert_eq!(Counts::get(&env.counts().rollbacks), 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_client_that_disconnects_during_the_commit_leaves_both() {
            let env = Env::new().await;
            env.counts().commit_delay_ms.store(500, Ordering::SeqCst);
            let addr = env.serve(env.layer()).await;
            let stream = support::open(addr, "POST", "/orders/11/1").await;
            assert!(
                support::eventually(Duration::from_secs(5), || async {
                    Counts::get(&env.counts().commits) == 1
                })
                .await,
                "the commit started"
            );
            drop(stream);
            assert!(
                support::eventually(Duration::from_secs(5), || async {
                    env.orders(11).await == 1
                })
                .await,
                "the commit completes without its client"
            );
            assert_eq!(env.events(11).await, 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_dropped_response_future_rolls_back_or_commits_whole() {
            use tower_service::Service;
            let env = Env::new().await;
            let mut app = app(&env.orders).layer(env.layer());
            // Dropped while the handler sleeps: rolled back.
            let request = Request::post("/slow/12").body(axum::body::Body::empty()).unwrap();
            let call = app.call(request);
            assert!(tokio::time::timeout(Duration::from_millis(300), call).await.is_err());
            assert!(
                support::eventually(Duration::from_secs(5), || async {
                    Counts::get(&env.counts().rollbacks) == 1
                })
                .await,
                "the abandoned request is rolled back"
            );
            assert_eq!((env.orders(12).await, env.events(12).await), (0, 0));
            // Dropped during the commit: committed whole.
            env.counts().commit_delay_ms.store(500, Ordering::SeqCst);
            let request = Request::post("/orders/13/3").body(axum::body::Body::empty()).unwrap();
            let call = app.call(request);
            assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err());
            assert_eq!(Counts::get(&env.counts().commits), 1, "the commit had started");
            assert!(
                support::eventually(Duration::from_secs(5), || async {
                    env.orders(13).await == 1
                })
                .await
            );
            assert_eq!(env.events(13).await, 3);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handle_still_held_is_a_server_error_not_a_silent_commit() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            let (status, body) = support::send(addr, "POST", "/held/14").await;
            assert_eq!(status, 500, "{body}");
            assert!(body.contains("not saved"), "{body}");
            assert!(
                support::eventually(Duration::from_secs(5), || async {
                    Counts::get(&env.counts().rollbacks) == 1
                })
                .await,
                "rolled back once the task drops its handle"
            );
            assert_eq!((env.orders(14).await, env.events(14).await), (0, 0));
            assert_eq!(Counts::get(&env.counts().commits), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_failed_flush_is_a_server_error_and_saves_nothing() {
            let env = Env::new().await;
            let missing = Outbox::<$db>::with_table(&outbox_core::testing::fresh_table()).unwrap();
            let layer = env.layer().table(missing.outbox_table().clone());
            let addr = env.serve(layer).await;
            let (status, body) = support::send(addr, "POST", "/orders/15/1").await;
            assert_eq!(status, 500, "{body}");
            assert_eq!(env.orders(15).await, 0, "the business row went with the failed flush");
            assert_eq!(Counts::get(&env.counts().commits), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_oversized_payload_is_refused_when_enqueued() {
            let env = Env::new().await;
            let table = env.outbox.outbox_table().clone().max_payload_bytes(1024);
            let addr = env.serve(env.layer().table(table)).await;
            let (status, _) = support::send(addr, "POST", "/big/16").await;
            assert_eq!(status, 413);
            assert_eq!((env.orders(16).await, env.events(16).await), (0, 0));
            assert_eq!(Counts::get(&env.counts().outbox_statements), 0, "refused before any flush");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_transaction_can_be_taken_again_but_not_twice_at_once() {
            let env = Env::new().await;
            let addr = env.serve(env.layer()).await;
            assert_eq!(support::send(addr, "POST", "/audited/17").await.0, 201);
            assert_eq!(env.orders(17).await, 1);
            assert_eq!(env.orders(1_000_017).await, 1, "the middleware's row, same transaction");
            assert_eq!(Counts::get(&env.counts().begins), 1);
            assert_eq!(support::send(addr, "POST", "/twice").await.0, 500);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_missing_layer_is_a_server_error_that_names_it() {
            let env = Env::new().await;
            let addr = support::serve(app(&env.orders)).await;
            assert_eq!(support::send(addr, "POST", "/orders/18/1").await.0, 500);
            let text = outbox_axum::TxRejection::MissingLayer.to_string();
            assert!(text.contains(".layer(outbox_axum::OutboxLayer::new(pool))"), "{text}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_woken_relay_publishes_at_once_after_the_commit() {
            let env = Env::new().await;
            let publisher = CollectingPublisher::new();
            let relay = Relay::builder(env.outbox.store(env.pool.clone()), publisher.clone())
                .poll_interval(Duration::from_secs(30))
                .build()
                .unwrap();
            let layer = env.layer().wake(relay.wake_handle());
            let shutdown = tokio_util::sync::CancellationToken::new();
            let running = {
                let shutdown = shutdown.clone();
                tokio::spawn(async move { relay.run(shutdown.cancelled_owned()).await })
            };
            // Let the relay's first (empty) poll pass, so only a wake can bring it back soon.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let addr = env.serve(layer).await;
            let mut slowest = Duration::ZERO;
            for id in 19..29 {
                assert_eq!(support::send(addr, "POST", &format!("/orders/{id}/1")).await.0, 201);
                let sent = Instant::now();
                let want = (id - 18) as usize;
                assert!(
                    support::eventually(Duration::from_secs(5), || async {
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handler_runs_in_a_unit_test_on_a_plain_transaction() {
            let env = Env::new().await;
            let tx = outbox_axum::TransactionPool::begin(&env.counting).await.unwrap();
            let tx = Tx::from_transaction(tx, env.outbox.outbox_table().clone());
            let unit: UnitOfWork<Pool> = tx.unit().clone();
            let status = create(State(Arc::clone(&env.orders)), Path((30, 2)), tx).await.unwrap();
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(unit.pending_messages().len(), 2);
            assert_eq!(unit.finish(true).await.unwrap(), outbox_axum::Finished::Committed { messages: 2 });
            assert_eq!((env.orders(30).await, env.events(30).await), (1, 2));
        }
    };
}

/// sqlx: the connection is the driver's (`&mut PgConnection`, ...).
macro_rules! sqlx_insert {
    ($conn:ty) => {
        async fn insert(conn: &mut $conn, sql: &str) -> Result<(), outbox_axum::Error> {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(conn)
                .await?;
            Ok(())
        }
    };
}

/// sea-orm: the connection is the `DatabaseTransaction`.
macro_rules! seaorm_insert {
    () => {
        type Orm = outbox_seaorm::SeaOrmPool;

        async fn insert(
            tx: &mut sea_orm::DatabaseTransaction,
            sql: &str,
        ) -> Result<(), outbox_axum::Error> {
            sea_orm::ConnectionTrait::execute_unprepared(&*tx, sql).await?;
            Ok(())
        }
    };
}

/// diesel-async: the connection is diesel-async's, pooled by deadpool.
macro_rules! diesel_async_insert {
    ($conn:ty) => {
        type Orm = outbox_diesel::asynchronous::AsyncDieselPool<$conn>;

        async fn insert(conn: &mut $conn, sql: &str) -> Result<(), outbox_axum::Error> {
            diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), conn).await?;
            Ok(())
        }
    };
}

mod sqlx_postgres {
    type Orm = outbox_sqlx::SqlxPool<sqlx::Postgres>;
    sqlx_insert!(sqlx::PgConnection);
    http_suite!(sqlx::Postgres, {
        let pool = outbox_sqlx::testing::postgres_pool().await;
        (pool.clone(), Orm::from(pool))
    });
}

mod sqlx_mysql {
    type Orm = outbox_sqlx::SqlxPool<sqlx::MySql>;
    sqlx_insert!(sqlx::MySqlConnection);
    http_suite!(sqlx::MySql, {
        let pool = outbox_sqlx::testing::mysql_pool().await;
        (pool.clone(), Orm::from(pool))
    });
}

mod sqlx_sqlite {
    type Orm = outbox_sqlx::SqlxPool<sqlx::Sqlite>;
    sqlx_insert!(sqlx::SqliteConnection);
    http_suite!(sqlx::Sqlite, {
        let file = outbox_core::testing::sqlite_file("outbox-axum");
        let pool = outbox_sqlx::testing::sqlite_pool(&file).await;
        (pool.clone(), Orm::from(pool))
    });
}

mod seaorm_postgres {
    seaorm_insert!();
    http_suite!(sqlx::Postgres, {
        let pool = outbox_sqlx::testing::postgres_pool().await;
        let db = sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
        (pool, Orm::from(db))
    });
}

mod seaorm_mysql {
    seaorm_insert!();
    http_suite!(sqlx::MySql, {
        let pool = outbox_sqlx::testing::mysql_pool().await;
        let db = sea_orm::SqlxMySqlConnector::from_sqlx_mysql_pool(pool.clone());
        (pool, Orm::from(db))
    });
}

mod seaorm_sqlite {
    seaorm_insert!();
    http_suite!(sqlx::Sqlite, {
        let file = outbox_core::testing::sqlite_file("outbox-axum");
        let pool = outbox_sqlx::testing::sqlite_pool(&file).await;
        let db = sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
        (pool, Orm::from(db))
    });
}

mod diesel_async_postgres {
    diesel_async_insert!(diesel_async::AsyncPgConnection);
    http_suite!(sqlx::Postgres, {
        let pool = outbox_sqlx::testing::postgres_pool().await;
        let url = outbox_sqlx::testing::url(
            "OUTBOX_TEST_POSTGRES_URL",
            outbox_sqlx::testing::POSTGRES_DEFAULT,
        );
        let diesel = outbox_diesel::testing::async_pool("PostgreSQL", &url, 32).await;
        (pool, Orm::from(diesel))
    });
}

mod diesel_async_mysql {
    diesel_async_insert!(diesel_async::AsyncMysqlConnection);
    http_suite!(sqlx::MySql, {
        let pool = outbox_sqlx::testing::mysql_pool().await;
        let url =
            outbox_sqlx::testing::url("OUTBOX_TEST_MYSQL_URL", outbox_sqlx::testing::MYSQL_DEFAULT);
        let diesel = outbox_diesel::testing::async_pool("MariaDB", &url, 32).await;
        (pool, Orm::from(diesel))
    });
}

mod diesel_async_sqlite {
    diesel_async_insert!(outbox_diesel::asynchronous::SqliteConnection);
    http_suite!(sqlx::Sqlite, {
        let file = outbox_core::testing::sqlite_file("outbox-axum");
        let pool = outbox_sqlx::testing::sqlite_pool(&file).await;
        let manager = outbox_diesel::asynchronous::sqlite_manager(
            file.to_str().unwrap(),
            std::time::Duration::from_secs(30),
        );
        let diesel = outbox_diesel::testing::async_pool_with("SQLite", "file", manager, 4).await;
        (pool, Orm::from(diesel))
    });
}
