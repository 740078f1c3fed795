//! Producers: business transactions that enqueue messages on shared keys, with the commit
//! order of every key recorded by the database itself.
//!
//! Each transaction enqueues first and then bumps a per-key counter row (`<table>_seq`) before
//! committing. The counter's row lock is held to commit, so the numbers it hands out follow
//! the commit order of each key exactly; the enqueue before it is what the outbox must keep in
//! that order. Long transactions sleep between the two, which is the sequence-visibility
//! hazard: an id drawn early, committed late.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use outbox_sqlx::{Message, Outbox, Uuid};
use sqlx::Pool;

use crate::BoxError;
use crate::db::ChaosDb;

/// Keys shared by every producer.
const KEYS: u32 = 256;
/// Keys that carry poison messages (and ordinary ones behind them).
pub(crate) const POISON_KEYS: u32 = 4;
/// The event type of a poison message: the stream refuses its size.
pub(crate) const POISON_EVENT: &str = "chaos.poison";
/// Bigger than the stream's `max_message_size`.
pub(crate) const POISON_BYTES: usize = 8 * 1024;

/// One enqueued message as the producer saw it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) id: Uuid,
    /// The outbox row's sequence number.
    pub(crate) seq: i64,
    /// Position in the commit order of its key (from the counter row).
    pub(crate) position: i64,
    pub(crate) poison: bool,
    /// `false` when the commit returned an error: it may or may not have committed.
    pub(crate) certain: bool,
}

/// What the producers did.
#[derive(Debug, Default)]
pub(crate) struct Produced {
    pub(crate) records: Vec<Record>,
    /// Transactions that failed before commit (rolled back: none of their messages may appear).
    pub(crate) failed_transactions: u64,
    pub(crate) rolled_back: Vec<Uuid>,
    pub(crate) long_transactions: u64,
}

/// The kinds of producer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Back-to-back transactions of 1 to 3 messages on random shared keys.
    Fast,
    /// One message, then 100 to 600 ms of other work inside the transaction.
    Long,
    /// Every 500 ms: an ordinary message, a poison one, two ordinary ones, on a poison key.
    Poison,
}

/// The counter table beside the outbox table.
pub(crate) fn seq_table(table: &str) -> String {
    format!("{table}_seq")
}

pub(crate) async fn create_seq_table<DB: ChaosDb>(
    pool: &Pool<DB>,
    table: &str,
) -> Result<(), BoxError> {
    DB::create_seq_table(pool, &seq_table(table)).await
}

fn message(event: &str, key: &str, payload: serde_json::Value) -> Result<Message, BoxError> {
    Ok(Message::json(event, &payload)?.key(key)?)
}

/// Builds one transaction's messages.
fn plan(kind: Kind, rng: &mut fastrand::Rng, producer: u64) -> Result<Vec<Message>, BoxError> {
    let normal = |rng: &mut fastrand::Rng, key: &str| {
        message(
            "chaos.event",
            key,
            serde_json::json!({ "p": producer, "r": rng.u32(..) }),
        )
    };
    Ok(match kind {
        Kind::Fast => {
            let mut batch = Vec::new();
            for _ in 0..rng.usize(1..=3) {
                let key = format!("k{}", rng.u32(..KEYS));
                batch.push(normal(rng, &key)?);
            }
            batch
        }
        Kind::Long => {
            let key = format!("k{}", rng.u32(..KEYS));
            vec![normal(rng, &key)?]
        }
        Kind::Poison => {
            let key = format!("poison{}", rng.u32(..POISON_KEYS));
            let filler = "x".repeat(POISON_BYTES);
            vec![
                normal(rng, &key)?,
                message(POISON_EVENT, &key, serde_json::json!({ "filler": filler }))?,
                normal(rng, &key)?,
                normal(rng, &key)?,
            ]
        }
    })
}

/// Runs one producer until `until`.
pub(crate) async fn produce<DB: ChaosDb>(
    pool: Pool<DB>,
    outbox: Outbox<DB>,
    kind: Kind,
    producer: u64,
    until: Instant,
    seed: u64,
) -> Result<Produced, BoxError> {
    let mut rng = fastrand::Rng::with_seed(seed ^ (producer << 32));
    let seq = seq_table(&outbox.table().to_string());
    // The outbox sequence numbers the transaction drew, for reports on order violations.
    let table = outbox.statements().quoted_table();
    let mut out = Produced::default();
    while Instant::now() < until {
        let batch = plan(kind, &mut rng, producer)?;
        let meta: Vec<(String, Uuid, bool)> = batch
            .iter()
            .map(|m| {
                (
                    m.partition_key().unwrap_or_default().to_owned(),
                    m.id(),
                    m.event_type() == POISON_EVENT,
                )
            })
            .collect();
        let keys: Vec<String> = meta.iter().map(|(k, _, _)| k.clone()).collect();
        let ids: Vec<Uuid> = meta.iter().map(|(_, id, _)| *id).collect();
        let attempt = async {
            let mut tx = pool.begin().await?;
            outbox.enqueue_all(&mut *tx, batch).await?;
            if matches!(kind, Kind::Long) {
                tokio::time::sleep(Duration::from_millis(rng.u64(100..600))).await;
            }
            let last = DB::bump(&mut tx, &seq, &keys).await?;
            let seqs = DB::lookup(&mut tx, &table, &ids).await?;
            Ok::<_, BoxError>((tx, last, seqs))
        };
        let (tx, last, seqs) = match attempt.await {
            Ok(done) => done,
            Err(_) => {
                // Nothing was committed: the transaction is gone with its connection or
                // rolled back when dropped.
                out.failed_transactions += 1;
                out.rolled_back.extend(meta.iter().map(|(_, id, _)| *id));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let certain = tx.commit().await.is_ok();
        if !certain {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if matches!(kind, Kind::Long) {
            out.long_transactions += 1;
        }
        // The counter ends at `last`; this transaction's messages of a key took the numbers
        // just below it, in enqueue order.
        let last: HashMap<String, i64> = last.into_iter().collect();
        let seqs: HashMap<Uuid, i64> = seqs.into_iter().collect();
        let mut taken: HashMap<&str, i64> = HashMap::new();
        for key in &keys {
            *taken.entry(key).or_default() += 1;
        }
        let mut next: HashMap<&str, i64> = taken
            .iter()
            .map(|(k, n)| (*k, last.get(*k).copied().unwrap_or_default() - n + 1))
            .collect();
        for (key, id, poison) in meta {
            let slot = next.get_mut(key.as_str()).ok_or("counter row missing")?;
            let position = *slot;
            *slot += 1;
            out.records.push(Record {
                seq: seqs.get(&id).copied().unwrap_or_default(),
                id,
                position,
                poison,
                certain,
            });
        }
        match kind {
            Kind::Fast => tokio::time::sleep(Duration::from_millis(rng.u64(1..5))).await,
            Kind::Long => {}
            Kind::Poison => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Ok(out)
}
