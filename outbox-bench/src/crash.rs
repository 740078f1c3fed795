//! Crash recovery: a relay process claims a batch, starts publishing it, and is killed with
//! SIGKILL; the time from the kill to the first publish of one of its keys by another relay is
//! how long a crash stalls those keys.
//!
//! Both relays run the default settings (a 30 s lease, a 500 ms poll): the survivor lives in
//! the bench's process and is not woken by anything but its poll, as a relay in another
//! process would be. The kill lands at a different point of the heartbeat in each round.

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outbox_sqlx::{Envelope, Message, Outbox, PublishError, Publisher, Relay};
use sqlx::Pool;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::BoxError;
use crate::backend::Backend;
use crate::fixtures::Table;

const KEYS: usize = 50;
const PER_KEY: usize = 4;

/// The relay that dies: it announces the keys of its first publish round on stdout, then
/// never finishes publishing.
struct Stalls;

impl Publisher for Stalls {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let keys: Vec<&str> = batch
            .iter()
            .filter_map(|m| m.partition_key.as_deref())
            .collect();
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "publishing {}", keys.join(" "));
            let _ = out.flush();
        }
        std::future::pending().await
    }
}

/// `crash-relay --table T`: the child process.
pub(crate) async fn child<DB: Backend>(args: &[String], pool: &Pool<DB>) -> Result<(), BoxError> {
    let table = crate::value(args, "--table")?.ok_or("--table is required")?;
    let store = Outbox::<DB>::with_table(table)?.store(pool.clone());
    let relay = Relay::builder(store, Stalls).build()?;
    relay.run(std::future::pending()).await?;
    Ok(())
}

/// The survivor's publisher: acknowledges everything and notes when it first published one of
/// the watched keys.
#[derive(Default)]
struct Watch {
    keys: Mutex<HashSet<String>>,
    first: Mutex<Option<Instant>>,
    published: std::sync::atomic::AtomicUsize,
}

impl Publisher for Watch {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let now = Instant::now();
        let watched = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            batch
                .iter()
                .any(|m| m.partition_key.as_ref().is_some_and(|k| keys.contains(k)))
        };
        if watched {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert(now);
        }
        self.published
            .fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
        batch.iter().map(|_| Ok(())).collect()
    }
}

/// Runs `rounds` kills and returns each one's recovery time. `child_args` are the arguments
/// that make this binary connect to the same database as `pool` (`--db ...`).
pub(crate) async fn run<DB: Backend>(
    pool: &Pool<DB>,
    child_args: &[String],
    rounds: usize,
) -> Result<Vec<Duration>, BoxError> {
    let table = Table::create(pool, "crash").await?;
    let name = table.outbox.statements().table.to_string();
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let messages = (0..KEYS * PER_KEY)
            .map(|i| {
                Message::json("bench.crash", &serde_json::json!({ "i": i }))?
                    .key(format!("r{round}-{}", i % KEYS))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = pool.begin().await?;
        table.outbox.enqueue_all(&mut *tx, messages).await?;
        tx.commit().await?;

        let mut dying = tokio::process::Command::new(std::env::current_exe()?)
            .arg("crash-relay")
            .args(child_args)
            .args(["--table", &name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdout = BufReader::new(dying.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
            .await
            .map_err(|_| "the relay to be killed claimed nothing within 30 s")??;
        let keys: HashSet<String> = line
            .strip_prefix("publishing ")
            .ok_or_else(|| format!("the relay to be killed said {line:?}"))?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if keys.is_empty() {
            return Err("the relay to be killed published no keyed message".into());
        }

        let watch = Arc::new(Watch::default());
        *watch.keys.lock().unwrap_or_else(|p| p.into_inner()) = keys;
        let survivor =
            Relay::builder(table.outbox.store(pool.clone()), Arc::clone(&watch)).build()?;
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn({
            let stop = stop.clone();
            async move { survivor.run(stop.cancelled_owned()).await }
        });
        // A different point of the heartbeat and of the survivor's poll in each round.
        tokio::time::sleep(Duration::from_millis((round as u64 * 173) % 500)).await;
        dying.kill().await?;
        let killed = Instant::now();

        let deadline = killed + Duration::from_secs(60);
        let first = loop {
            if let Some(at) = *watch.first.lock().unwrap_or_else(|p| p.into_inner()) {
                break at;
            }
            if Instant::now() > deadline {
                return Err("no relay published the killed relay's keys within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        samples.push(first.saturating_duration_since(killed));
        while watch.published.load(std::sync::atomic::Ordering::Relaxed) < KEYS * PER_KEY {
            if Instant::now() > deadline {
                return Err("the killed relay's batch was not published within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        running.await??;
    }
    table.drop_table(pool).await?;
    Ok(samples)
}

/// The nearest-rank percentile `p` (0-100) of `samples`, in milliseconds.
pub(crate) fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
    ms[rank.clamp(1, ms.len()) - 1]
}
