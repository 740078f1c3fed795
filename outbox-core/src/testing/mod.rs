//! The conformance suite: one set of tests that every [`Store`] runs against every database it
//! supports.
//!
//! A store crate implements [`Backend`] for each database and expands
//! [`conformance_suite!`](crate::conformance_suite)
//! in a test file:
//!
//! ```text
//! outbox_core::conformance_suite!(my_crate_tests::postgres_backend());
//! ```
//!
//! Each test gets a fresh backend (a new, empty outbox table), drives real transactions
//! through the adapter's own enqueue path, runs real relays, and checks what was published.
//! Every wait is bounded; a test that runs out of time fails with what it was waiting for.

mod adapter;
mod backends;
mod cases;
mod inbox;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use self::adapter::*;
pub use self::backends::{MemoryBackend, SlowPublisher};
pub use self::cases::*;
pub use self::inbox::*;
use crate::error::Result;
use crate::message::Message;
use crate::store::{Inspect, Store};

/// A database (or memory) under test, with a fresh outbox table.
pub trait Backend: Send + Sync + 'static {
    /// The store under test.
    type Store: Store + Inspect + Clone;
    /// An open transaction.
    type Tx: Send + 'static;

    /// A name for failure messages, such as `postgres`.
    fn name(&self) -> String;

    /// A store on this backend's table. Each call may return a new handle; all share the table.
    fn store(&self) -> Self::Store;

    /// Begins a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx>> + Send;

    /// Enqueues messages in the transaction through the adapter's public enqueue path.
    fn enqueue(
        &self,
        tx: &mut Self::Tx,
        messages: Vec<Message>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Commits.
    fn commit(&self, tx: Self::Tx) -> impl Future<Output = Result<()>> + Send;

    /// Rolls back.
    fn rollback(&self, tx: Self::Tx) -> impl Future<Output = Result<()>> + Send;

    /// How committed rows become visible relative to their ids.
    fn visibility(&self) -> Visibility;
}

/// How a backend's rows become visible relative to their sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Ids follow commit order: one writer at a time (SQLite) or ids drawn at commit (memory).
    InOrder,
    /// Transactions enqueueing the same key are serialized, so ids follow commit order within
    /// a key; different keys may become visible out of id order (PostgreSQL, MySQL, MariaDB).
    KeySerialized,
    /// Any transaction may become visible out of id order, even within a key (a store that
    /// cannot lock keys at enqueue): the claim must then hold a key back while any of its
    /// rows is in flight.
    Unordered,
}

/// Commits `messages` in one transaction of their own.
///
/// # Errors
///
/// Whatever the backend reports.
pub async fn commit_messages<B: Backend>(backend: &B, messages: Vec<Message>) -> Result<()> {
    let mut tx = backend.begin().await?;
    backend.enqueue(&mut tx, messages).await?;
    backend.commit(tx).await
}

/// Polls `check` until it returns `true`, panicking with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh backend built by
/// `$make` (an expression producing a future of a [`Backend`]).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            rolled_back_never_published,
            expired_claims_are_reclaimed,
            four_relays_eight_producers_publish_everything_once,
            per_key_order_holds_with_random_failures,
            poison_message_blocks_only_its_key,
            backoff_grows_per_policy,
            fencing_refuses_stale_settlements,
            fencing_refuses_a_stale_settle,
            sequence_visibility_skips_nothing,
            graceful_shutdown_loses_nothing,
            busy_head_blocks_its_key,
            hot_key_claims_many_rows_in_order,
            delayed_delivery_waits,
            dead_messages_can_be_retried,
            stalled_relay_stops_publishing_before_its_lease_ends,
            list_pages_in_sequence_order_by_status,
            operators_filter_retry_and_purge,
            leases_are_renewed_only_while_they_hold,
            a_living_relay_keeps_its_claim_past_the_heartbeat_lease,
            a_dead_relays_keys_flow_again_within_the_heartbeat_lease,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = ::std::sync::Arc::new($make.await);
                $crate::testing::$case(backend).await;
            }
        )*
    };
}

pub(crate) type Shared<B> = Arc<B>;
