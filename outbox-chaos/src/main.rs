//! Fault injection for the relay: relay processes are killed with SIGKILL, mid-batch, while
//! producers commit; afterwards the JetStream stream is read back and compared with what
//! committed: nothing lost, per-key order kept.
//!
//! Run with `cargo xtask chaos [--quick]`, or
//! `cargo run --release -p outbox-chaos -- run [--seconds S] [--relays R] [--producers P]
//! [--kill-every-ms K] [--seed N]`. Reads `DATABASE_URL` (default the local test database) and
//! `NATS_URL` (default `127.0.0.1:4222`); works in tables and a stream of its own, and removes
//! them at the end. Writes `target/outbox-chaos/summary.json`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use outbox_publishers::NatsPublisher;
use outbox_sqlx::{Inspect, Message, Outbox, Relay, Uuid};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool, Postgres};
use tokio::process::{Child, Command};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str, default: u64) -> Result<u64, BoxError> {
    Ok(match flag(args, name) {
        Some(v) => v.parse()?,
        None => default,
    })
}

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args).await,
        Some("relay") => relay_process(&args).await,
        _ => Err(
            "usage: outbox-chaos run [--quick] [--seconds S] [--relays R] [--producers P] \
                  [--kill-every-ms K] [--seed N]"
                .into(),
        ),
    }
}

/// One relay process, until it is killed or told to stop.
async fn relay_process(args: &[String]) -> Result<(), BoxError> {
    let table = flag(args, "--table").ok_or("--table is required")?;
    let subject = flag(args, "--stream").ok_or("--stream is required")?;
    let lease = Duration::from_millis(number(args, "--lease-ms", 2_000)?);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url())
        .await?;
    let store = Outbox::<Postgres>::with_table(&table)?.store(pool);
    let js = jetstream::new(async_nats::connect(nats_url()).await?);
    let relay = Relay::builder(store, NatsPublisher::new(js).subject_prefix(subject))
        .batch_size(100)
        .lease(lease)
        .poll_interval(Duration::from_millis(50))
        .build()?;
    relay
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

struct Relays {
    children: Vec<Child>,
    table: String,
    stream: String,
    kills: u64,
}

impl Relays {
    fn spawn_one(&self) -> Result<Child, BoxError> {
        Ok(Command::new(std::env::current_exe()?)
            .args(["relay", "--table", &self.table, "--stream", &self.stream])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?)
    }

    /// SIGKILL one relay at random and start a new one in its place.
    async fn kill_and_respawn(&mut self, rng: &mut fastrand::Rng) -> Result<(), BoxError> {
        let i = rng.usize(..self.children.len());
        self.children[i].kill().await?;
        self.kills += 1;
        self.children[i] = self.spawn_one()?;
        Ok(())
    }

    async fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
    }
}

/// What each producer committed, in commit order per key.
type Committed = Vec<(String, Uuid)>;

async fn produce(
    pool: PgPool,
    outbox: Outbox<Postgres>,
    producer: u64,
    until: Instant,
    seed: u64,
) -> Result<Committed, BoxError> {
    let mut rng = fastrand::Rng::with_seed(seed ^ producer);
    let mut committed = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let count = rng.usize(1..=3);
        let mut batch = Vec::with_capacity(count);
        for _ in 0..count {
            let key = format!("p{producer}-k{}", rng.u8(..8));
            n += 1;
            batch.push(
                Message::json("chaos.event", &serde_json::json!({ "p": producer, "n": n }))?
                    .key(key)?,
            );
        }
        let ids: Vec<(String, Uuid)> = batch
            .iter()
            .map(|m| (m.partition_key().unwrap_or_default().to_owned(), m.id()))
            .collect();
        let mut tx = pool.begin().await?;
        outbox.enqueue_all(&mut *tx, batch).await?;
        tx.commit().await?;
        committed.extend(ids);
        tokio::time::sleep(Duration::from_millis(rng.u64(1..5))).await;
    }
    Ok(committed)
}

async fn run(args: &[String]) -> Result<(), BoxError> {
    let quick = args.iter().any(|a| a == "--quick");
    let seconds = number(args, "--seconds", if quick { 10 } else { 60 })?;
    let relay_count = number(args, "--relays", 4)? as usize;
    let producers = number(args, "--producers", 8)?;
    let kill_every = Duration::from_millis(number(args, "--kill-every-ms", 700)?);
    let seed = number(args, "--seed", fastrand::u64(..))?;
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    progress(&format!(
        "chaos: {producers} producers, {relay_count} relays killed every {kill_every:?}, {seconds}s, seed {seed}"
    ));

    let url = database_url();
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .map_err(|e| format!("PostgreSQL is not reachable at {url}: {e}"))?;
    let table = format!("outbox_chaos_{}", std::process::id());
    let outbox = Outbox::<Postgres>::with_table(&table)?;
    outbox.migrate(&mut *pool.acquire().await?).await?;
    let js = jetstream::new(
        async_nats::connect(nats_url())
            .await
            .map_err(|e| format!("NATS is not reachable at {}: {e}", nats_url()))?,
    );
    let stream_name = format!("outboxchaos{}", std::process::id());
    let mut stream = js
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{stream_name}.>")],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await?;

    let mut relays = Relays {
        children: Vec::new(),
        table: table.clone(),
        stream: stream_name.clone(),
        kills: 0,
    };
    for _ in 0..relay_count {
        let child = relays.spawn_one()?;
        relays.children.push(child);
    }

    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..producers)
        .map(|p| tokio::spawn(produce(pool.clone(), outbox.clone(), p, until, seed)))
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    while Instant::now() < until {
        tokio::time::sleep(kill_every).await;
        relays.kill_and_respawn(&mut rng).await?;
    }
    let mut committed: Committed = Vec::new();
    for task in tasks {
        committed.extend(task.await??);
    }
    progress(&format!(
        "{} messages committed, {} relays killed; draining",
        committed.len(),
        relays.kills
    ));

    let store = outbox.store(pool.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = store.stats().await?;
        if stats.unpublished() == 0 {
            break;
        }
        if Instant::now() > deadline {
            relays.stop().await;
            return Err(
                format!("outbox not drained 120s after the producers stopped: {stats:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = store.stats().await?.dead;
    relays.stop().await;
    progress("drained; reading the stream back");

    let in_stream = stream.info().await?.state.messages;
    let mut first_seen: Vec<(String, Uuid)> = Vec::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    for seq in 1..=in_stream {
        let message = stream.get_raw_message(seq).await?;
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        let id: Uuid = header("Nats-Msg-Id")
            .ok_or("message without Nats-Msg-Id")?
            .parse()?;
        if seen.insert(id) {
            first_seen.push((header("Outbox-Key").unwrap_or_default(), id));
        }
    }
    let committed_ids: HashSet<Uuid> = committed.iter().map(|(_, id)| *id).collect();
    let lost = committed_ids.difference(&seen).count() as u64;
    let order_violations = order_violations(&committed, &first_seen);
    let summary = serde_json::json!({
        "committed": committed.len(),
        "published_unique": seen.len(),
        "lost": lost,
        "duplicates_seen_by_consumer": in_stream - seen.len() as u64,
        "order_violations": order_violations,
        "dead_lettered": dead,
        "relays_killed": relays.kills,
        "seconds": seconds,
        "seed": seed,
    });

    js.delete_stream(&stream_name).await?;
    for sql in [
        format!("DROP TABLE IF EXISTS \"{table}\""),
        format!("DROP TABLE IF EXISTS \"{table}_claims\""),
        format!("DROP FUNCTION IF EXISTS \"{table}_claim\""),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(&pool).await?;
    }

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/outbox-chaos");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if lost > 0 || order_violations > 0 {
        return Err(format!(
            "{lost} messages lost, {order_violations} order violations (seed {seed})"
        )
        .into());
    }
    Ok(())
}

/// Per key, how many messages reached the stream before one that committed earlier.
fn order_violations(committed: &[(String, Uuid)], first_seen: &[(String, Uuid)]) -> u64 {
    let mut position: HashMap<Uuid, usize> = HashMap::new();
    let mut per_key_count: HashMap<&str, usize> = HashMap::new();
    for (key, id) in committed {
        let n = per_key_count.entry(key.as_str()).or_insert(0);
        position.insert(*id, *n);
        *n += 1;
    }
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut violations = 0;
    for (key, id) in first_seen {
        let Some(&pos) = position.get(id) else {
            continue;
        };
        match last.get(key.as_str()) {
            Some(&prev) if pos < prev => violations += 1,
            _ => {
                last.insert(key.as_str(), pos);
            }
        }
    }
    violations
}
