//! A claim's lease while its batch is in flight: claimed short, renewed by a heartbeat, and
//! counted as lost for good the moment the relay cannot vouch for it.
//!
//! The configured lease bounds how long one batch may hold its rows (a broker slow to
//! acknowledge needs a long one). Taking the rows for that long would also make a relay that
//! dies mid-batch hold its keys for that long. So a claim is taken for [`HEARTBEAT_LEASE`] and
//! renewed every quarter of it while the batch runs: a dead relay's keys are free again within
//! one heartbeat lease, a living relay keeps its rows as long as the configured lease allows.
//!
//! The relay counts the lease from the moment it sent the claim (or renewal), which is earlier
//! than the database's own clock reading for it, so its count ends first. A renewal that comes
//! back after the relay's count ran out is ignored: another relay may have taken the rows in
//! between, and publishing them again would overtake its messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Relay;
use crate::publisher::Publisher;
use crate::store::{LeaseToken, Store};

/// The lease a claim is taken and renewed with while its batch runs, when the configured lease
/// is longer: how long the keys of a relay that died mid-batch stay held.
pub(crate) const HEARTBEAT_LEASE: Duration = Duration::from_secs(1);

/// The relay's count of one claim's lease.
#[derive(Debug)]
pub(crate) struct Lease {
    claimed_at: Instant,
    /// The configured lease: no round starts later than `limit - limit/4` after the claim, no
    /// publish runs past `limit - limit/8`.
    limit: Duration,
    /// The lease asked for at claim and at each renewal.
    step: Duration,
    /// Where the lease ends by the relay's count, in nanoseconds after `claimed_at`; 0 once
    /// it is lost.
    ends: Arc<AtomicU64>,
    heartbeat: Option<CancellationToken>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl Lease {
    /// The lease to claim with under a configured `limit`.
    pub(crate) fn claim_lease(limit: Duration) -> Duration {
        limit.min(HEARTBEAT_LEASE)
    }

    /// The count of a claim sent at `claimed_at` under the configured `limit`.
    pub(crate) fn new(claimed_at: Instant, limit: Duration) -> Self {
        let step = Self::claim_lease(limit);
        Self {
            claimed_at,
            limit,
            step,
            ends: Arc::new(AtomicU64::new(nanos(step))),
            heartbeat: None,
        }
    }

    /// Starts renewing the lease of `seqs` under `token` on the relay's store, when the
    /// configured lease is longer than the one claimed.
    pub(crate) fn keep_alive<S: Store, P: Publisher>(
        &mut self,
        relay: &Relay<S, P>,
        token: LeaseToken,
        seqs: impl FnOnce() -> Vec<i64>,
    ) {
        if self.step >= self.limit {
            return;
        }
        let (relay, seqs) = (relay.clone(), seqs());
        let stop = CancellationToken::new();
        self.heartbeat = Some(stop.clone());
        let heartbeat = Heartbeat {
            claimed_at: self.claimed_at,
            limit: self.limit,
            step: self.step,
            ends: Arc::clone(&self.ends),
        };
        tokio::spawn(async move { heartbeat.run(relay.store(), token, &seqs, &stop).await });
    }

    fn ends(&self) -> Option<Instant> {
        match self.ends.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.claimed_at + Duration::from_nanos(n)),
        }
    }

    /// Where the lease ends by the relay's count, or `None` once it is lost.
    pub(crate) fn valid_until(&self) -> Option<Instant> {
        self.ends()
            .map(|ends| ends.min(self.claimed_at + self.limit))
    }

    /// Whether a publish round may start now: at least a quarter of the lease is left, by the
    /// renewed lease and by the configured one.
    pub(crate) fn round_may_start(&self) -> bool {
        let now = Instant::now();
        let hard = self.claimed_at + self.limit - self.limit / 4;
        self.ends()
            .is_some_and(|ends| now < hard && now + self.step / 4 < ends)
    }

    /// Completes when a publish must be abandoned: an eighth of the lease before its end, by
    /// the configured lease or by the renewed one when no renewal came in time. The lease is
    /// then lost for good.
    pub(crate) async fn publish_deadline(&self) {
        let hard = self.claimed_at + self.limit - self.limit / 8;
        loop {
            let seen = self.ends.load(Ordering::Acquire);
            if seen == 0 {
                return;
            }
            let soft = self.claimed_at + Duration::from_nanos(seen) - self.step / 8;
            tokio::time::sleep_until(soft.min(hard)).await;
            if Instant::now() >= hard {
                self.ends.store(0, Ordering::Release);
                return;
            }
            // Unchanged since we looked: no renewal came; a renewal that lands later is ignored.
            if self
                .ends
                .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Stops the heartbeat (before settling: a renewal racing the settlement would find the
    /// claim ended and take it for lost). The lease then ends where it ends now.
    pub(crate) fn stop_renewing(&self) {
        if let Some(stop) = &self.heartbeat {
            stop.cancel();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_renewing();
    }
}

/// The renewing side of a [`Lease`].
struct Heartbeat {
    claimed_at: Instant,
    limit: Duration,
    step: Duration,
    ends: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Renews until `stop` (the batch is settling) or until the lease is lost. Stopping
    /// interrupts only the wait between renewals: a renewal in flight is let finish, so no
    /// statement is cut off mid-way on its connection.
    async fn run<S: Store>(
        &self,
        store: &S,
        token: LeaseToken,
        seqs: &[i64],
        stop: &CancellationToken,
    ) {
        let limit_at = self.claimed_at + self.limit;
        let mut sent = self.claimed_at;
        let mut pause = self.step / 4;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(sent + pause) => {}
                () = stop.cancelled() => return,
            }
            let now = Instant::now();
            let seen = self.ends.load(Ordering::Acquire);
            if seen == 0 || now >= limit_at {
                return;
            }
            // Never past the configured lease: that is how long the batch may hold its rows.
            let lease = self.step.min(limit_at - now);
            let renewed = store.renew(token, seqs, lease).await;
            if stop.is_cancelled() {
                // The batch settled meanwhile; a refusal now only means the claim has ended.
                return;
            }
            match renewed {
                Ok(true) => {
                    let renewed = nanos(now - self.claimed_at + lease);
                    // Only while the relay's count still holds: once the publishing side gave
                    // the lease up, it stays given up.
                    let in_time = Instant::now() + self.step / 8
                        < self.claimed_at + Duration::from_nanos(seen);
                    if !in_time
                        || self
                            .ends
                            .compare_exchange(seen, renewed, Ordering::AcqRel, Ordering::Acquire)
                            .is_err()
                    {
                        return;
                    }
                    metrics::counter!("outbox_lease_renewals_total").increment(1);
                    sent = now;
                    pause = self.step / 4;
                }
                Ok(false) => {
                    tracing::warn!(
                        "a claim's lease could not be renewed: it ran out, or another relay holds its rows"
                    );
                    self.ends.store(0, Ordering::Release);
                    return;
                }
                Err(err) => {
                    // Try again soon, while the lease still holds.
                    tracing::warn!(error = %err, "renewing a claim's lease failed; trying again");
                    sent = Instant::now();
                    pause = self.step / 16;
                }
            }
        }
    }
}
