//! outbox-axum through a real HTTP server on a loopback port, with the request transaction on
//! sqlx, sea-orm and diesel-async, each on PostgreSQL (`OUTBOX_TEST_POSTGRES_URL`), MariaDB
//! (`OUTBOX_TEST_MYSQL_URL`) and SQLite (a file in the temporary directory): the shared
//! scenarios of `outbox-web-testing`, and those only axum has.

/// The app the shared scenarios run against (the routes of `outbox_web_testing`'s docs), its
/// `serve`, and the scenarios only axum has.
macro_rules! axum_app {
    () => {
        /// hyper drops the handler future of a client that disconnects.
        const CANCELS_ON_DISCONNECT: bool = true;

        use axum::Router;
        use axum::extract::{FromRequestParts, Path, Request, State};
        use axum::http::StatusCode;
        use axum::middleware::{self, Next};
        use axum::response::{IntoResponse, Response};
        use axum::routing::{get, post};
        use outbox_axum::{OutboxLayer, TxDecision, UnitOfWork};
        use tower_http::catch_panic::CatchPanicLayer;

        type Tx = outbox_axum::Tx<Pool>;
        type HandlerResult<T> = Result<T, outbox_axum::Error>;

        async fn insert_order(tx: &mut Tx, orders: &str, id: i64) -> HandlerResult<()> {
            insert(&mut **tx, &order_sql(orders, id))
                .await
                .map_err(outbox_axum::Error::database)
        }

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

        /// Writes order `id` and enqueues its event, then answers `status` with `decision`.
        async fn answer(
            orders: &str,
            id: i64,
            mut tx: Tx,
            status: StatusCode,
            decision: Option<TxDecision>,
        ) -> HandlerResult<Response> {
            insert_order(&mut tx, orders, id).await?;
            tx.enqueue(event(id, 0))?;
            Ok(match decision {
                Some(decision) => (decision, status).into_response(),
                None => status.into_response(),
            })
        }

        async fn reject(
            s: State<Arc<str>>,
            Path(id): Path<i64>,
            tx: Tx,
        ) -> HandlerResult<Response> {
            answer(&s.0, id, tx, StatusCode::UNPROCESSABLE_ENTITY, None).await
        }

        async fn conflict(
            s: State<Arc<str>>,
            Path(id): Path<i64>,
            tx: Tx,
        ) -> HandlerResult<Response> {
            answer(&s.0, id, tx, StatusCode::CONFLICT, Some(TxDecision::Commit)).await
        }

        async fn preview(
            s: State<Arc<str>>,
            Path(id): Path<i64>,
            tx: Tx,
        ) -> HandlerResult<Response> {
            answer(&s.0, id, tx, StatusCode::OK, Some(TxDecision::Rollback)).await
        }

        async fn panic(s: State<Arc<str>>, Path(id): Path<i64>, tx: Tx) -> HandlerResult<Response> {
            answer(&s.0, id, tx, StatusCode::OK, None).await?;
            panic!("the handler panics after writing order {id}");
        }

        async fn slow(s: State<Arc<str>>, Path(id): Path<i64>, tx: Tx) -> HandlerResult<Response> {
            let response = answer(&s.0, id, tx, StatusCode::CREATED, None).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            response
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

        /// A middleware that takes the transaction before the handler: writes order
        /// id + 1,000,000 and hands the transaction on.
        async fn audit(State(orders): State<Arc<str>>, request: Request, next: Next) -> Response {
            let (mut parts, body) = request.into_parts();
            let id: i64 = parts
                .uri
                .path()
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
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

        async fn create_one(
            orders: State<Arc<str>>,
            Path(id): Path<i64>,
            tx: Tx,
        ) -> HandlerResult<StatusCode> {
            create(orders, Path((id, 1)), tx).await
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

        fn layer(env: &Env, setup: &Setup) -> OutboxLayer<Pool> {
            let mut layer = OutboxLayer::new(env.counting.clone()).table(env.table(setup));
            if let Some(wake) = setup.wake.clone() {
                layer = layer.wake(wake);
            }
            if let Some(when) = setup.commit_when {
                layer = layer.commit_when(move |status| when(status.as_u16()));
            }
            layer
        }

        async fn listen(app: Router) -> std::net::SocketAddr {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            addr
        }

        /// The app with a panic caught outside the layer.
        async fn serve(env: &Env, setup: Setup) -> std::net::SocketAddr {
            let app = app(&env.orders);
            let app = if setup.without_layer {
                app
            } else {
                app.layer(layer(env, &setup))
            };
            listen(app.layer(CatchPanicLayer::new())).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_panic_caught_inside_the_layer_rolls_back_too() {
            let env = Env::new().await;
            let app = app(&env.orders).layer(CatchPanicLayer::new());
            let addr = listen(app.layer(layer(&env, &Setup::default()))).await;
            assert_eq!(
                outbox_web_testing::send(addr, "POST", "/panic/4").await.0,
                500
            );
            assert_eq!(
                Counts::get(&env.counts().rollbacks),
                1,
                "rolled back before the response"
            );
            assert_eq!(env.saved(4).await, (0, 0));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_dropped_response_future_rolls_back_or_commits_whole() {
            use tower_service::Service;
            let env = Env::new().await;
            let mut app = app(&env.orders).layer(layer(&env, &Setup::default()));
            // Dropped while the handler sleeps: rolled back.
            let request = Request::post("/slow/12")
                .body(axum::body::Body::empty())
                .unwrap();
            let call = app.call(request);
            assert!(
                tokio::time::timeout(Duration::from_millis(300), call)
                    .await
                    .is_err()
            );
            env.until("the abandoned request's rollback", |c| {
                Counts::get(&c.rollbacks) == 1
            })
            .await;
            assert_eq!(env.saved(12).await, (0, 0));
            // Dropped during the commit: committed whole.
            env.counts().commit_delay_ms.store(500, Ordering::SeqCst);
            let request = Request::post("/orders/13/3")
                .body(axum::body::Body::empty())
                .unwrap();
            let call = app.call(request);
            assert!(
                tokio::time::timeout(Duration::from_millis(200), call)
                    .await
                    .is_err()
            );
            assert_eq!(
                Counts::get(&env.counts().commits),
                1,
                "the commit had started"
            );
            assert!(
                outbox_web_testing::eventually(Duration::from_secs(5), || async {
                    env.orders(13).await == 1
                })
                .await
            );
            assert_eq!(env.events(13).await, 3);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_missing_layer_error_names_the_fix() {
            let text = outbox_axum::TxRejection::MissingLayer.to_string();
            assert!(
                text.contains(".layer(outbox_axum::OutboxLayer::new(pool))"),
                "{text}"
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handler_runs_in_a_unit_test_on_a_plain_transaction() {
            let env = Env::new().await;
            let tx = outbox_axum::TransactionPool::begin(&env.counting)
                .await
                .unwrap();
            let tx = Tx::from_transaction(tx, env.outbox.outbox_table().clone());
            let unit: UnitOfWork<Pool> = tx.unit().clone();
            let status = create(State(Arc::clone(&env.orders)), Path((30, 2)), tx)
                .await
                .unwrap();
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(unit.pending_messages().len(), 2);
            let finished = unit.finish(true).await.unwrap();
            assert_eq!(finished, outbox_axum::Finished::Committed { messages: 2 });
            assert_eq!(env.saved(30).await, (1, 2));
        }
    };
}

outbox_web_testing::adapters!(axum_app);
