//! `AnyStore`: any adapter's [`SqlStore`] behind one type, for code that picks the database
//! (or the adapter) at run time, such as the `outbox` CLI.
//!
//! [`Store`] and [`Inspect`] return `impl Future`, so they cannot be trait objects; `AnyStore`
//! boxes each call's future instead: one allocation per call, beside a database round trip.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::{Dialect, SqlPool, SqlStore, Statements};
use crate::error::Result;
use crate::store::{
    Claim, EventTypeStats, Failure, Filter, Inspect, LeaseToken, LiveClaim, OutboxStats, Purge,
    Replay, Replayed, Retry, Settled, Settlement, Store, StoredMessage,
};

/// The calls of [`SqlStore`], each returning a boxed future. (A call that borrows more than
/// `self` is wrapped in an `async` block where `AnyStore` implements the traits, so that its
/// future names each borrow.)
trait ErasedStore: Send + Sync + 'static {
    fn statements(&self) -> &Arc<Statements>;
    fn keeps_published(&self) -> bool;
    fn migrate(&self) -> BoxFuture<'_, Result<()>>;
    fn uninstall(&self) -> BoxFuture<'_, Result<()>>;
    fn purge_inbox(&self, older_than: Duration) -> BoxFuture<'_, Result<u64>>;
    fn claim(&self, limit: usize, lease: Duration) -> BoxFuture<'_, Result<Claim>>;
    fn ack<'a>(&'a self, token: LeaseToken, seqs: &'a [i64]) -> BoxFuture<'a, Result<u64>>;
    fn fail<'a>(&'a self, token: LeaseToken, f: &'a [Failure]) -> BoxFuture<'a, Result<u64>>;
    fn release<'a>(&'a self, token: LeaseToken, seqs: &'a [i64]) -> BoxFuture<'a, Result<u64>>;
    fn renew<'a>(
        &'a self,
        token: LeaseToken,
        seqs: &'a [i64],
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool>>;
    fn settle<'a>(
        &'a self,
        token: LeaseToken,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<Settled>>;
    fn stats(&self) -> BoxFuture<'_, Result<OutboxStats>>;
    fn event_types(&self) -> BoxFuture<'_, Result<Vec<EventTypeStats>>>;
    fn claims(&self) -> BoxFuture<'_, Result<Vec<LiveClaim>>>;
    fn count<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64>>;
    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<StoredMessage>>>;
    fn list<'a>(
        &'a self,
        filter: &'a Filter,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>>>;
    fn retry_dead(&self, id: Option<Uuid>) -> BoxFuture<'_, Result<u64>>;
    fn retry<'a>(&'a self, target: &'a Retry, limit: usize) -> BoxFuture<'a, Result<u64>>;
    fn purge<'a>(&'a self, target: &'a Purge, limit: usize) -> BoxFuture<'a, Result<u64>>;
    fn purge_published(&self, older_than: Duration) -> BoxFuture<'_, Result<u64>>;
    fn replay<'a>(
        &'a self,
        target: &'a Replay,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replayed>>;
}

impl<P: SqlPool> ErasedStore for SqlStore<P> {
    fn statements(&self) -> &Arc<Statements> {
        SqlStore::statements(self)
    }
    fn keeps_published(&self) -> bool {
        SqlStore::keeps_published(self)
    }
    fn migrate(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(SqlStore::migrate(self))
    }
    fn uninstall(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(SqlStore::uninstall(self))
    }
    fn purge_inbox(&self, older_than: Duration) -> BoxFuture<'_, Result<u64>> {
        Box::pin(SqlStore::purge_inbox(self, older_than))
    }
    fn claim(&self, limit: usize, lease: Duration) -> BoxFuture<'_, Result<Claim>> {
        Box::pin(Store::claim(self, limit, lease))
    }
    fn ack<'a>(&'a self, token: LeaseToken, seqs: &'a [i64]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Store::ack(self, token, seqs))
    }
    fn fail<'a>(&'a self, token: LeaseToken, f: &'a [Failure]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Store::fail(self, token, f))
    }
    fn release<'a>(&'a self, token: LeaseToken, seqs: &'a [i64]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Store::release(self, token, seqs))
    }
    fn renew<'a>(
        &'a self,
        token: LeaseToken,
        seqs: &'a [i64],
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Store::renew(self, token, seqs, lease))
    }
    fn settle<'a>(
        &'a self,
        token: LeaseToken,
        settlement: &'a Settlement,
    ) -> BoxFuture<'a, Result<Settled>> {
        Box::pin(Store::settle(self, token, settlement))
    }
    fn stats(&self) -> BoxFuture<'_, Result<OutboxStats>> {
        Box::pin(Inspect::stats(self))
    }
    fn event_types(&self) -> BoxFuture<'_, Result<Vec<EventTypeStats>>> {
        Box::pin(Inspect::event_types(self))
    }
    fn claims(&self) -> BoxFuture<'_, Result<Vec<LiveClaim>>> {
        Box::pin(Inspect::claims(self))
    }
    fn count<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Inspect::count(self, filter))
    }
    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<StoredMessage>>> {
        Box::pin(Inspect::get(self, id))
    }
    fn list<'a>(
        &'a self,
        filter: &'a Filter,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>>> {
        Box::pin(Inspect::list(self, filter, after, limit))
    }
    fn retry_dead(&self, id: Option<Uuid>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Inspect::retry_dead(self, id))
    }
    fn retry<'a>(&'a self, target: &'a Retry, limit: usize) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Inspect::retry(self, target, limit))
    }
    fn purge<'a>(&'a self, target: &'a Purge, limit: usize) -> BoxFuture<'a, Result<u64>> {
        Box::pin(Inspect::purge(self, target, limit))
    }
    fn purge_published(&self, older_than: Duration) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Inspect::purge_published(self, older_than))
    }
    fn replay<'a>(
        &'a self,
        target: &'a Replay,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replayed>> {
        Box::pin(Inspect::replay(self, target, after, limit))
    }
}

/// Any adapter's [`SqlStore`] on any database, behind one type: a [`Store`] and [`Inspect`]
/// (so `Relay<AnyStore, _>` runs on whichever store was opened), plus the table's
/// [`migrate`](AnyStore::migrate) and friends. Cheap to clone.
///
/// ```
/// # use outbox_core as outbox_sqlx;
/// use outbox_sqlx::sql::AnyStore;
///
/// fn describe(store: &AnyStore) -> String {
///     format!("{} on {}", store.statements().table, store.dialect())
/// }
/// ```
#[derive(Clone)]
pub struct AnyStore {
    inner: Arc<dyn ErasedStore>,
}

impl fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyStore")
            .field("dialect", &self.dialect())
            .field("table", &self.statements().table)
            .finish_non_exhaustive()
    }
}

impl<P: SqlPool> From<SqlStore<P>> for AnyStore {
    fn from(store: SqlStore<P>) -> Self {
        Self::new(store)
    }
}

impl AnyStore {
    /// `store` behind the one type.
    pub fn new<P: SqlPool>(store: SqlStore<P>) -> Self {
        Self {
            inner: Arc::new(store),
        }
    }

    /// The database.
    pub fn dialect(&self) -> Dialect {
        self.inner.statements().dialect
    }

    /// The statements the store sends (and its table).
    pub fn statements(&self) -> &Arc<Statements> {
        self.inner.statements()
    }

    /// Whether published rows are kept ([`SqlStore::keep_published`]).
    pub fn keeps_published(&self) -> bool {
        self.inner.keeps_published()
    }

    /// [`SqlStore::migrate`].
    ///
    /// # Errors
    ///
    /// As [`SqlStore::migrate`].
    pub async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }

    /// [`SqlStore::uninstall`].
    ///
    /// # Errors
    ///
    /// As [`SqlStore::uninstall`].
    pub async fn uninstall(&self) -> Result<()> {
        self.inner.uninstall().await
    }

    /// [`SqlStore::purge_inbox`].
    ///
    /// # Errors
    ///
    /// As [`SqlStore::purge_inbox`].
    pub async fn purge_inbox(&self, older_than: Duration) -> Result<u64> {
        self.inner.purge_inbox(older_than).await
    }
}

impl Store for AnyStore {
    fn claim(&self, limit: usize, lease: Duration) -> impl Future<Output = Result<Claim>> + Send {
        self.inner.claim(limit, lease)
    }
    async fn ack(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.inner.ack(token, seqs).await
    }
    async fn fail(&self, token: LeaseToken, failures: &[Failure]) -> Result<u64> {
        self.inner.fail(token, failures).await
    }
    async fn release(&self, token: LeaseToken, seqs: &[i64]) -> Result<u64> {
        self.inner.release(token, seqs).await
    }
    async fn renew(&self, token: LeaseToken, seqs: &[i64], lease: Duration) -> Result<bool> {
        self.inner.renew(token, seqs, lease).await
    }
    async fn settle(&self, token: LeaseToken, settlement: &Settlement) -> Result<Settled> {
        self.inner.settle(token, settlement).await
    }
}

impl Inspect for AnyStore {
    fn stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send {
        self.inner.stats()
    }
    fn event_types(&self) -> impl Future<Output = Result<Vec<EventTypeStats>>> + Send {
        self.inner.event_types()
    }
    fn claims(&self) -> impl Future<Output = Result<Vec<LiveClaim>>> + Send {
        self.inner.claims()
    }
    async fn count(&self, filter: &Filter) -> Result<u64> {
        self.inner.count(filter).await
    }
    fn get(&self, id: Uuid) -> impl Future<Output = Result<Option<StoredMessage>>> + Send {
        self.inner.get(id)
    }
    async fn list(&self, filter: &Filter, after: i64, limit: usize) -> Result<Vec<StoredMessage>> {
        self.inner.list(filter, after, limit).await
    }
    fn retry_dead(&self, id: Option<Uuid>) -> impl Future<Output = Result<u64>> + Send {
        self.inner.retry_dead(id)
    }
    async fn retry(&self, target: &Retry, limit: usize) -> Result<u64> {
        self.inner.retry(target, limit).await
    }
    async fn purge(&self, target: &Purge, limit: usize) -> Result<u64> {
        self.inner.purge(target, limit).await
    }
    fn purge_published(&self, older_than: Duration) -> impl Future<Output = Result<u64>> + Send {
        self.inner.purge_published(older_than)
    }
    async fn replay(&self, target: &Replay, after: i64, limit: usize) -> Result<Replayed> {
        self.inner.replay(target, after, limit).await
    }
}
