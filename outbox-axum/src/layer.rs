//! `OutboxLayer` and the service it wraps handlers in.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use outbox_core::sql::TransactionPool;
use outbox_core::sql::web::RequestUnits;
use tower_layer::Layer;
use tower_service::Service;

use crate::future::ResponseFuture;

outbox_core::web_layer! {
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
    pub struct OutboxLayer;
    StatusCode
}

impl<S, P: TransactionPool> Layer<S> for OutboxLayer<P> {
    type Service = OutboxService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        OutboxService {
            inner,
            units: Arc::clone(&self.units),
        }
    }
}

/// The service [`OutboxLayer`] wraps around the inner one.
pub struct OutboxService<S, P: TransactionPool> {
    inner: S,
    units: Arc<RequestUnits<P>>,
}

impl<S: Clone, P: TransactionPool> Clone for OutboxService<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            units: Arc::clone(&self.units),
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
        let unit = self.units.unit();
        request.extensions_mut().insert(unit.clone());
        ResponseFuture::new(self.inner.call(request), unit, Arc::clone(&self.units))
    }
}
