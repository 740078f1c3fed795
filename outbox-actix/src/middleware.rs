//! `OutboxMiddleware` and the service it wraps handlers in.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use outbox_core::WakeHandle;
use outbox_core::sql::{OutboxTable, TransactionPool, UnitOfWork};

use crate::error::{TxDecision, plain};

/// Decides from a response's status whether its request's transaction commits.
type CommitWhen = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

struct Config<P: TransactionPool> {
    pool: P,
    table: OutboxTable,
    wake: Option<WakeHandle>,
    commit_when: CommitWhen,
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

/// An actix-web middleware that gives every request one database transaction for its
/// business rows and its outbox messages, committed when the response is a success and
/// rolled back otherwise.
///
/// The transaction is begun when a handler first extracts [`Tx`](crate::Tx), so a request that
/// never asks takes no connection. When the handler has produced its response, the middleware
/// writes the request's messages in one statement, commits, wakes the relay, and only then
/// sends the response; the commit runs on a Tokio task of its own, so a client that
/// disconnects after that point does not interrupt it.
///
/// * **Commit rule**: 2xx and 3xx commit, anything else rolls back; change it with
///   [`commit_when`](Self::commit_when), or per response with [`TxDecision`](crate::TxDecision).
/// * **A failed flush or commit**, or a [`Tx`](crate::Tx) still alive when the response is
///   ready (moved into a spawned task or a streaming body), turns the response into
///   `500 Internal Server Error`; nothing of the request is saved and nothing published.
/// * **A panic** in the handler rolls back. actix-web does not catch panics: the worker drops
///   the connection without a response, and the request's transaction, dropped while the
///   panic unwinds, is rolled back on a task of its own.
///
/// actix-web runs each worker on a single thread, so this middleware and its futures are not
/// `Send`; the pool and the commit task are, and run on the worker's Tokio runtime.
pub struct OutboxMiddleware<P: TransactionPool> {
    config: Arc<Config<P>>,
}

impl<P: TransactionPool> OutboxMiddleware<P> {
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

    /// Wakes the in-process relay after every commit that wrote messages: pass
    /// `relay.wake_handle()`.
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

impl<P: TransactionPool> Clone for OutboxMiddleware<P> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<P: TransactionPool> fmt::Debug for OutboxMiddleware<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxMiddleware")
            .field("dialect", &self.config.pool.dialect())
            .field("table", self.config.table.table())
            .field("wake", &self.config.wake.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, B, P> Transform<S, ServiceRequest> for OutboxMiddleware<P>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    P: TransactionPool,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = OutboxService<S, P>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(OutboxService {
            service: Rc::new(service),
            config: Arc::clone(&self.config),
        }))
    }
}

/// The service [`OutboxMiddleware`] wraps around the inner one.
pub struct OutboxService<S, P: TransactionPool> {
    service: Rc<S>,
    config: Arc<Config<P>>,
}

impl<S, P: TransactionPool> fmt::Debug for OutboxService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxService").finish_non_exhaustive()
    }
}

impl<S, B, P> Service<ServiceRequest> for OutboxService<S, P>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    P: TransactionPool,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let config = &self.config;
        let unit = UnitOfWork::new(
            config.pool.clone(),
            config.table.clone(),
            config.wake.clone(),
        );
        request.extensions_mut().insert(unit.clone());
        let response = self.service.call(request);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            // Dropped here (a client that disconnects, a panic), `unit` rolls back.
            let response = match response.await {
                Ok(response) => response,
                Err(err) => {
                    drop(unit.finish(false));
                    return Err(err);
                }
            };
            let commit = match response.response().extensions().get::<TxDecision>() {
                Some(decision) => *decision == TxDecision::Commit,
                None => (config.commit_when)(response.status()),
            };
            match unit.finish(commit).await {
                Ok(_) => Ok(response.map_into_left_body()),
                Err(err) if commit => {
                    tracing::error!(error = %err, "the request's transaction did not commit");
                    let failed = plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal server error: the request's changes were not saved",
                    );
                    Ok(response.into_response(failed).map_into_right_body())
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the request's transaction did not roll back cleanly");
                    Ok(response.map_into_left_body())
                }
            }
        })
    }
}
