//! An in-memory store and a collecting publisher, for tests and examples.
//!
//! The store follows the same contract as the database stores (the conformance suite runs on
//! it), so relay behaviour can be explored without a database. It keeps nothing across restarts.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use uuid::Uuid;

use crate::error::Result;
use crate::message::{Envelope, Message};
use crate::publisher::{PublishError, Publisher};
use crate::status::Status;
use crate::store::{
    Claim, EventTypeStats, Failure, Filter, Inspect, LeaseToken, LiveClaim, OutboxStats, Purge,
    Replay, Replayed, Retry, Store, StoredMessage,
};

#[derive(Debug)]
struct Row {
    message: Message,
    created_at: SystemTime,
    created: Instant,
    available_at: Instant,
    attempts: u32,
    last_error: Option<String>,
    lease: Option<(LeaseToken, Instant)>,
    dead: bool,
}

impl Row {
    fn status(&self, now: Instant) -> Status {
        if self.dead {
            Status::Dead
        } else if self.lease.is_some_and(|(_, until)| until > now) {
            Status::Claimed
        } else if self.attempts > 0 {
            Status::Failed
        } else {
            Status::Pending
        }
    }

    fn envelope(&self, seq: i64) -> Envelope {
        Envelope::from_message(seq, &self.message, self.created_at, self.attempts)
    }

    fn stored(&self, seq: i64) -> StoredMessage {
        let (now, wall) = (Instant::now(), SystemTime::now());
        StoredMessage {
            envelope: self.envelope(seq),
            status: self.status(now),
            last_error: self.last_error.clone(),
            available_at: if self.available_at > now {
                wall + (self.available_at - now)
            } else {
                wall - (now - self.available_at)
            },
        }
    }
}

#[derive(Debug, Default)]
struct State {
    next_seq: i64,
    rows: BTreeMap<i64, Row>,
}

/// An outbox held in memory. Clones share the same outbox.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a transaction: messages enqueued on it appear only when it commits.
    pub fn begin(&self) -> MemoryTransaction {
        MemoryTransaction {
            store: self.clone(),
            pending: Vec::new(),
        }
    }

    /// Enqueues messages in a transaction of their own.
    pub fn enqueue_committed(&self, messages: impl IntoIterator<Item = Message>) {
        let mut tx = self.begin();
        for message in messages {
            tx.enqueue(message);
        }
        tx.commit();
    }

    /// Number of rows still in the outbox (any status).
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    /// Whether the outbox holds no rows at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A transaction on a [`MemoryStore`]; dropping it without [`commit`](Self::commit) rolls it
/// back.
#[derive(Debug)]
pub struct MemoryTransaction {
    store: MemoryStore,
    pending: Vec<Message>,
}

impl MemoryTransaction {
    /// Buffers a message until commit.
    pub fn enqueue(&mut self, message: Message) {
        self.pending.push(crate::trace::stamp(message));
    }

    /// Makes every buffered message visible to relays, in enqueue order.
    pub fn commit(self) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut state = self.store.lock();
        for message in self.pending {
            state.next_seq += 1;
            let seq = state.next_seq;
            let available_at = now + message.delay();
            state.rows.insert(
                seq,
                Row {
                    message,
                    created_at: wall,
                    created: now,
                    available_at,
                    attempts: 0,
                    last_error: None,
                    lease: None,
                    dead: false,
                },
            );
        }
    }
}

impl Store for MemoryStore {
    fn claim(&self, limit: usize, lease: Duration) -> impl Future<Output = Result<Claim>> + Send {
        let token = LeaseToken::random();
        let now = Instant::now();
        let mut state = self.lock();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut messages = Vec::new();
        for (&seq, row) in state.rows.iter_mut() {
            if messages.len() >= limit {
                break;
            }
            if row.dead {
                continue;
            }
            let ready = row.available_at <= now && row.lease.is_none_or(|(_, until)| until <= now);
            match row.message.partition_key() {
                Some(key) if blocked.contains(key) => continue,
                Some(key) if !ready => {
                    blocked.insert(key.to_owned());
                    continue;
                }
                None if !ready => continue,
                _ => {}
            }
            row.lease = Some((token, now + lease));
            messages.push(row.envelope(seq));
        }
        std::future::ready(Ok(Claim::new(token, messages)))
    }

    fn ack(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        let mut state = self.lock();
        let mut changed = 0;
        for seq in seqs {
            if state
                .rows
                .get(seq)
                .is_some_and(|row| row.lease.is_some_and(|(t, _)| t == token))
            {
                state.rows.remove(seq);
                changed += 1;
            }
        }
        std::future::ready(Ok(changed))
    }

    fn fail(
        &self,
        token: LeaseToken,
        failures: &[Failure],
    ) -> impl Future<Output = Result<u64>> + Send {
        let now = Instant::now();
        let mut state = self.lock();
        let mut changed = 0;
        for failure in failures {
            let Some(row) = state.rows.get_mut(&failure.seq) else {
                continue;
            };
            if row.lease.is_none_or(|(t, _)| t != token) {
                continue;
            }
            row.lease = None;
            row.attempts += 1;
            row.last_error = Some(failure.error.clone());
            match failure.retry_after {
                Some(delay) => row.available_at = now + delay,
                None => row.dead = true,
            }
            changed += 1;
        }
        std::future::ready(Ok(changed))
    }

    fn release(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        let mut state = self.lock();
        let mut changed = 0;
        for seq in seqs {
            if let Some(row) = state.rows.get_mut(seq)
                && row.lease.is_some_and(|(t, _)| t == token)
            {
                row.lease = None;
                changed += 1;
            }
        }
        std::future::ready(Ok(changed))
    }

    fn renew(
        &self,
        token: LeaseToken,
        seqs: &[i64],
        lease: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        let now = Instant::now();
        let mut state = self.lock();
        let held = seqs.iter().all(|seq| {
            state.rows.get(seq).is_some_and(|row| {
                row.lease
                    .is_some_and(|(t, until)| t == token && until > now)
            })
        });
        if held {
            for seq in seqs {
                if let Some(row) = state.rows.get_mut(seq) {
                    row.lease = Some((token, now + lease));
                }
            }
        }
        std::future::ready(Ok(held))
    }
}

impl Inspect for MemoryStore {
    fn stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send {
        let now = Instant::now();
        let state = self.lock();
        let mut stats = OutboxStats::default();
        let mut oldest: Option<Instant> = None;
        for row in state.rows.values() {
            let status = row.status(now);
            match status {
                Status::Dead => stats.dead += 1,
                Status::Claimed => stats.claimed += 1,
                Status::Failed => stats.failed += 1,
                _ => stats.pending += 1,
            }
            if status != Status::Dead {
                oldest = Some(oldest.map_or(row.created, |o| o.min(row.created)));
            }
        }
        stats.oldest_unpublished_age = oldest.map(|o| now.saturating_duration_since(o));
        std::future::ready(Ok(stats))
    }

    fn get(&self, id: Uuid) -> impl Future<Output = Result<Option<StoredMessage>>> + Send {
        let state = self.lock();
        let found = state
            .rows
            .iter()
            .find(|(_, row)| row.message.id() == id)
            .map(|(&seq, row)| row.stored(seq));
        std::future::ready(Ok(found))
    }

    fn event_types(&self) -> impl Future<Output = Result<Vec<EventTypeStats>>> + Send {
        let now = Instant::now();
        let state = self.lock();
        let mut types = BTreeMap::<&str, EventTypeStats>::new();
        for row in state.rows.values() {
            let event_type = row.message.event_type();
            let stats = types.entry(event_type).or_insert_with(|| EventTypeStats {
                event_type: event_type.to_owned(),
                ..EventTypeStats::default()
            });
            if row.dead {
                stats.dead += 1;
            } else {
                stats.unpublished += 1;
                let age = now.saturating_duration_since(row.created);
                stats.oldest_unpublished_age = stats.oldest_unpublished_age.max(Some(age));
            }
        }
        std::future::ready(Ok(types.into_values().collect()))
    }

    fn claims(&self) -> impl Future<Output = Result<Vec<LiveClaim>>> + Send {
        let now = Instant::now();
        let state = self.lock();
        let mut claims = BTreeMap::<LeaseToken, LiveClaim>::new();
        for (token, until) in state.rows.values().filter_map(|row| row.lease) {
            if until > now {
                let claim = claims.entry(token).or_insert_with(|| LiveClaim {
                    token,
                    messages: 0,
                    expires_in: Duration::ZERO,
                });
                claim.messages += 1;
                claim.expires_in = claim.expires_in.max(until - now);
            }
        }
        std::future::ready(Ok(claims.into_values().collect()))
    }

    fn count(&self, filter: &Filter) -> impl Future<Output = Result<u64>> + Send {
        let state = self.lock();
        let found = state
            .rows
            .iter()
            .filter(|(seq, row)| filter.matches(&row.stored(**seq)))
            .count();
        std::future::ready(Ok(found as u64))
    }

    fn list(
        &self,
        filter: &Filter,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredMessage>>> + Send {
        let state = self.lock();
        let found = state
            .rows
            .range(after.saturating_add(1)..)
            .map(|(&seq, row)| row.stored(seq))
            .filter(|m| filter.matches(m))
            .take(limit)
            .collect();
        std::future::ready(Ok(found))
    }

    fn retry(&self, target: &Retry, limit: usize) -> impl Future<Output = Result<u64>> + Send {
        let now = Instant::now();
        let mut state = self.lock();
        let dead = match target {
            Retry::Dead { event_type, key } => Some(Filter::dead(event_type.clone(), key.clone())),
            _ => None,
        };
        let mut changed = 0;
        for (&seq, row) in state.rows.iter_mut() {
            if changed as usize >= limit {
                break;
            }
            let stored = row.stored(seq);
            let chosen = match &dead {
                Some(dead) => dead.matches(&stored),
                None => {
                    matches!(target, Retry::Message(id) if *id == row.message.id())
                        && matches!(stored.status, Status::Dead | Status::Failed)
                }
            };
            if chosen {
                row.dead = false;
                row.attempts = 0;
                row.available_at = now;
                row.lease = None;
                changed += 1;
            }
        }
        std::future::ready(Ok(changed))
    }

    /// The in-memory store deletes rows on ack, so there is never anything to replay.
    fn replay(
        &self,
        target: &Replay,
        _after: i64,
        _limit: usize,
    ) -> impl Future<Output = Result<Replayed>> + Send {
        let through = target
            .through
            .unwrap_or_else(|| self.lock().rows.keys().next_back().copied().unwrap_or(0));
        std::future::ready(Ok(Replayed {
            through,
            ..Replayed::default()
        }))
    }

    fn purge(&self, target: &Purge, limit: usize) -> impl Future<Output = Result<u64>> + Send {
        let now = Instant::now();
        let mut state = self.lock();
        let doomed: Vec<i64> = match target {
            // Published rows are deleted on ack here: there are none to purge.
            Purge::Published { .. } => Vec::new(),
            Purge::Dead {
                older_than,
                event_type,
            } => state
                .rows
                .iter()
                .filter(|(_, row)| {
                    row.dead
                        && now.saturating_duration_since(row.created) > *older_than
                        && event_type
                            .as_deref()
                            .is_none_or(|t| row.message.event_type() == t)
                })
                .map(|(&seq, _)| seq)
                .take(limit)
                .collect(),
        };
        for seq in &doomed {
            state.rows.remove(seq);
        }
        std::future::ready(Ok(doomed.len() as u64))
    }

    fn retry_dead(&self, id: Option<Uuid>) -> impl Future<Output = Result<u64>> + Send {
        let now = Instant::now();
        let mut state = self.lock();
        let mut changed = 0;
        for row in state.rows.values_mut() {
            if row.dead && id.is_none_or(|id| row.message.id() == id) {
                row.dead = false;
                row.attempts = 0;
                row.available_at = now;
                changed += 1;
            }
        }
        std::future::ready(Ok(changed))
    }

    /// The in-memory store deletes rows on ack, so there is never anything to purge.
    fn purge_published(&self, _older_than: Duration) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(Ok(0))
    }
}

type FailureRule = dyn Fn(&Envelope) -> Option<PublishError> + Send + Sync;

/// A publisher that keeps every published message in memory, in publish order, and can be told
/// to fail some of them.
#[derive(Clone, Default)]
pub struct CollectingPublisher {
    published: Arc<Mutex<Vec<Envelope>>>,
    attempts: Arc<Mutex<Vec<(Uuid, std::time::Instant)>>>,
    rule: Option<Arc<FailureRule>>,
}

impl std::fmt::Debug for CollectingPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectingPublisher")
            .field("published", &self.published().len())
            .field("fails", &self.rule.is_some())
            .finish()
    }
}

impl CollectingPublisher {
    /// A publisher that acknowledges everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publisher that fails a message whenever `rule` returns an error for it.
    pub fn failing_when(
        rule: impl Fn(&Envelope) -> Option<PublishError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            rule: Some(Arc::new(rule)),
            ..Self::default()
        }
    }

    /// Every message acknowledged so far, in publish order.
    pub fn published(&self) -> Vec<Envelope> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every publish attempt (successful or not) with its time, in order.
    pub fn attempts(&self) -> Vec<(Uuid, std::time::Instant)> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Publisher for CollectingPublisher {
    fn publish(
        &self,
        batch: &[Envelope],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        let now = std::time::Instant::now();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        for msg in batch {
            attempts.push((msg.id, now));
            match self.rule.as_ref().and_then(|rule| rule(msg)) {
                Some(err) => outcomes.push(Err(err)),
                None => {
                    published.push(msg.clone());
                    outcomes.push(Ok(()));
                }
            }
        }
        std::future::ready(outcomes)
    }
}

/// A publisher that acknowledges everything at once and keeps nothing: the floor for relay
/// benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullPublisher;

impl Publisher for NullPublisher {
    fn publish(
        &self,
        batch: &[Envelope],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        std::future::ready(batch.iter().map(|_| Ok(())).collect())
    }
}
