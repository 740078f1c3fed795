//! The relay processes: each one a real `Relay::run` against the run's PostgreSQL and NATS,
//! started, killed, frozen and stopped by the harness.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::jetstream;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use outbox_publishers::NatsPublisher;
use outbox_sqlx::{Envelope, Outbox, PublishError, Publisher, Relay, RetryPolicy, Store};
use sqlx::{MySql, Postgres};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::db::ChaosDb;
use crate::services::signal;
use crate::{BoxError, flag};

/// The lease every relay process runs with: how long one batch may hold its rows. A relay
/// killed mid-batch frees its keys sooner, after the one-second heartbeat lease.
pub(crate) const LEASE: Duration = Duration::from_secs(5);

/// Sums every counter the relay reports through the `metrics` facade, by name.
#[derive(Default)]
pub(crate) struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn snapshot(&self) -> HashMap<String, u64> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }
}

impl Recorder for &'static Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Counter::from_arc(Arc::clone(map.entry(key.name().to_owned()).or_default()))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// A broker whose acknowledgements arrive `delay` late, and optionally never for one call in
/// `hang_one_in`: the messages are out, the relay is
/// still waiting. A relay frozen in that wait holds a claim, which is what fencing is for.
struct SlowAcks<P> {
    inner: P,
    delay: Duration,
    /// Every this many publish calls, one never returns (0: never).
    hang_one_in: u64,
    calls: AtomicU64,
}

impl<P: Publisher> Publisher for SlowAcks<P> {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let outcomes = self.inner.publish(batch).await;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.hang_one_in > 0 && calls.is_multiple_of(self.hang_one_in) {
            // The broker has the messages; the acknowledgement never comes back.
            std::future::pending::<()>().await;
        }
        outcomes
    }
}

/// One relay process: runs until SIGINT, then prints its counters as one JSON line.
pub(crate) async fn relay_process(args: &[String]) -> Result<(), BoxError> {
    match flag(args, "--db").as_deref().unwrap_or("postgres") {
        "postgres" => relay_on::<Postgres>(args).await,
        "mysql" => relay_on::<MySql>(args).await,
        other => Err(format!("--db takes postgres or mysql, not {other:?}").into()),
    }
}

async fn relay_on<DB: ChaosDb>(args: &[String]) -> Result<(), BoxError> {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    let counters = COUNTERS.get_or_init(Counters::default);
    metrics::set_global_recorder(counters).map_err(|e| e.to_string())?;

    let table = flag(args, "--table").ok_or("--table is required")?;
    let subject = flag(args, "--stream").ok_or("--stream is required")?;
    let database_url = flag(args, "--database-url").ok_or("--database-url is required")?;
    let nats_url = flag(args, "--nats-url").ok_or("--nats-url is required")?;
    let ack_delay: u64 = flag(args, "--ack-delay-ms")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(0);
    // Lazy pool and retrying connect: a relay started while the database or the broker is
    // down waits for them instead of exiting.
    let pool = DB::relay_pool(&database_url, ack_delay > 0)?;
    let relay = RelayArgs {
        args,
        subject: &subject,
        nats_url: &nats_url,
        ack_delay,
        counters,
    };
    match flag(args, "--store").as_deref().unwrap_or("sqlx") {
        "sqlx" => {
            let store = Outbox::<DB>::with_table(&table)?.store(pool);
            run_relay(store, relay).await
        }
        // sea-orm's connection wraps the same lazy sqlx pool, so the harness finds (and kills)
        // its connections as it does the sqlx store's.
        "seaorm" => {
            let outbox = outbox_seaorm::Outbox::with_table(&table)?;
            run_relay(outbox.store(DB::seaorm(pool))?, relay).await
        }
        // The diesel pools connect under the relay's name too (`ChaosDb::diesel_url`).
        "diesel" => DB::run_diesel(&table, &database_url, false, relay).await,
        "diesel-async" => DB::run_diesel(&table, &database_url, true, relay).await,
        other => Err(format!("--store takes {}, not {other:?}", STORES.join(", ")).into()),
    }
}

/// The stores `--store` takes.
pub(crate) const STORES: [&str; 4] = ["sqlx", "seaorm", "diesel", "diesel-async"];

/// What a relay process runs with, besides its store.
pub(crate) struct RelayArgs<'a> {
    pub(crate) args: &'a [String],
    pub(crate) subject: &'a str,
    pub(crate) nats_url: &'a str,
    pub(crate) ack_delay: u64,
    pub(crate) counters: &'a Counters,
}

/// Runs the relay on `store` until SIGINT, then prints the counters.
pub(crate) async fn run_relay<S: Store>(store: S, relay: RelayArgs<'_>) -> Result<(), BoxError> {
    let RelayArgs {
        args,
        subject,
        nats_url,
        ack_delay,
        counters,
    } = relay;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats_url)
        .await?;
    let publisher = SlowAcks {
        inner: NatsPublisher::new(jetstream::new(client)).subject_prefix(subject.to_owned()),
        delay: Duration::from_millis(ack_delay),
        hang_one_in: flag(args, "--hang-one-in")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(0),
        calls: AtomicU64::new(0),
    };
    let relay = Relay::builder(store, publisher)
        .batch_size(100)
        .lease(LEASE)
        .poll_interval(Duration::from_millis(50))
        .unavailable_backoff(Duration::from_millis(50), Duration::from_secs(1))
        // Poison messages go dead within seconds; a broker outage must not get them there.
        .retry_policy(RetryPolicy::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            2.0,
            0.2,
            4,
        )?)
        .build()?;
    relay
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("{}", serde_json::to_string(&counters.snapshot())?);
    Ok(())
}

/// The running relay processes.
pub(crate) struct Relays {
    children: Vec<Child>,
    args: Vec<String>,
    /// Relays killed with SIGKILL.
    pub(crate) kills: u64,
    /// Relays that exited without being told to.
    pub(crate) crashes: u64,
    /// Counters of relays stopped gracefully, summed.
    pub(crate) counters: HashMap<String, u64>,
}

impl Relays {
    /// Starts `count` relay processes on the database `db` names (`--db`), each on the store
    /// `store` names (`--store`).
    pub(crate) fn start(
        count: usize,
        db: &str,
        store: &str,
        table: &str,
        stream: &str,
        database_url: &str,
        nats_url: &str,
    ) -> Result<Self, BoxError> {
        let args = [
            "relay",
            "--db",
            db,
            "--store",
            store,
            "--table",
            table,
            "--stream",
            stream,
            "--database-url",
            database_url,
            "--nats-url",
            nats_url,
        ]
        .map(String::from)
        .to_vec();
        let mut relays = Self {
            children: Vec::new(),
            args,
            kills: 0,
            crashes: 0,
            counters: HashMap::new(),
        };
        for _ in 0..count {
            let child = relays.spawn_one()?;
            relays.children.push(child);
        }
        Ok(relays)
    }

    fn spawn_one(&self) -> Result<Child, BoxError> {
        self.spawn_with(&[])
    }

    fn spawn_with(&self, extra: &[&str]) -> Result<Child, BoxError> {
        Ok(Command::new(std::env::current_exe()?)
            .args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?)
    }

    /// Starts one more relay whose broker acknowledges `ack_delay` late; returns its index.
    pub(crate) fn start_slow(&mut self, ack_delay: Duration) -> Result<usize, BoxError> {
        let delay = ack_delay.as_millis().to_string();
        let child = self.spawn_with(&["--ack-delay-ms", &delay])?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// Starts one more relay whose publish calls hang forever, one in `one_in`, after the
    /// broker has the messages; returns its index.
    pub(crate) fn start_hanging(&mut self, one_in: u64) -> Result<usize, BoxError> {
        let one_in = one_in.to_string();
        let child = self.spawn_with(&["--hang-one-in", &one_in])?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// SIGKILLs relay `i` and starts a new one in its place.
    pub(crate) async fn kill(&mut self, i: usize) -> Result<(), BoxError> {
        self.children[i].kill().await?;
        self.kills += 1;
        self.children[i] = self.spawn_one()?;
        Ok(())
    }

    /// Restarts relays that exited on their own, counting them.
    pub(crate) fn restart_exited(&mut self) -> Result<(), BoxError> {
        for i in 0..self.children.len() {
            if self.children[i].try_wait()?.is_some() {
                self.crashes += 1;
                self.children[i] = self.spawn_one()?;
            }
        }
        Ok(())
    }

    /// Sends `sig` to relay `i`.
    pub(crate) fn signal(&self, i: usize, sig: &str) -> Result<(), BoxError> {
        let pid = self.children[i].id().ok_or("relay already exited")?;
        signal(pid, sig)
    }

    /// Stops relay `i` gracefully, removes it, and returns its counters.
    pub(crate) async fn stop_one(&mut self, i: usize) -> Result<HashMap<String, u64>, BoxError> {
        let mut child = self.children.remove(i);
        if let Some(pid) = child.id() {
            signal(pid, "INT")?;
        }
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            tokio::time::timeout(Duration::from_secs(30), stdout.read_to_string(&mut out))
                .await
                .map_err(|_| "a relay did not stop within 30 s of SIGINT")??;
        }
        let status = child.wait().await?;
        if !status.success() {
            return Err(format!("a relay exited with {status} on SIGINT").into());
        }
        let counters: HashMap<String, u64> = serde_json::from_str(out.trim())
            .map_err(|e| format!("relay printed no counters ({e}): {out:?}"))?;
        for (name, value) in &counters {
            *self.counters.entry(name.clone()).or_default() += value;
        }
        Ok(counters)
    }

    /// Stops every relay gracefully.
    pub(crate) async fn stop_all(&mut self) -> Result<(), BoxError> {
        while !self.children.is_empty() {
            self.stop_one(self.children.len() - 1).await?;
        }
        Ok(())
    }
}
