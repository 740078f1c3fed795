//! End-to-end latency: commit returned → JetStream acknowledged, with the relay in the
//! producer's process (woken after each commit) or in a process of its own (a sidecar, woken
//! by LISTEN/NOTIFY or by its polling).
//!
//! Both ends read the wall clock of the same machine, so a sidecar's acknowledgement times can
//! be compared with the producer's commit times.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outbox_publishers::NatsPublisher;
use outbox_sqlx::{
    Claim, Envelope, Failure, Inspect, LeaseToken, Message, NotifyListener, Outbox, PublishError,
    Publisher, Relay, Settled, Settlement, Store, Uuid, WakeHandle,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Pool, Postgres};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::BoxError;
use crate::backend::Backend;
use crate::fixtures::Table;

/// Records when each message was handed to the broker and when it was acknowledged.
pub(crate) struct Timed<P> {
    inner: P,
    acked: Mutex<HashMap<Uuid, SystemTime>>,
    sent: Mutex<HashMap<Uuid, SystemTime>>,
}

impl<P> Timed<P> {
    pub(crate) fn new(inner: P) -> Arc<Self> {
        Arc::new(Self {
            inner,
            acked: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn acked(&self) -> HashMap<Uuid, SystemTime> {
        self.acked.lock().unwrap().clone()
    }
}

impl<P: Publisher> Publisher for Timed<P> {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let sent_at = SystemTime::now();
        self.sent
            .lock()
            .unwrap()
            .extend(batch.iter().map(|env| (env.id, sent_at)));
        let outcomes = self.inner.publish(batch).await;
        let now = SystemTime::now();
        let mut acked = self.acked.lock().unwrap();
        for (env, outcome) in batch.iter().zip(&outcomes) {
            if outcome.is_ok() {
                acked.insert(env.id, now);
            }
        }
        outcomes
    }
}

/// A store that records when the claim that took each message started and returned, and how
/// long each claim and settlement took.
pub(crate) struct Staged<S> {
    inner: S,
    claimed: Mutex<HashMap<Uuid, (SystemTime, SystemTime)>>,
    claims: Mutex<Vec<(Duration, usize)>>,
    settles: Mutex<Vec<Duration>>,
}

impl<S> Staged<S> {
    pub(crate) fn new(inner: S) -> Arc<Self> {
        Arc::new(Self {
            inner,
            claimed: Mutex::new(HashMap::new()),
            claims: Mutex::new(Vec::new()),
            settles: Mutex::new(Vec::new()),
        })
    }
}

impl<S: Store> Store for Staged<S> {
    async fn claim(&self, limit: usize, lease: Duration) -> outbox_sqlx::Result<Claim> {
        let started = SystemTime::now();
        let claim = self.inner.claim(limit, lease).await?;
        let ended = SystemTime::now();
        let took = ended.duration_since(started).unwrap_or_default();
        self.claims
            .lock()
            .unwrap()
            .push((took, claim.messages.len()));
        self.claimed
            .lock()
            .unwrap()
            .extend(claim.messages.iter().map(|m| (m.id, (started, ended))));
        Ok(claim)
    }

    async fn ack(&self, token: LeaseToken, seqs: &[i64]) -> outbox_sqlx::Result<u64> {
        self.inner.ack(token, seqs).await
    }

    async fn fail(&self, token: LeaseToken, failures: &[Failure]) -> outbox_sqlx::Result<u64> {
        self.inner.fail(token, failures).await
    }

    async fn release(&self, token: LeaseToken, seqs: &[i64]) -> outbox_sqlx::Result<u64> {
        self.inner.release(token, seqs).await
    }

    async fn renew(
        &self,
        token: LeaseToken,
        seqs: &[i64],
        lease: Duration,
    ) -> outbox_sqlx::Result<bool> {
        self.inner.renew(token, seqs, lease).await
    }

    async fn settle(
        &self,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> outbox_sqlx::Result<Settled> {
        let started = Instant::now();
        let settled = self.inner.settle(token, settlement).await?;
        self.settles.lock().unwrap().push(started.elapsed());
        Ok(settled)
    }
}

/// Where the time from commit to acknowledgement went, stage by stage (p50 and p99 of each,
/// in milliseconds).
#[derive(Debug, Default)]
pub(crate) struct Stages {
    /// Commit → the start of the claim that took the message.
    pub(crate) wait: (f64, f64),
    /// That claim's round trip.
    pub(crate) claim: (f64, f64),
    /// The claim's return → the message handed to the publisher.
    pub(crate) to_publish: (f64, f64),
    /// Handed to the publisher → acknowledged.
    pub(crate) publish: (f64, f64),
    /// Every settlement's round trip (it delays the next claim of its loop).
    pub(crate) settle: (f64, f64),
    /// Claims made, and how many of them found nothing.
    pub(crate) claims: usize,
    pub(crate) empty_claims: usize,
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pair = |(p50, p99): (f64, f64)| format!("{p50:.2}/{p99:.2}");
        write!(
            f,
            "stages p50/p99 ms: wait for a claim {}, claim {}, claim -> publish {}, publish -> \
             ack {}, settle {}; {} claims, {} empty",
            pair(self.wait),
            pair(self.claim),
            pair(self.to_publish),
            pair(self.publish),
            pair(self.settle),
            self.claims,
            self.empty_claims
        )
    }
}

/// The stages of every committed message, from the relay's recorders.
fn stages<S, P>(
    committed: &HashMap<Uuid, SystemTime>,
    store: &Staged<S>,
    timed: &Timed<P>,
) -> Result<Stages, BoxError> {
    let claimed = store.claimed.lock().unwrap();
    let sent = timed.sent.lock().unwrap();
    let acked = timed.acked.lock().unwrap();
    let gap = |from: SystemTime, to: SystemTime| to.duration_since(from).unwrap_or_default();
    let (mut wait, mut claim, mut to_publish, mut publish) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, at) in committed {
        let missing = || format!("message {id} has no record of its claim, publish or ack");
        let (claim_started, claim_ended) = *claimed.get(id).ok_or_else(missing)?;
        let sent_at = *sent.get(id).ok_or_else(missing)?;
        let acked_at = *acked.get(id).ok_or_else(missing)?;
        wait.push(gap(*at, claim_started));
        claim.push(gap(claim_started, claim_ended));
        to_publish.push(gap(claim_ended, sent_at));
        publish.push(gap(sent_at, acked_at));
    }
    let claims = store.claims.lock().unwrap();
    let settles = store.settles.lock().unwrap().clone();
    Ok(Stages {
        wait: p50_p99(wait),
        claim: p50_p99(claim),
        to_publish: p50_p99(to_publish),
        publish: p50_p99(publish),
        settle: p50_p99(settles),
        claims: claims.len(),
        empty_claims: claims.iter().filter(|(_, n)| *n == 0).count(),
    })
}

/// p50 and p99 of `samples`, in milliseconds.
fn p50_p99(mut samples: Vec<Duration>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 of commit → acknowledgement, in milliseconds.
pub(crate) fn percentiles(
    committed: &HashMap<Uuid, SystemTime>,
    acked: &HashMap<Uuid, SystemTime>,
) -> Result<(f64, f64), BoxError> {
    let mut latencies = Vec::with_capacity(committed.len());
    for (id, at) in committed {
        let acked_at = acked
            .get(id)
            .ok_or_else(|| format!("message {id} was committed but never acknowledged"))?;
        latencies.push(acked_at.duration_since(*at).unwrap_or_default());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    ))
}

/// Commits one message per transaction at `rate` per second for `seconds`, waking `wake`
/// after each commit; returns when each committed.
async fn offer<DB: Backend>(
    pool: &Pool<DB>,
    outbox: &Outbox<DB>,
    rate: u64,
    seconds: u64,
    wake: Option<&WakeHandle>,
) -> Result<HashMap<Uuid, SystemTime>, BoxError> {
    let total = rate * seconds;
    let mut committed = HashMap::with_capacity(total as usize);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        ticker.tick().await;
        let message =
            Message::json("bench.latency", &serde_json::json!({ "i": i }))?.key(i % 100)?;
        let id = message.id();
        let mut tx = pool.begin().await?;
        outbox.enqueue(&mut *tx, message).await?;
        tx.commit().await?;
        committed.insert(id, SystemTime::now());
        if let Some(wake) = wake {
            wake.wake();
        }
    }
    Ok(committed)
}

/// p50 and p99 in milliseconds at `rate` messages per second for `seconds`, relay in-process,
/// and where the time went.
///
/// Producers and relay share a pool of their own, opened with `shared`'s options, as a
/// service's would be. The suite's pool has run the statements of dozens of tables by now, so
/// its connections' statement caches are full; on MySQL each eviction sends a
/// `COM_STMT_CLOSE` that gets no reply, and sqlx's socket (without `TCP_NODELAY`) then holds
/// the next statement until the server's delayed ACK, about 40 ms.
pub(crate) async fn in_process<DB: Backend>(
    shared: &Pool<DB>,
    nats_url: &str,
    rate: u64,
    seconds: u64,
) -> Result<(f64, f64, Stages), BoxError> {
    let pool = &shared
        .options()
        .clone()
        .connect_with((*shared.connect_options()).clone())
        .await?;
    let result = in_process_on(pool, nats_url, rate, seconds).await;
    pool.close().await;
    result
}

async fn in_process_on<DB: Backend>(
    pool: &Pool<DB>,
    nats_url: &str,
    rate: u64,
    seconds: u64,
) -> Result<(f64, f64, Stages), BoxError> {
    let table = Table::create(pool, "latency").await?;
    let (js, stream) = crate::fixtures::nats_stream(nats_url, "latency").await?;
    let timed = Timed::new(NatsPublisher::new(js.clone()).subject_prefix(stream.clone()));
    let staged = Staged::new(table.outbox.store(pool.clone()));
    let relay = Relay::builder(Arc::clone(&staged), Arc::clone(&timed))
        .batch_size(500)
        .poll_interval(Duration::from_millis(100))
        .build()?;
    let wake = relay.wake_handle();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop.cancelled_owned()).await }
    });

    let committed = offer(pool, &table.outbox, rate, seconds, Some(&wake)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while timed.acked.lock().unwrap().len() < committed.len() {
        if Instant::now() > deadline {
            return Err("latency run: not every message was acknowledged within 60s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    running.await??;
    js.delete_stream(&stream).await?;
    table.drop_table(pool).await?;
    let (p50, p99) = percentiles(&committed, &timed.acked())?;
    Ok((p50, p99, stages(&committed, &staged, &timed)?))
}

/// How a sidecar relay learns that there is work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Producers NOTIFY on commit; the sidecar LISTENs (and polls every 500 ms as a backstop).
    Notify,
    /// The sidecar polls every 500 ms (the relay's default), producers send nothing.
    Poll,
}

/// p50 and p99 in milliseconds with the relay in a separate process.
pub(crate) async fn sidecar(
    pool: &PgPool,
    database_url: &str,
    nats_url: &str,
    rate: u64,
    seconds: u64,
    wake: Wake,
) -> Result<(f64, f64), BoxError> {
    let table = Table::<Postgres>::create(pool, "sidecar").await?;
    let (js, stream) = crate::fixtures::nats_stream(nats_url, "sidecar").await?;
    let table_name = table.outbox.table().to_string();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["sidecar-relay", "--table", &table_name, "--stream", &stream])
        .args(if wake == Wake::Notify {
            &["--listen"][..]
        } else {
            &[]
        })
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut ready = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut ready))
        .await
        .map_err(|_| "the sidecar relay did not start within 30 s")??;
    if ready.trim() != "ready" {
        return Err(format!("the sidecar relay said {ready:?} instead of ready").into());
    }

    let outbox = table.outbox.clone().notify_on_commit(wake == Wake::Notify);
    let committed = offer(pool, &outbox, rate, seconds, None).await?;
    let store = table.outbox.store(pool.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.stats().await?.unpublished() > 0 {
        if Instant::now() > deadline {
            return Err("sidecar run: the backlog did not drain within 60s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crate::signal_interrupt(&child)?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_to_string(&mut out))
        .await
        .map_err(|_| "the sidecar relay did not stop within 30 s of SIGINT")??;
    child.wait().await?;
    let mut acked = HashMap::with_capacity(committed.len());
    for line in out.lines() {
        let (id, nanos) = line
            .split_once(' ')
            .ok_or_else(|| format!("bad sidecar line {line:?}"))?;
        acked.insert(
            id.parse::<Uuid>()?,
            UNIX_EPOCH + Duration::from_nanos(nanos.parse()?),
        );
    }
    js.delete_stream(&stream).await?;
    table.drop_table(pool).await?;
    percentiles(&committed, &acked)
}

/// The sidecar process: a relay on `--table`, publishing to `--stream`, until SIGINT; then
/// prints `id unix_nanos` for every acknowledged message.
pub(crate) async fn sidecar_relay(
    args: &[String],
    database_url: &str,
    nats_url: &str,
) -> Result<(), BoxError> {
    let value = |name: &str| -> Result<&str, BoxError> {
        crate::value(args, name)?.ok_or_else(|| format!("{name} is required").into())
    };
    let outbox = Outbox::<Postgres>::with_table(value("--table")?)?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(database_url)
        .await?;
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await?);
    let timed = Timed::new(NatsPublisher::new(js).subject_prefix(value("--stream")?));
    let relay = Relay::builder(outbox.store(pool.clone()), Arc::clone(&timed))
        .batch_size(500)
        .build()?;
    let _listener = if args.iter().any(|a| a == "--listen") {
        Some(NotifyListener::start(&pool, &outbox, relay.wake_handle()).await?)
    } else {
        None
    };
    println!("ready");
    relay
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let mut out = String::new();
    for (id, at) in timed.acked() {
        let nanos = at.duration_since(UNIX_EPOCH)?.as_nanos();
        out.push_str(&format!("{id} {nanos}\n"));
    }
    print!("{out}");
    Ok(())
}
