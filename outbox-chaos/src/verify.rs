//! Reads the stream back and compares it with what the producers committed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use outbox_sqlx::Uuid;

use crate::BoxError;
use crate::produce::Produced;

/// What the consumer saw, against what committed.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Messages whose commit returned success (poison ones excluded).
    pub(crate) committed: u64,
    pub(crate) published_unique: u64,
    /// Committed, not poison, never seen on the stream.
    pub(crate) lost: u64,
    /// Stream messages whose id was already seen.
    pub(crate) duplicates: u64,
    /// Per key: messages seen after one that committed later.
    pub(crate) order_violations: u64,
    /// The first few violations, described.
    pub(crate) violations: Vec<String>,
    pub(crate) poison_committed: u64,
    pub(crate) poison_published: u64,
    /// Messages of transactions that failed before commit, seen on the stream anyway.
    pub(crate) rolled_back_published: u64,
    /// Messages whose commit returned an error (they may or may not exist).
    pub(crate) uncertain: u64,
}

/// Consumes the whole stream with an ordered consumer and checks it against `produced`.
pub(crate) async fn check(mut stream: Stream, produced: &Produced) -> Result<Report, BoxError> {
    let total = stream.info().await?.state.messages;
    let consumer = stream.create_consumer(OrderedConfig::default()).await?;
    let mut messages = consumer.messages().await?;
    let mut seen_order: Vec<(String, Uuid, u64)> = Vec::with_capacity(total as usize);
    let mut seen: HashSet<Uuid> = HashSet::with_capacity(total as usize);
    let mut report = Report::default();
    for _ in 0..total {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .map_err(|_| "the stream stopped delivering before its last message")?
            .ok_or("the stream ended early")??;
        let headers = message.headers.as_ref().ok_or("message without headers")?;
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let id: Uuid = header("Nats-Msg-Id")
            .ok_or("message without Nats-Msg-Id")?
            .parse()?;
        let stream_seq = message
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or_default();
        if seen.insert(id) {
            seen_order.push((header("Outbox-Key").unwrap_or_default(), id, stream_seq));
        } else {
            report.duplicates += 1;
        }
    }
    report.published_unique = seen.len() as u64;

    // Per message: its place in its key's commit order, and its outbox id for reports.
    let mut position: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for record in &produced.records {
        position.insert(record.id, (record.position, record.seq));
        if !record.certain {
            report.uncertain += 1;
        } else if record.poison {
            report.poison_committed += 1;
        } else {
            report.committed += 1;
            if !seen.contains(&record.id) {
                report.lost += 1;
            }
        }
        if record.poison && seen.contains(&record.id) {
            report.poison_published += 1;
        }
    }
    report.rolled_back_published = produced
        .rolled_back
        .iter()
        .filter(|id| seen.contains(id))
        .count() as u64;

    // Per key: the latest commit seen so far, its id, outbox id and stream sequence.
    let mut last: HashMap<&str, (i64, Uuid, i64, u64)> = HashMap::new();
    for (key, id, stream_seq) in &seen_order {
        let Some(&(pos, row)) = position.get(id) else {
            continue;
        };
        match last.get(key.as_str()) {
            Some(&(prev, prev_id, prev_row, prev_seq)) if pos < prev => {
                report.order_violations += 1;
                if report.violations.len() < 10 {
                    report.violations.push(format!(
                        "key {key}: commit #{pos} ({id}, outbox id {row}) at stream seq \
                         {stream_seq}, after commit #{prev} ({prev_id}, outbox id {prev_row}) \
                         at stream seq {prev_seq}"
                    ));
                }
            }
            _ => {
                last.insert(key.as_str(), (pos, *id, row, *stream_seq));
            }
        }
    }
    Ok(report)
}
