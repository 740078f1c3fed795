//! One claim → publish → settle cycle.

use std::collections::HashSet;
use std::time::SystemTime;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::lease::Lease;
use super::{Relay, rounds};
use crate::error::{Error, Result};
use crate::message::Envelope;
use crate::publisher::{PublishError, Publisher};
use crate::retry::RetryDecision;
use crate::store::{Failure, Settlement, Store};

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchReport {
    /// Rows claimed.
    pub claimed: u64,
    /// Rows published and acknowledged.
    pub published: u64,
    /// Rows that failed and will be retried.
    pub retried: u64,
    /// Rows that failed for the last time and are now dead.
    pub dead: u64,
    /// Rows given back unpublished (behind a failure of their key, broker down, or shutdown).
    pub released: u64,
    /// Rows whose settlement was refused because the lease had passed to another relay.
    pub fenced: u64,
    /// The broker reported itself unavailable during this batch.
    pub broker_unavailable: bool,
    /// The first error the broker gave for being unavailable.
    pub broker_error: Option<String>,
    /// Less than a quarter of the lease was left before a publish round, or a publish was
    /// still unanswered with an eighth of it left, so the rest of the batch was given back
    /// unpublished (a stalled relay must not publish rows whose lease another relay may
    /// already hold). The lease is the configured one, or the renewed heartbeat lease when a
    /// renewal did not come in time.
    pub lease_expired: bool,
    /// A publish call did not return before its deadline (an eighth of the lease before the
    /// lease ends: the configured lease, or the heartbeat lease when renewals stopped coming)
    /// and was abandoned; its messages were given back.
    pub publish_timed_out: bool,
}

impl<S: Store, P: Publisher> Relay<S, P> {
    /// Claims one batch, publishes it round by round, and settles every row.
    ///
    /// # Errors
    ///
    /// A store error while claiming or settling. Rows that could not be settled keep their
    /// lease and are claimed again when it expires. [`Error::PublisherContract`] after
    /// settling, when the publisher returned the wrong number of outcomes: the messages of
    /// that publish and of the rounds after it are released unpublished.
    pub async fn process_batch(&self, cancel: &CancellationToken) -> Result<BatchReport> {
        let inner = &*self.inner;
        let config = &inner.config;
        // Measured before the claim is sent: the lease runs from the database's clock at claim
        // time, which cannot be earlier than this.
        let mut lease = Lease::new(Instant::now(), config.lease);
        let claim = inner
            .store
            .claim(config.batch_size, Lease::claim_lease(config.lease))
            .instrument(tracing::debug_span!(
                "outbox.claim",
                limit = config.batch_size
            ))
            .await?;
        let mut report = BatchReport {
            claimed: (claim.messages.len() + claim.corrupt.len()) as u64,
            ..BatchReport::default()
        };
        if claim.is_empty() {
            return Ok(report);
        }
        metrics::counter!("outbox_claimed_total").increment(report.claimed);
        metrics::histogram!("outbox_claim_batch_size").record(report.claimed as f64);
        lease.keep_alive(self, claim.token, || {
            let rows = claim.messages.iter().map(|m| m.seq);
            rows.chain(claim.corrupt.iter().map(|c| c.seq)).collect()
        });

        let (messages, ends) = rounds::plan(claim.messages);
        let mut published: Vec<i64> = Vec::with_capacity(messages.len());
        // A row that cannot be read is dead at once: no retry can make it readable, and
        // holding it would stall its key behind it.
        let mut failures: Vec<Failure> = claim
            .corrupt
            .iter()
            .map(|row| {
                tracing::error!(seq = row.seq, reason = %row.reason, "dead-lettering a corrupt outbox row");
                Failure {
                    seq: row.seq,
                    error: format!("corrupt outbox row: {}", row.reason),
                    retry_after: None,
                }
            })
            .collect();
        report.dead = failures.len() as u64;
        if !failures.is_empty() {
            metrics::counter!("outbox_dead_lettered_total", "event_type" => "(corrupt row)")
                .increment(report.dead);
        }
        let mut released: Vec<i64> = Vec::new();
        let mut stopped_keys: HashSet<String> = HashSet::new();
        let mut latencies = Vec::with_capacity(messages.len());
        // Acked messages by event type, counted once per batch: a batch has few types.
        let mut acked: Vec<(String, u64)> = Vec::new();
        let mut broken_contract = None;

        let mut start = 0;
        for end in ends {
            let round = &messages[start..end];
            start = end;
            if !report.lease_expired && !lease.round_may_start() {
                report.lease_expired = true;
                tracing::warn!(
                    lease = ?config.lease,
                    "lease nearly spent before publishing; giving the rest of the batch back"
                );
                metrics::counter!("outbox_lease_expired_batches_total").increment(1);
            }
            if report.broker_unavailable
                || report.lease_expired
                || broken_contract.is_some()
                || cancel.is_cancelled()
            {
                released.extend(round.iter().map(|m| m.seq));
                continue;
            }
            // Messages whose key already failed in this batch wait behind that failure.
            let filtered: Vec<Envelope>;
            let batch: &[Envelope] = if stopped_keys.is_empty() {
                round
            } else {
                let (blocked, rest): (Vec<&Envelope>, Vec<&Envelope>) =
                    round.iter().partition(|m| {
                        m.partition_key
                            .as_ref()
                            .is_some_and(|k| stopped_keys.contains(k))
                    });
                released.extend(blocked.iter().map(|m| m.seq));
                filtered = rest.into_iter().cloned().collect();
                &filtered
            };
            if batch.is_empty() {
                continue;
            }
            // Dropped with the round: each message's span lasts from the call to its outcome.
            let _message_spans = crate::trace::message_spans(batch);
            let publish = inner
                .publisher
                .publish(batch)
                .instrument(tracing::debug_span!(
                    "outbox.publish",
                    messages = batch.len()
                ));
            let outcomes = tokio::select! {
                biased;
                outcomes = publish => Some(outcomes),
                () = lease.publish_deadline() => None,
            };
            let Some(outcomes) = outcomes else {
                tracing::warn!(
                    lease = ?config.lease,
                    messages = batch.len(),
                    "publish did not return before the lease's end drew near; giving the \
                     batch back (raise the lease above the broker's worst acknowledgement time)"
                );
                metrics::counter!("outbox_publish_timeouts_total").increment(1);
                report.publish_timed_out = true;
                report.lease_expired = true;
                released.extend(batch.iter().map(|m| m.seq));
                continue;
            };
            if outcomes.len() != batch.len() {
                // Which outcome belongs to which message is unknown: give them all back.
                tracing::error!(
                    messages = batch.len(),
                    outcomes = outcomes.len(),
                    "publisher returned the wrong number of outcomes; releasing the batch"
                );
                released.extend(batch.iter().map(|m| m.seq));
                broken_contract = Some(Error::PublisherContract {
                    expected: batch.len(),
                    returned: outcomes.len(),
                });
                continue;
            }
            let acked_at = SystemTime::now();
            for (msg, outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        published.push(msg.seq);
                        latencies.push(acked_at.duration_since(msg.created_at).unwrap_or_default());
                        match acked.iter_mut().find(|(t, _)| *t == msg.event_type) {
                            Some((_, n)) => *n += 1,
                            None => acked.push((msg.event_type.clone(), 1)),
                        }
                    }
                    Err(PublishError::Unavailable(err)) => {
                        if !report.broker_unavailable {
                            tracing::warn!(error = %err, "broker unavailable; releasing batch");
                            report.broker_error = Some(error_chain(&*err));
                        }
                        report.broker_unavailable = true;
                        released.push(msg.seq);
                        if let Some(key) = &msg.partition_key {
                            stopped_keys.insert(key.clone());
                        }
                    }
                    Err(PublishError::Rejected(err)) => {
                        let failed = msg.attempts.saturating_add(1);
                        let retry_after = match config.retry.decide(failed) {
                            RetryDecision::RetryAfter(delay) => Some(delay),
                            RetryDecision::Dead => None,
                        };
                        tracing::debug!(
                            id = %msg.id, event_type = %msg.event_type, attempt = failed,
                            dead = retry_after.is_none(), error = %err, "publish failed"
                        );
                        failures.push(Failure {
                            seq: msg.seq,
                            error: error_chain(&*err),
                            retry_after,
                        });
                        if let Some(key) = &msg.partition_key {
                            stopped_keys.insert(key.clone());
                        }
                        let labels = [("event_type", msg.event_type.clone())];
                        metrics::counter!("outbox_publish_failures_total", &labels).increment(1);
                        if retry_after.is_none() {
                            report.dead += 1;
                            metrics::counter!("outbox_dead_lettered_total", &labels).increment(1);
                        } else {
                            report.retried += 1;
                            metrics::counter!("outbox_retries_total", &labels).increment(1);
                        }
                    }
                }
            }
        }

        let settlement = Settlement {
            published,
            failed: failures,
            released,
        };
        lease.stop_renewing();
        let settled = self
            .settle(claim.token, &settlement, &lease)
            .instrument(tracing::debug_span!(
                "outbox.settle",
                published = settlement.published.len(),
                failed = settlement.failed.len(),
                released = settlement.released.len()
            ))
            .await?;
        let fenced = |asked: usize, done: u64| asked as u64 - done.min(asked as u64);
        report.published = settled.published;
        report.released = settled.released;
        report.fenced = fenced(settlement.published.len(), settled.published)
            + fenced(settlement.failed.len(), settled.failed)
            + fenced(settlement.released.len(), settled.released);
        for (event_type, n) in acked {
            metrics::counter!("outbox_published_total", "event_type" => event_type).increment(n);
        }
        if settled.published > 0 {
            let histogram = metrics::histogram!("outbox_publish_latency_seconds");
            for latency in latencies {
                histogram.record(latency.as_secs_f64());
            }
        }
        if report.fenced > 0 {
            tracing::warn!(
                fenced = report.fenced,
                "lease expired before settling; another relay owns these rows now \
                 (raise the lease above the broker's worst acknowledgement time)"
            );
            metrics::counter!("outbox_fenced_total").increment(report.fenced);
        }
        match broken_contract {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }
}

/// Settlement attempts per batch when the store fails transiently.
const SETTLE_ATTEMPTS: u32 = 4;

impl<S: Store, P: Publisher> Relay<S, P> {
    /// Settles a batch, trying again after a transient store error (deadlock, serialization
    /// failure, lost connection) while the lease holds: a settle that fails once must not make
    /// the whole batch be published again. Settling twice is safe, as every settle is fenced
    /// by the claim's token.
    async fn settle(
        &self,
        token: crate::store::LeaseToken,
        settlement: &Settlement,
        lease: &Lease,
    ) -> Result<crate::store::Settled> {
        let mut pause = std::time::Duration::from_millis(25);
        let mut attempt = 1;
        loop {
            match self.inner.store.settle(token, settlement).await {
                Err(err)
                    if err.is_transient()
                        && attempt < SETTLE_ATTEMPTS
                        && lease
                            .valid_until()
                            .is_some_and(|ends| Instant::now() + pause < ends) =>
                {
                    tracing::warn!(error = %err, attempt, "settling the batch failed; trying again");
                    metrics::counter!("outbox_settle_retries_total").increment(1);
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// Renders an error and its sources on one line, for `last_error`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
