//! `OutboxLayer` and the service it wraps handlers in.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use outbox_core::WakeHandle;
use outbox_core::sql::{OutboxTable, TransactionPool, UnitOfWork};
use tower_layer::Layer;
use tower_service::Service;

use crate::future::ResponseFuture;

/// Decides from a response's status whether its request's transaction commits.
type CommitWhen = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// What every request's unit of work is made from.
pub(crate) struct Config<P: TransactionPool> {
    pool: P,
    table: OutboxTable,
    wake: Option<WakeHandle>,
    pub(crate) commit_when: CommitWhen,
}

/// A tower layer that gives every request one database transaction for its business rows and
/// its outbox messages, committed when the response is a success and rolled back otherwise.
///
/// The transaction is begun when a handler first extracts [`Tx`](crate::Tx), so a request that
/// never asks takes no connection. When the inner service has produced its response, the layer
/// writes the request's messages in one statement, commits, wakes the relay, and only then
/// sends the response; a client that disconnects after that point does not interrupt it.
///
/// * **Commit rule**: 2xx and 3xx commit, anything else rolls back; change it with
///   [`commit_when`](Self::commit_when), or per response with [`TxDecision`](crate::TxDecision).
/// * **A failed flush or commit** (a lost connection, a missing outbox table) turns the response
///   into `500 Internal Server Error`; nothing of the request is saved and nothing published.
/// * **A [`Tx`](crate::Tx) still alive when the response is ready** (moved into a spawned task
///   or a streaming body) also turns it into a 500, and the transaction rolls back when that
///   handle is dropped: the layer never commits without the handle's writes.
/// * **A panic** in the handler rolls back: the request's transaction is dropped while
///   unwinding and rolled back on a task of its own. Put tower-http's `CatchPanicLayer` outside
///   this layer (a later `.layer(..)` call) or inside it: either way the client gets a 500 and
///   the transaction rolls back.
pub struct OutboxLayer<P: TransactionPool> {
    config: Arc<Config<P>>,
}

impl<P: TransactionPool> OutboxLayer<P> {
    /// Request transactions on `pool`, writing messages to the default table, `outbox`.
    pub fn new(pool: P) -> Self {
        let table = OutboxTable::new(pool.dialect());
        Self {
            config: Arc::new(Config {
                pool,
                table,
                wake: None,
                commit_when: Arc::new(|status| status.is_success() || status.is_redirection()),
            }),
        }
    }

    /// Writes messages to `table` instead (another name, payload limit or locking setting):
    /// pass your adapter's `Outbox::outbox_table()`.
    #[must_use]
    pub fn table(self, table: OutboxTable) -> Self {
        self.with(|config| config.table = table)
    }

    /// Wakes the in-process relay after every commit that wrote messages, so that they are
    /// published at once instead of at the relay's next poll: pass `relay.wake_handle()`.
    #[must_use]
    pub fn wake(self, wake: WakeHandle) -> Self {
        self.with(|config| config.wake = Some(wake))
    }

    /// Commits the transactions of responses whose status satisfies `predicate`, instead of
    /// those with a 2xx or 3xx status.
    #[must_use]
    pub fn commit_when(
        self,
        predicate: impl Fn(StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.with(|config| config.commit_when = Arc::new(predicate))
    }

    fn with(self, change: impl FnOnce(&mut Config<P>)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        change(&mut config);
        Self {
            config: Arc::new(config),
        }
    }
}

impl<P: TransactionPool> Clone for Config<P> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            wake: self.wake.clone(),
            commit_when: Arc::clone(&self.commit_when),
        }
    }
}

impl<P: TransactionPool> Clone for OutboxLayer<P> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<P: TransactionPool> fmt::Debug for OutboxLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxLayer")
            .field("dialect", &self.config.pool.dialect())
            .field("table", self.config.table.table())
            .field("wake", &self.config.wake.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, P: TransactionPool> Layer<S> for OutboxLayer<P> {
    type Service = OutboxService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        OutboxService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service [`OutboxLayer`] wraps around the inner one.
pub struct OutboxService<S, P: TransactionPool> {
    inner: S,
    config: Arc<Config<P>>,
}

impl<S: Clone, P: TransactionPool> Clone for OutboxService<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, P: TransactionPool> fmt::Debug for OutboxService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for OutboxService<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: TransactionPool,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<outbox_core::BoxError>,
{
    type Response = Response<axum_core::body::Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let unit = UnitOfWork::new(
            config.pool.clone(),
            config.table.clone(),
            config.wake.clone(),
        );
        request.extensions_mut().insert(unit.clone());
        ResponseFuture::new(self.inner.call(request), unit, Arc::clone(&self.config))
    }
}
