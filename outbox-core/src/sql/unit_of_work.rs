//! `UnitOfWork`: one lazily begun transaction that carries its messages to commit, as a web
//! request uses it. The web layers (`outbox-axum`, `outbox-actix`) are glue over this type, and
//! each database adapter implements [`TransactionPool`] for its pool.
//!
//! The life of one unit:
//!
//! 1. [`UnitOfWork::new`] costs no connection. The first [`lease`](UnitOfWork::lease) begins
//!    the transaction (on a task of its own, so that dropping the lease's future cannot cut
//!    a driver's statement in half); later leases get the same one back. One lease is out at
//!    a time.
//! 2. Through a [`Lease`] the caller writes its business rows on the ORM's own connection type
//!    and [`enqueue`](Lease::enqueue)s messages, which are checked at once and buffered.
//! 3. [`finish`](UnitOfWork::finish) with `commit = true` writes every buffered message in one
//!    statement, commits, and then wakes the relay; with `commit = false` it rolls back. Both
//!    run on a task of their own, so a caller that is dropped half-way (a client that
//!    disconnects) cannot cut them in half.
//! 4. A lease still alive at `finish` (moved into a spawned task or a streaming body) makes
//!    `finish` fail with [`Error::TransactionStillHeld`] instead of committing without it; the
//!    transaction rolls back when that lease is dropped. A unit dropped without `finish` (a
//!    panic) rolls back too.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use super::{DbError, Dialect, Executor, OutboxTable};
use crate::error::{Error, Result};
use crate::message::{Message, check_payload_size};
use crate::relay::WakeHandle;

/// A pool whose transactions are begun, used and ended step by step: what a database adapter
/// implements so that the web layers can give each request its own transaction.
///
/// `outbox_sqlx::SqlxPool<DB>`, `outbox_seaorm::SeaOrmPool` and
/// `outbox_diesel::asynchronous::AsyncDieselPool<C>` implement it.
pub trait TransactionPool: Clone + Send + Sync + 'static {
    /// A begun transaction, as the ORM represents it. Dropping one that was neither committed
    /// nor rolled back must not leave it open on a pooled connection.
    type Transaction: Send + 'static;
    /// What the caller writes its own rows through: the transaction's connection, as the ORM
    /// hands it out (`sqlx::PgConnection`, `sea_orm::DatabaseTransaction`, ...).
    type Connection: ?Sized + Send;

    /// The database the pool's connections are to.
    fn dialect(&self) -> Dialect;

    /// Takes a connection and begins a transaction on it, at the database's default isolation.
    fn begin(&self) -> impl Future<Output = Result<Self::Transaction, DbError>> + Send;

    /// The transaction's connection, for the caller's own statements.
    fn connection(tx: &Self::Transaction) -> &Self::Connection;

    /// The transaction's connection, mutably.
    fn connection_mut(tx: &mut Self::Transaction) -> &mut Self::Connection;

    /// An executor over the transaction, for the outbox's statements.
    fn executor(tx: &mut Self::Transaction) -> impl Executor + '_;

    /// Commits the transaction.
    fn commit(tx: Self::Transaction) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Rolls the transaction back.
    fn rollback(tx: Self::Transaction) -> impl Future<Output = Result<(), DbError>> + Send;
}

/// How a unit of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finished {
    /// No transaction was begun: nothing to commit or roll back.
    Untouched,
    /// The transaction committed with this many messages.
    Committed {
        /// Messages written just before the commit.
        messages: usize,
    },
    /// The transaction was rolled back; its buffered messages were dropped.
    RolledBack,
}

/// Where the unit's transaction is.
enum Slot<T> {
    /// Not begun yet.
    Idle,
    /// Begun, and no lease holds it.
    Open(T),
    /// A lease holds it (or is beginning it).
    Leased,
    /// Committed, rolled back, or abandoned by `finish` while leased.
    Ended,
}

struct State<T> {
    slot: Slot<T>,
    messages: Vec<Message>,
}

struct Shared<P: TransactionPool> {
    pool: Option<P>,
    table: OutboxTable,
    wake: Option<WakeHandle>,
    state: Mutex<State<P::Transaction>>,
}

impl<P: TransactionPool> Shared<P> {
    fn state(&self) -> MutexGuard<'_, State<P::Transaction>> {
        // The lock is never held across an await or user code, so a poisoned lock only means
        // a panic elsewhere while a slot was being swapped: the state itself is whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<P: TransactionPool> Drop for Shared<P> {
    fn drop(&mut self) {
        // Dropped without `finish` (a panic, a dropped request): roll back explicitly.
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Slot::Open(tx) = mem::replace(&mut state.slot, Slot::Ended) {
            roll_back_in_background::<P>(tx);
        }
    }
}

/// Rolls `tx` back on a task of its own when a Tokio runtime is at hand; otherwise drops it,
/// which the adapter's transaction type turns into a rollback.
fn roll_back_in_background<P: TransactionPool>(tx: P::Transaction) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(err) = P::rollback(tx).await {
                tracing::warn!(error = %err, "could not roll back an abandoned unit of work");
            }
        });
    }
}

/// One transaction, begun on first use, that carries its messages to its commit. Cheap to
/// clone: clones share the transaction. See the [module docs](self).
pub struct UnitOfWork<P: TransactionPool> {
    shared: Arc<Shared<P>>,
}

impl<P: TransactionPool> Clone for UnitOfWork<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: TransactionPool> fmt::Debug for UnitOfWork<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state();
        let slot = match state.slot {
            Slot::Idle => "idle",
            Slot::Open(_) => "open",
            Slot::Leased => "leased",
            Slot::Ended => "ended",
        };
        f.debug_struct("UnitOfWork")
            .field("table", self.shared.table.table())
            .field("transaction", &slot)
            .field("messages", &state.messages.len())
            .finish()
    }
}

impl<P: TransactionPool> UnitOfWork<P> {
    /// A unit that begins its transaction on `pool` at its first lease and writes its messages
    /// to `table`; after a commit that wrote messages it wakes `wake`'s relay.
    pub fn new(pool: P, table: OutboxTable, wake: Option<WakeHandle>) -> Self {
        Self::with_slot(Some(pool), table, wake, Slot::Idle)
    }

    /// A unit around a transaction the caller has already begun, for testing code that takes
    /// a lease (a web handler) without a pool or a web server.
    pub fn from_transaction(tx: P::Transaction, table: OutboxTable) -> Self {
        Self::with_slot(None, table, None, Slot::Open(tx))
    }

    fn with_slot(
        pool: Option<P>,
        table: OutboxTable,
        wake: Option<WakeHandle>,
        slot: Slot<P::Transaction>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                table,
                wake,
                state: Mutex::new(State {
                    slot,
                    messages: Vec::new(),
                }),
            }),
        }
    }

    /// The outbox table the unit's messages go to.
    pub fn table(&self) -> &OutboxTable {
        &self.shared.table
    }

    /// Whether the transaction has been begun (and not yet ended).
    pub fn is_begun(&self) -> bool {
        matches!(self.shared.state().slot, Slot::Open(_) | Slot::Leased)
    }

    /// The messages enqueued so far and not yet written, oldest first.
    pub fn pending_messages(&self) -> Vec<Message> {
        self.shared.state().messages.clone()
    }

    /// The transaction, begun now if this is the first lease.
    ///
    /// # Errors
    ///
    /// [`Error::TransactionInUse`] while another lease is alive; [`Error::TransactionEnded`]
    /// after [`finish`](Self::finish); [`Error::Database`] when the transaction cannot be
    /// begun (no connection).
    pub async fn lease(&self) -> Result<Lease<P>> {
        let taken = {
            let mut state = self.shared.state();
            match mem::replace(&mut state.slot, Slot::Leased) {
                Slot::Open(tx) => Some(tx),
                Slot::Idle => None,
                other @ (Slot::Leased | Slot::Ended) => {
                    let err = match other {
                        Slot::Leased => Error::TransactionInUse,
                        _ => Error::TransactionEnded,
                    };
                    state.slot = other;
                    return Err(err);
                }
            }
        };
        let tx = match taken {
            Some(tx) => tx,
            None => {
                // Until `begin` returns, the slot says leased; if it fails or this future is
                // dropped, the slot goes back to idle so that a later lease can try again.
                let reserved = Reservation(&self.shared);
                let pool = self.shared.pool.clone().ok_or(Error::TransactionEnded)?;
                // Begun on a task of its own, so that a lease dropped half-way (an extractor
                // beside it failed) never drops a driver's future mid-statement; a transaction
                // begun for a lease no longer waiting is dropped, which rolls it back.
                let begun = tokio::spawn(async move { pool.begin().await })
                    .await
                    .map_err(|err| {
                        DbError::other(format!("the task beginning the transaction failed: {err}"))
                    })?;
                let tx = begun?;
                mem::forget(reserved);
                tx
            }
        };
        Ok(Lease {
            tx: Some(tx),
            unit: self.clone(),
        })
    }

    /// Ends the unit: with `commit`, writes the buffered messages in one statement, commits,
    /// and wakes the relay; without, rolls back. Both run on a Tokio task of their own, so
    /// dropping the returned future does not stop them. Call it from within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::TransactionStillHeld`] when a lease is still alive (the transaction rolls back
    /// when the lease is dropped); [`Error::TransactionEnded`] when the unit already ended;
    /// the enqueue's errors ([`Error::MissingTable`], ...) or [`Error::Database`] when writing
    /// the messages or committing fails, after which the transaction is rolled back and no
    /// message is published.
    pub fn finish(self, commit: bool) -> Finishing {
        let (slot, messages) = {
            let mut state = self.shared.state();
            let slot = mem::replace(&mut state.slot, Slot::Ended);
            (slot, mem::take(&mut state.messages))
        };
        let tx = match slot {
            Slot::Open(tx) => tx,
            Slot::Idle => return Finishing::ready(Ok(Finished::Untouched)),
            Slot::Leased => return Finishing::ready(Err(Error::TransactionStillHeld)),
            Slot::Ended => return Finishing::ready(Err(Error::TransactionEnded)),
        };
        let shared = Arc::clone(&self.shared);
        let work = async move {
            if !commit {
                P::rollback(tx).await?;
                return Ok(Finished::RolledBack);
            }
            let mut tx = tx;
            if !messages.is_empty() {
                let written = shared
                    .table
                    .enqueue(&mut P::executor(&mut tx), &messages)
                    .await;
                if let Err(err) = written {
                    // The business rows must not commit without their messages.
                    if let Err(rollback) = P::rollback(tx).await {
                        tracing::warn!(error = %rollback, "could not roll back after a failed flush");
                    }
                    return Err(err);
                }
            }
            P::commit(tx).await?;
            if !messages.is_empty()
                && let Some(wake) = &shared.wake
            {
                wake.wake();
            }
            Ok(Finished::Committed {
                messages: messages.len(),
            })
        };
        Finishing(FinishingInner::Spawned(tokio::spawn(work)))
    }

    fn put_back(&self, tx: P::Transaction) {
        let mut state = self.shared.state();
        match state.slot {
            Slot::Leased => state.slot = Slot::Open(tx),
            // `finish` gave up on the transaction while this lease held it.
            _ => {
                drop(state);
                roll_back_in_background::<P>(tx);
            }
        }
    }
}

/// Puts a reserved slot back to idle unless forgotten.
struct Reservation<'a, P: TransactionPool>(&'a Shared<P>);

impl<P: TransactionPool> Drop for Reservation<'_, P> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if matches!(state.slot, Slot::Leased) {
            state.slot = Slot::Idle;
        }
    }
}

/// What [`UnitOfWork::finish`] returns: a future of how the unit ended. The work it waits for
/// runs on its own task, so dropping this future does not stop it.
#[must_use = "the commit runs in the background; await it to learn whether it succeeded"]
pub struct Finishing(FinishingInner);

enum FinishingInner {
    Ready(Option<Result<Finished>>),
    Spawned(tokio::task::JoinHandle<Result<Finished>>),
}

impl Finishing {
    fn ready(outcome: Result<Finished>) -> Self {
        Self(FinishingInner::Ready(Some(outcome)))
    }
}

impl fmt::Debug for Finishing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finishing").finish_non_exhaustive()
    }
}

impl Future for Finishing {
    type Output = Result<Finished>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            FinishingInner::Ready(outcome) => Poll::Ready(
                outcome
                    .take()
                    .expect("`Finishing` polled after it completed"),
            ),
            FinishingInner::Spawned(task) => Pin::new(task).poll(cx).map(|joined| {
                joined.unwrap_or_else(|err| {
                    Err(Error::database(DbError::other(format!(
                        "the commit task did not complete: {err}"
                    ))))
                })
            }),
        }
    }
}

const HELD: &str = "a lease holds its transaction until dropped";

/// The unit's transaction, held by one user at a time: dereferences to the ORM's connection
/// for the caller's own statements, and [`enqueue`](Self::enqueue)s messages for the commit.
/// Dropping it hands the transaction back to the unit.
pub struct Lease<P: TransactionPool> {
    tx: Option<P::Transaction>,
    unit: UnitOfWork<P>,
}

impl<P: TransactionPool> Lease<P> {
    /// A lease on a new unit around a transaction the caller has already begun: what a web
    /// handler's transaction extractor is built from in the handler's unit tests. The unit
    /// ([`unit`](Self::unit)) shows the buffered messages and finishes as any other.
    pub fn from_transaction(tx: P::Transaction, table: OutboxTable) -> Self {
        Self {
            tx: Some(tx),
            unit: UnitOfWork::with_slot(None, table, None, Slot::Leased),
        }
    }

    /// Buffers `message` to be written just before the unit commits (all of the unit's
    /// messages in one statement), in order. Its size is checked now.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`] when the payload exceeds the table's limit; nothing is
    /// buffered then.
    pub fn enqueue(&mut self, message: Message) -> Result<()> {
        check_payload_size(
            message.payload().len(),
            self.unit.shared.table.max_payload(),
        )?;
        self.unit
            .shared
            .state()
            .messages
            .push(crate::trace::stamp(message));
        Ok(())
    }

    /// Buffers several messages, in order; none of them when one is rejected.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue).
    pub fn enqueue_all(&mut self, messages: impl IntoIterator<Item = Message>) -> Result<()> {
        let messages: Vec<Message> = messages.into_iter().collect();
        let limit = self.unit.shared.table.max_payload();
        for message in &messages {
            check_payload_size(message.payload().len(), limit)?;
        }
        self.unit
            .shared
            .state()
            .messages
            .extend(messages.into_iter().map(crate::trace::stamp));
        Ok(())
    }

    /// The unit this lease is of.
    pub fn unit(&self) -> &UnitOfWork<P> {
        &self.unit
    }

    /// The transaction itself, as the ORM represents it.
    pub fn transaction(&mut self) -> &mut P::Transaction {
        self.tx.as_mut().expect(HELD)
    }
}

impl<P: TransactionPool> fmt::Debug for Lease<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("unit", &self.unit).finish()
    }
}

impl<P: TransactionPool> std::ops::Deref for Lease<P> {
    type Target = P::Connection;

    fn deref(&self) -> &Self::Target {
        P::connection(self.tx.as_ref().expect(HELD))
    }
}

impl<P: TransactionPool> std::ops::DerefMut for Lease<P> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        P::connection_mut(self.transaction())
    }
}

impl<P: TransactionPool> Drop for Lease<P> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.unit.put_back(tx);
        }
    }
}
