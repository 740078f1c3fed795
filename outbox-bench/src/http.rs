//! The web layers: what `OutboxLayer` (axum) and `OutboxMiddleware` (actix-web) cost a
//! service, and how soon a request's event reaches the broker.
//!
//! * Overhead: requests per second of an order POST (one INSERT and one keyed event) through
//!   the layer, against the same handler beginning, enqueueing and committing by hand, under a
//!   keep-alive load generator on loopback, in alternating rounds of one run.
//! * Latency: the response's arrival at the client → the event's JetStream acknowledgement, at
//!   1,000 requests per second through the axum layer with the relay in process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use outbox_publishers::NatsPublisher;
use outbox_sqlx::{Message, Outbox, Relay, SqlxPool, Uuid, WakeHandle};
use sqlx::{PgPool, Postgres};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::BoxError;
use crate::fixtures::{Table, median};
use crate::latency::{Timed, percentiles};

/// The web framework under test.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framework {
    Axum,
    Actix,
}

/// What both variants of the handler share.
#[derive(Clone)]
struct Shared {
    pool: PgPool,
    outbox: Outbox<Postgres>,
    insert: &'static str,
    wake: Option<WakeHandle>,
}

fn event(id: i64) -> Result<Message, outbox_sqlx::Error> {
    Message::json(
        "bench.order",
        &serde_json::json!({ "id": id, "total": 100 }),
    )?
    .key(id)
}

/// The order handler managing its own transaction: what the layer is compared with.
async fn by_hand(shared: &Shared, id: i64) -> Result<String, BoxError> {
    let mut tx = shared.pool.begin().await?;
    sqlx::query(shared.insert)
        .bind(id)
        .bind(100_i64)
        .execute(&mut *tx)
        .await?;
    let message = event(id)?;
    let message_id = message.id();
    shared.outbox.enqueue(&mut *tx, message).await?;
    tx.commit().await?;
    if let Some(wake) = &shared.wake {
        wake.wake();
    }
    Ok(message_id.to_string())
}

mod axum_app {
    use axum::extract::{Path, State};
    use axum::routing::post;
    use outbox_axum::OutboxLayer;

    use super::*;

    type Tx = outbox_axum::Tx<SqlxPool<Postgres>>;

    async fn layered(
        State(shared): State<Shared>,
        Path(id): Path<i64>,
        mut tx: Tx,
    ) -> Result<String, outbox_axum::Error> {
        sqlx::query(shared.insert)
            .bind(id)
            .bind(100_i64)
            .execute(&mut *tx)
            .await?;
        let message = event(id)?;
        let message_id = message.id();
        tx.enqueue(message)?;
        Ok(message_id.to_string())
    }

    async fn hand(
        State(shared): State<Shared>,
        Path(id): Path<i64>,
    ) -> Result<String, outbox_axum::Error> {
        by_hand(&shared, id)
            .await
            .map_err(outbox_axum::Error::database)
    }

    pub(super) async fn serve(
        shared: Shared,
        layered_app: bool,
    ) -> Result<(SocketAddr, CancellationToken), BoxError> {
        let router = if layered_app {
            let layer = OutboxLayer::new(SqlxPool::from(shared.pool.clone()))
                .table(shared.outbox.outbox_table().clone());
            let layer = match shared.wake.clone() {
                Some(wake) => layer.wake(wake),
                None => layer,
            };
            axum::Router::new()
                .route("/orders/{id}", post(layered))
                .with_state(shared)
                .layer(layer)
        } else {
            axum::Router::new()
                .route("/orders/{id}", post(hand))
                .with_state(shared)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let serving =
            axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(std::future::IntoFuture::into_future(serving));
        Ok((addr, stop))
    }
}

mod actix_app {
    use actix_web::{App, HttpServer, web};
    use outbox_actix::OutboxMiddleware;

    use super::*;

    type Tx = outbox_actix::Tx<SqlxPool<Postgres>>;

    async fn layered(
        shared: web::Data<Shared>,
        id: web::Path<i64>,
        mut tx: Tx,
    ) -> Result<String, outbox_actix::Error> {
        sqlx::query(shared.insert)
            .bind(*id)
            .bind(100_i64)
            .execute(&mut *tx)
            .await?;
        let message = event(*id)?;
        let message_id = message.id();
        tx.enqueue(message)?;
        Ok(message_id.to_string())
    }

    async fn hand(
        shared: web::Data<Shared>,
        id: web::Path<i64>,
    ) -> Result<String, outbox_actix::Error> {
        by_hand(&shared, *id)
            .await
            .map_err(outbox_actix::Error::database)
    }

    pub(super) async fn serve(
        shared: Shared,
        layered_app: bool,
    ) -> Result<(SocketAddr, actix_web::dev::ServerHandle), BoxError> {
        let middleware = OutboxMiddleware::new(SqlxPool::from(shared.pool.clone()))
            .table(shared.outbox.outbox_table().clone());
        let data = web::Data::new(shared);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            let route = if layered_app {
                web::post().to(layered)
            } else {
                web::post().to(hand)
            };
            App::new()
                .app_data(data.clone())
                .route("/orders/{id}", route)
                .wrap(actix_web::middleware::Condition::new(
                    layered_app,
                    middleware.clone(),
                ))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok((addr, handle))
    }
}

/// A server for one measurement, stopped when dropped into [`Server::stop`].
enum Server {
    Axum(CancellationToken),
    Actix(actix_web::dev::ServerHandle),
}

impl Server {
    async fn start(
        framework: Framework,
        shared: Shared,
        layered: bool,
    ) -> Result<(SocketAddr, Self), BoxError> {
        Ok(match framework {
            Framework::Axum => {
                let (addr, stop) = axum_app::serve(shared, layered).await?;
                (addr, Self::Axum(stop))
            }
            Framework::Actix => {
                let (addr, handle) = actix_app::serve(shared, layered).await?;
                (addr, Self::Actix(handle))
            }
        })
    }

    async fn stop(self) {
        match self {
            Self::Axum(stop) => stop.cancel(),
            Self::Actix(handle) => handle.stop(true).await,
        }
    }
}

/// Sends `POST /orders/{id}` on a keep-alive connection and reads the answer's body.
async fn post(stream: &mut TcpStream, buf: &mut Vec<u8>, id: i64) -> Result<String, BoxError> {
    let request = format!("POST /orders/{id} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    buf.clear();
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])?.to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        let body = String::from_utf8_lossy(&buf[head_end..]);
        return Err(format!("the server answered {:?}: {body}", head.lines().next()).into());
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .ok_or("no content-length")?
        .trim()
        .parse()?;
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("the server closed the connection mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8(
        buf[head_end..head_end + length].to_vec(),
    )?)
}

/// Requests per second from `connections` keep-alive clients for `seconds`; ids from `first`.
async fn load(
    addr: SocketAddr,
    connections: usize,
    seconds: f64,
    first: i64,
) -> Result<f64, BoxError> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let clients: Vec<_> = (0..connections)
        .map(|c| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(1024);
                let mut done = 0_i64;
                while Instant::now() < deadline {
                    let id = first + c as i64 * 100_000_000 + done;
                    post(&mut stream, &mut buf, id).await?;
                    done += 1;
                }
                Ok::<_, BoxError>(done)
            })
        })
        .collect();
    let mut total = 0;
    for client in clients {
        total += client.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn shared(pool: &PgPool, name: &str) -> Result<(Table<Postgres>, Shared, String), BoxError> {
    let table = Table::<Postgres>::create(pool, name).await?;
    let orders = format!("{}_orders", table.outbox.table());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {orders}"
    )))
    .execute(pool)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {orders} (id BIGINT PRIMARY KEY, total BIGINT NOT NULL)"
    )))
    .execute(pool)
    .await?;
    let insert: &'static str =
        Box::leak(format!("INSERT INTO {orders} (id, total) VALUES ($1, $2)").into_boxed_str());
    let shared = Shared {
        pool: pool.clone(),
        outbox: table.outbox.clone(),
        insert,
        wake: None,
    };
    Ok((table, shared, orders))
}

async fn cleanup(pool: &PgPool, table: Table<Postgres>, orders: &str) -> Result<(), BoxError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {orders}"
    )))
    .execute(pool)
    .await?;
    table.drop_table(pool).await
}

/// A new pool of 16 connections like `pool`'s, all opened now, on the caller's runtime.
async fn own_pool(pool: &PgPool) -> Result<PgPool, BoxError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .min_connections(16)
        .connect_with((*pool.connect_options()).clone())
        .await?;
    let mut opened = Vec::with_capacity(16);
    for _ in 0..16 {
        opened.push(pool.acquire().await?);
    }
    drop(opened);
    Ok(pool)
}

/// Requests/s through the layer / by hand, the median over `rounds` rounds of
/// layer, hand, hand, layer (`seconds` each), with 16 connections.
pub(crate) async fn overhead(
    pool: &PgPool,
    framework: Framework,
    rounds: usize,
    seconds: f64,
) -> Result<(f64, f64), BoxError> {
    let (table, shared, orders) =
        shared(pool, &format!("http_{framework:?}").to_lowercase()).await?;
    let mut ratios = Vec::new();
    let mut layered_rates = Vec::new();
    let mut next = 0_i64;
    let measure = async |layered: bool, next: &mut i64| -> Result<f64, BoxError> {
        // A pool of its own, its connections opened here: a connection that an actix worker
        // opens is bound to that worker's runtime, which ends with the server, and would be
        // dead in a pool that outlived it.
        let pool = own_pool(&shared.pool).await?;
        let own = Shared {
            pool: pool.clone(),
            ..shared.clone()
        };
        let (addr, server) = Server::start(framework, own, layered).await?;
        let rate = load(addr, 16, seconds, *next).await?;
        // Room for 100 connections of 100,000,000 requests each.
        *next += 10_000_000_000;
        server.stop().await;
        pool.close().await;
        Ok(rate)
    };
    // Warm both (connections, statement caches) before measuring.
    measure(true, &mut next).await?;
    measure(false, &mut next).await?;
    for _ in 0..rounds {
        let a = measure(true, &mut next).await?;
        let b = measure(false, &mut next).await?;
        let b2 = measure(false, &mut next).await?;
        let a2 = measure(true, &mut next).await?;
        ratios.push((a + a2) / (b + b2));
        layered_rates.push((a + a2) / 2.0);
    }
    cleanup(pool, table, &orders).await?;
    Ok((median(ratios), median(layered_rates)))
}

/// p50 and p99 (ms) of response received → JetStream ack at `rate` requests/s for `seconds`,
/// through the axum layer with the relay in process, woken by the layer.
pub(crate) async fn e2e(
    pool: &PgPool,
    nats_url: &str,
    rate: u64,
    seconds: u64,
) -> Result<(f64, f64), BoxError> {
    let (table, mut shared, orders) = shared(pool, "http_e2e").await?;
    let (js, stream) = crate::fixtures::nats_stream(nats_url, "http_e2e").await?;
    let timed = Timed::new(NatsPublisher::new(js.clone()).subject_prefix(stream.clone()));
    let relay = Relay::builder(table.outbox.store(pool.clone()), Arc::clone(&timed))
        .batch_size(500)
        .poll_interval(Duration::from_millis(100))
        .build()?;
    shared.wake = Some(relay.wake_handle());
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop.cancelled_owned()).await }
    });
    let (addr, server) = Server::start(Framework::Axum, shared, true).await?;

    // A paced generator hands request ids to 8 keep-alive connections.
    let (jobs, receiver) = async_channel(1024);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let receiver = Arc::clone(&receiver);
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(1024);
                let mut answered = HashMap::new();
                loop {
                    let id = { receiver.lock().await.recv().await };
                    let Some(id) = id else { break };
                    let body = post(&mut stream, &mut buf, id).await?;
                    answered.insert(Uuid::parse_str(&body)?, SystemTime::now());
                }
                Ok::<_, BoxError>(answered)
            })
        })
        .collect();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for id in 0..(rate * seconds) as i64 {
        ticker.tick().await;
        jobs.send(id).await?;
    }
    drop(jobs);
    let mut answered = HashMap::new();
    for client in clients {
        answered.extend(client.await??);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while timed.acked().len() < answered.len() {
        if Instant::now() > deadline {
            return Err("http e2e: not every event was acknowledged within 60s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
    stop.cancel();
    running.await??;
    js.delete_stream(&stream).await?;
    cleanup(pool, table, &orders).await?;
    percentiles(&answered, &timed.acked())
}

/// A multi-consumer channel: a tokio mpsc whose receiver the clients share.
fn async_channel(
    capacity: usize,
) -> (
    tokio::sync::mpsc::Sender<i64>,
    Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<i64>>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(capacity);
    (sender, Arc::new(tokio::sync::Mutex::new(receiver)))
}
