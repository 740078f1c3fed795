//! The storage seam: what the relay needs from an outbox table.

use std::future::Future;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::error::Result;
use crate::message::Envelope;
use crate::status::Status;

/// Identifies one claim. Every row of a claim carries it while the lease lasts, and acks, failures
/// and releases only touch rows that still carry it: a relay whose lease expired and whose rows
/// were claimed again cannot change them (fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseToken(pub i64);

impl LeaseToken {
    /// A fresh random token (63 bits, never zero).
    pub fn random() -> Self {
        Self(fastrand::i64(1..i64::MAX))
    }
}

/// Rows claimed by one relay, leased until the lease runs out.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Claim {
    /// The fencing token the rows were claimed with.
    pub token: LeaseToken,
    /// The claimed messages, in sequence order.
    pub messages: Vec<Envelope>,
    /// Claimed rows that could not be read as messages (edited by hand, or written by a newer
    /// schema). They are leased like the others, and the relay dead-letters them.
    pub corrupt: Vec<CorruptRow>,
}

impl Claim {
    /// A claim of `messages` under `token`, with no corrupt rows.
    pub fn new(token: LeaseToken, messages: Vec<Envelope>) -> Self {
        Self {
            token,
            messages,
            corrupt: Vec::new(),
        }
    }

    /// Adds claimed rows that could not be decoded.
    #[must_use]
    pub fn with_corrupt(mut self, corrupt: Vec<CorruptRow>) -> Self {
        self.corrupt = corrupt;
        self
    }

    /// Whether the claim holds no row at all.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.corrupt.is_empty()
    }
}

/// A claimed row that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRow {
    /// The row's sequence number.
    pub seq: i64,
    /// What could not be decoded, naming the column.
    pub reason: String,
}

/// A failed publish, as the relay reports it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The row's sequence number.
    pub seq: i64,
    /// The error to keep as the row's `last_error`.
    pub error: String,
    /// `Some(delay)`: retry no earlier than `delay` from now. `None`: the row is dead.
    pub retry_after: Option<Duration>,
}

/// The base storage trait: claim, acknowledge, fail and release rows.
///
/// # Contract
///
/// * `claim` leases at most `limit` rows that are *ready* (committed, due, not dead, not leased
///   or with an expired lease) and that follow the **per-key rule**: a keyed row is claimed only
///   if every older live row (pending, claimed, failed; not dead) of its key is claimed in the
///   same call. Rows are returned in sequence order. Unkeyed rows have no such rule.
/// * `ack`, `fail`, `release` and `renew` change only rows still leased with `token` (`ack`,
///   `fail` and `release` return how many they changed); rows claimed since by someone else
///   are left alone.
/// * Nothing here holds a database transaction open between calls.
///
/// The conformance suite (`testing` feature) checks all of this on a real database.
pub trait Store: Send + Sync + 'static {
    /// Leases up to `limit` ready rows for `lease`.
    fn claim(&self, limit: usize, lease: Duration) -> impl Future<Output = Result<Claim>> + Send;

    /// Marks rows as published (deleting them, or keeping them for a retention window).
    fn ack(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send;

    /// Records failed attempts: each row's attempt count grows by one, its error is kept, and it
    /// is either scheduled again or dead.
    fn fail(
        &self,
        token: LeaseToken,
        failures: &[Failure],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Gives rows back unchanged (no attempt counted), for shutdown and for rows that must wait
    /// behind an earlier failure of their key.
    fn release(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send;

    /// Extends the lease of the claim `token`, whose rows are `seqs`, to `lease` from now, and
    /// returns `true`, if every one of those rows is still leased with `token`; otherwise
    /// returns `false` (the lease ran out, or rows were settled or claimed by another relay
    /// since), and the relay counts the whole claim as lost.
    ///
    /// The relay claims with a short lease and renews it while a batch is in flight, so the
    /// keys of a relay that dies are free again within that short lease, however long the
    /// batch may take. A lease that has run out is never renewed: another relay may already
    /// hold the rows.
    fn renew(
        &self,
        token: LeaseToken,
        seqs: &[i64],
        lease: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Settles a whole claim at once: acks `settlement.published`, fails `settlement.failed`,
    /// releases `settlement.released`, and ends the claim. The relay calls this once per batch.
    ///
    /// The default runs [`ack`](Store::ack), [`fail`](Store::fail) and
    /// [`release`](Store::release) in turn; a store that can do it in one round trip should.
    fn settle(
        &self,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settled>> + Send {
        async move {
            let mut settled = Settled::default();
            if !settlement.published.is_empty() {
                settled.published = self.ack(token, &settlement.published).await?;
            }
            if !settlement.failed.is_empty() {
                settled.failed = self.fail(token, &settlement.failed).await?;
            }
            if !settlement.released.is_empty() {
                settled.released = self.release(token, &settlement.released).await?;
            }
            Ok(settled)
        }
    }
}

/// The outcome of one claimed batch, as the relay reports it to [`Store::settle`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Rows the broker acknowledged.
    pub published: Vec<i64>,
    /// Rows that failed, with what to do next.
    pub failed: Vec<Failure>,
    /// Rows given back untried.
    pub released: Vec<i64>,
}

/// How many rows [`Store::settle`] changed in each group; fewer than asked means the claim had
/// passed to another relay (fenced).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Rows acknowledged.
    pub published: u64,
    /// Rows failed.
    pub failed: u64,
    /// Rows released.
    pub released: u64,
}

/// A stored message with its bookkeeping, as inspection shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message itself.
    pub envelope: Envelope,
    /// Its status now.
    pub status: Status,
    /// The last publish error, if any attempt failed.
    pub last_error: Option<String>,
    /// When it becomes (or became) due.
    pub available_at: SystemTime,
}

/// Counts by status, and the age of the oldest message still to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Pending (unclaimed, not failed) messages.
    pub pending: u64,
    /// Messages leased by a relay right now.
    pub claimed: u64,
    /// Messages waiting for a retry.
    pub failed: u64,
    /// Dead messages.
    pub dead: u64,
    /// Published messages kept for the retention window.
    pub published: u64,
    /// Age of the oldest message not yet published or dead.
    pub oldest_unpublished_age: Option<Duration>,
}

impl OutboxStats {
    /// Messages that still have to be published: pending, claimed and failed.
    pub fn unpublished(&self) -> u64 {
        self.pending + self.claimed + self.failed
    }
}

/// Which messages an operator's read selects: every condition given must hold.
///
/// ```
/// # use outbox_core as outbox_sqlx;
/// use outbox_sqlx::{Filter, Status};
///
/// let dead_orders = Filter::status(Status::Dead).event_type("order.created");
/// assert_eq!(dead_orders.status, Some(Status::Dead));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// Only messages in this status.
    pub status: Option<Status>,
    /// Only messages with this partition key.
    pub key: Option<String>,
    /// Only messages of this event type.
    pub event_type: Option<String>,
}

impl Filter {
    /// Every message.
    pub fn all() -> Self {
        Self::default()
    }

    /// Messages in `status`.
    pub fn status(status: Status) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Only those with partition key `key`.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Only those of event type `event_type`.
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Dead messages, of one event type or key when given: what [`Retry::Dead`] names.
    pub(crate) fn dead(event_type: Option<String>, key: Option<String>) -> Self {
        Self {
            status: Some(Status::Dead),
            key,
            event_type,
        }
    }

    /// Whether `message` passes.
    pub fn matches(&self, message: &StoredMessage) -> bool {
        self.status.is_none_or(|s| message.status == s)
            && self
                .key
                .as_deref()
                .is_none_or(|k| message.envelope.partition_key.as_deref() == Some(k))
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| message.envelope.event_type == t)
    }
}

/// The messages of one event type, by how far they got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypeStats {
    /// The event type.
    pub event_type: String,
    /// Messages still to publish: pending, claimed or waiting for a retry.
    pub unpublished: u64,
    /// Dead messages.
    pub dead: u64,
    /// Published messages kept for the retention window.
    pub published: u64,
    /// Age of this type's oldest message still to publish.
    pub oldest_unpublished_age: Option<Duration>,
}

/// A claim a relay holds right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveClaim {
    /// The claim's fencing token.
    pub token: LeaseToken,
    /// How many messages it holds.
    pub messages: u64,
    /// How long until its lease runs out, unless the relay renews it.
    pub expires_in: Duration,
}

/// Which messages [`Inspect::retry`] makes due again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// One message, if it is dead or waiting for its next attempt (not while a relay holds it).
    Message(Uuid),
    /// Every dead message, or only those of one event type or key.
    Dead {
        /// Only this event type.
        event_type: Option<String>,
        /// Only this partition key.
        key: Option<String>,
    },
}

/// Which messages [`Inspect::purge`] deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purge {
    /// Dead messages created more than `older_than` ago, or only those of one event type.
    Dead {
        /// Only messages created before this long ago.
        older_than: Duration,
        /// Only this event type.
        event_type: Option<String>,
    },
    /// Published messages kept for retention, published more than `older_than` ago.
    Published {
        /// Only messages published before this long ago.
        older_than: Duration,
    },
}

/// Which published messages [`Inspect::replay`] enqueues again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replay {
    /// Messages published at or after this time.
    pub since: SystemTime,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only messages up to this sequence number; `None`: up to the highest one when the call
    /// runs, which [`Replayed::through`] returns to pass on to the next call, so that the
    /// copies a replay makes are never replayed by the same replay.
    pub through: Option<i64>,
}

impl Replay {
    /// Messages published at or after `since`.
    pub fn since(since: SystemTime) -> Self {
        Self {
            since,
            event_type: None,
            through: None,
        }
    }

    /// Only those of event type `event_type`.
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }
}

/// What one [`Inspect::replay`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// How many copies it enqueued.
    pub replayed: u64,
    /// The sequence number of the last message it copied (the cursor for the next call).
    pub last_seq: Option<i64>,
    /// The highest sequence number this replay covers.
    pub through: i64,
}

/// The header a replayed copy carries: the id of the message it copies.
pub const REPLAY_OF_HEADER: &str = "outbox-replay-of";

/// A capability trait for stores that can be inspected and repaired by operators (the
/// `outbox` CLI is built on it).
///
/// The repairs work in batches of at most `limit` rows, each its own statement, so that a large
/// one never holds its locks for long; call again until a batch changes fewer than `limit`.
pub trait Inspect: Send + Sync + 'static {
    /// Counts by status.
    fn stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send;

    /// Counts by event type, sorted by event type.
    fn event_types(&self) -> impl Future<Output = Result<Vec<EventTypeStats>>> + Send;

    /// The claims relays hold right now, sorted by token.
    fn claims(&self) -> impl Future<Output = Result<Vec<LiveClaim>>> + Send;

    /// How many messages pass `filter`.
    fn count(&self, filter: &Filter) -> impl Future<Output = Result<u64>> + Send;

    /// One message by id.
    fn get(&self, id: Uuid) -> impl Future<Output = Result<Option<StoredMessage>>> + Send;

    /// Up to `limit` messages passing `filter`, in sequence order, starting after sequence
    /// `after` (0 from the start; pass the last `seq` seen to page on: the cursor never skips
    /// or repeats a message that stays put).
    fn list(
        &self,
        filter: &Filter,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredMessage>>> + Send;

    /// Makes dead messages pending again with their attempt count reset; `None` revives all dead
    /// messages. Returns how many were revived.
    fn retry_dead(&self, id: Option<Uuid>) -> impl Future<Output = Result<u64>> + Send;

    /// Makes up to `limit` of the messages `target` names due now, with their attempt count
    /// reset (their last error is kept until the next attempt). Returns how many.
    fn retry(&self, target: &Retry, limit: usize) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes up to `limit` of the messages `target` names. Returns how many.
    fn purge(&self, target: &Purge, limit: usize) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes published rows kept for retention that are older than `older_than`; returns how
    /// many were deleted (none for a store that deletes rows on ack).
    fn purge_published(&self, older_than: Duration) -> impl Future<Output = Result<u64>> + Send;

    /// Enqueues copies of up to `limit` published messages that `target` names, after
    /// sequence `after`, in sequence order and in one transaction: each copy has a new id, the
    /// original's key, type, payload and headers, and the header [`REPLAY_OF_HEADER`] naming
    /// the original. Only stores that keep published rows have any to replay.
    fn replay(
        &self,
        target: &Replay,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Replayed>> + Send;
}

impl<S: Store> Store for std::sync::Arc<S> {
    fn claim(&self, limit: usize, lease: Duration) -> impl Future<Output = Result<Claim>> + Send {
        (**self).claim(limit, lease)
    }

    fn ack(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        (**self).ack(token, seqs)
    }

    fn fail(
        &self,
        token: LeaseToken,
        failures: &[Failure],
    ) -> impl Future<Output = Result<u64>> + Send {
        (**self).fail(token, failures)
    }

    fn release(&self, token: LeaseToken, seqs: &[i64]) -> impl Future<Output = Result<u64>> + Send {
        (**self).release(token, seqs)
    }

    fn renew(
        &self,
        token: LeaseToken,
        seqs: &[i64],
        lease: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        (**self).renew(token, seqs, lease)
    }

    fn settle(
        &self,
        token: LeaseToken,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settled>> + Send {
        (**self).settle(token, settlement)
    }
}
