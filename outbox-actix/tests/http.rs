//! outbox-actix through a real actix-web server on a loopback port, with the request
//! transaction on sqlx, sea-orm and diesel-async, each on PostgreSQL
//! (`OUTBOX_TEST_POSTGRES_URL`), MariaDB (`OUTBOX_TEST_MYSQL_URL`) and SQLite (a file in the
//! temporary directory): the shared scenarios of `outbox-web-testing`, and those only actix
//! has.

/// The app the shared scenarios run against (the routes of `outbox_web_testing`'s docs), its
/// `serve`, and the scenarios only actix has.
macro_rules! actix_app {
    () => {
        /// actix-web runs a handler to its end after its client disconnects.
        const CANCELS_ON_DISCONNECT: bool = false;

        use actix_web::http::StatusCode;
        use actix_web::middleware::Condition;
        use actix_web::{App, FromRequest, HttpRequest, HttpResponse, HttpServer, web};
        use outbox_actix::{OutboxMiddleware, TxDecision, UnitOfWork};

        type Tx = outbox_actix::Tx<Pool>;
        type HandlerResult<T> = Result<T, outbox_actix::Error>;
        type Orders = web::Data<Arc<str>>;

        async fn insert_order(tx: &mut Tx, orders: &str, id: i64) -> HandlerResult<()> {
            insert(&mut **tx, &order_sql(orders, id))
                .await
                .map_err(outbox_actix::Error::database)
        }

        async fn create(
            orders: Orders,
            path: web::Path<(i64, usize)>,
            mut tx: Tx,
        ) -> HandlerResult<HttpResponse> {
            let (id, events) = path.into_inner();
            insert_order(&mut tx, &orders, id).await?;
            for n in 0..events {
                tx.enqueue(event(id, n))?;
            }
            Ok(HttpResponse::Created().finish())
        }

        /// Writes order `id` and enqueues its event, then answers `status` with `decision`.
        async fn answer(
            orders: &str,
            id: i64,
            mut tx: Tx,
            status: StatusCode,
            decision: Option<TxDecision>,
        ) -> HandlerResult<HttpResponse> {
            insert_order(&mut tx, orders, id).await?;
            tx.enqueue(event(id, 0))?;
            let response = HttpResponse::build(status).finish();
            Ok(match decision {
                Some(decision) => decision.on(response),
                None => response,
            })
        }

        async fn reject(o: Orders, id: web::Path<i64>, tx: Tx) -> HandlerResult<HttpResponse> {
            answer(&o, *id, tx, StatusCode::UNPROCESSABLE_ENTITY, None).await
        }

        async fn conflict(o: Orders, id: web::Path<i64>, tx: Tx) -> HandlerResult<HttpResponse> {
            answer(&o, *id, tx, StatusCode::CONFLICT, Some(TxDecision::Commit)).await
        }

        async fn preview(o: Orders, id: web::Path<i64>, tx: Tx) -> HandlerResult<HttpResponse> {
            answer(&o, *id, tx, StatusCode::OK, Some(TxDecision::Rollback)).await
        }

        async fn panic(o: Orders, id: web::Path<i64>, tx: Tx) -> HandlerResult<HttpResponse> {
            answer(&o, *id, tx, StatusCode::OK, None).await?;
            panic!("the handler panics after writing order {id}");
        }

        async fn slow(o: Orders, id: web::Path<i64>, tx: Tx) -> HandlerResult<HttpResponse> {
            let response = answer(&o, *id, tx, StatusCode::CREATED, None).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            response
        }

        /// Moves the transaction into a task that outlives the handler.
        async fn held(orders: Orders, id: web::Path<i64>, mut tx: Tx) -> HttpResponse {
            let id = *id;
            tokio::spawn(async move {
                insert_order(&mut tx, &orders, id).await.unwrap();
                tx.enqueue(event(id, 0)).unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            });
            HttpResponse::Ok().finish()
        }

        async fn twice(_a: Tx, _b: Tx) -> HttpResponse {
            HttpResponse::Ok().finish()
        }

        async fn big(
            orders: Orders,
            id: web::Path<i64>,
            mut tx: Tx,
        ) -> HandlerResult<HttpResponse> {
            insert_order(&mut tx, &orders, *id).await?;
            tx.enqueue(Message::bytes("order.created", vec![b'x'; 4096])?.key(*id)?)?;
            Ok(HttpResponse::Created().finish())
        }

        /// Takes the transaction, writes order id + 1,000,000, drops it, and takes it again.
        async fn audited(
            request: HttpRequest,
            orders: Orders,
            id: web::Path<i64>,
        ) -> HandlerResult<HttpResponse> {
            let id = *id;
            {
                let mut tx = Tx::extract(&request).await?;
                insert_order(&mut tx, &orders, id + 1_000_000).await?;
            }
            let tx = Tx::extract(&request).await?;
            create(orders, web::Path::from((id, 1)), tx).await
        }

        fn middleware(env: &Env, setup: &Setup) -> OutboxMiddleware<Pool> {
            let mut middleware =
                OutboxMiddleware::new(env.counting.clone()).table(env.table(setup));
            if let Some(wake) = setup.wake.clone() {
                middleware = middleware.wake(wake);
            }
            if let Some(when) = setup.commit_when {
                middleware = middleware.commit_when(move |status| when(status.as_u16()));
            }
            middleware
        }

        async fn serve(env: &Env, setup: Setup) -> std::net::SocketAddr {
            let orders = web::Data::new(Arc::clone(&env.orders));
            let middleware = middleware(env, &setup);
            let enabled = !setup.without_layer;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(orders.clone())
                    .route("/orders/{id}/{events}", web::post().to(create))
                    .route("/reject/{id}", web::post().to(reject))
                    .route("/panic/{id}", web::post().to(panic))
                    .route("/conflict/{id}", web::post().to(conflict))
                    .route("/preview/{id}", web::post().to(preview))
                    .route("/held/{id}", web::post().to(held))
                    .route("/slow/{id}", web::post().to(slow))
                    .route("/twice", web::post().to(twice))
                    .route("/big/{id}", web::post().to(big))
                    .route("/audited/{id}", web::post().to(audited))
                    .route("/health", web::get().to(|| async { "ok" }))
                    .wrap(Condition::new(enabled, middleware.clone()))
            })
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            tokio::spawn(server);
            addr
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_missing_middleware_error_names_the_fix() {
            let text = outbox_actix::TxRejection::MissingLayer.to_string();
            assert!(
                text.contains(".wrap(outbox_actix::OutboxMiddleware::new(pool))"),
                "{text}"
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handler_runs_in_a_unit_test_on_a_plain_transaction() {
            let env = Env::new().await;
            let tx = outbox_actix::TransactionPool::begin(&env.counting)
                .await
                .unwrap();
            let tx = Tx::from_transaction(tx, env.outbox.outbox_table().clone());
            let unit: UnitOfWork<Pool> = tx.unit().clone();
            let orders = web::Data::new(Arc::clone(&env.orders));
            let response = create(orders, web::Path::from((30, 2)), tx).await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            assert_eq!(unit.pending_messages().len(), 2);
            let finished = unit.finish(true).await.unwrap();
            assert_eq!(finished, outbox_actix::Finished::Committed { messages: 2 });
            assert_eq!(env.saved(30).await, (1, 2));
        }
    };
}

outbox_web_testing::adapters!(actix_app);
