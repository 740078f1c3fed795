//! The response future: the inner service's response, then the unit's commit or rollback.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum_core::body::Body;
use http::Response;
use outbox_core::sql::web::{RequestUnits, Responding};
use outbox_core::sql::{TransactionPool, UnitOfWork};
use pin_project_lite::pin_project;

use crate::error::{TxDecision, not_saved};

pin_project! {
    /// The future [`OutboxService`](crate::OutboxService) returns: it runs the inner service,
    /// then finishes the request's transaction, and yields the response only after the commit
    /// (or rollback) is done.
    pub struct ResponseFuture<F, P: TransactionPool> {
        #[pin]
        inner: F,
        unit: Option<UnitOfWork<P>>,
        units: Arc<RequestUnits<P>>,
        responding: Option<(Responding, Response<Body>)>,
    }
}

impl<F, P: TransactionPool> ResponseFuture<F, P> {
    pub(crate) fn new(inner: F, unit: UnitOfWork<P>, units: Arc<RequestUnits<P>>) -> Self {
        Self {
            inner,
            unit: Some(unit),
            units,
            responding: None,
        }
    }
}

impl<F, P, B, E> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    P: TransactionPool,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<outbox_core::BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some((responding, _)) = this.responding.as_mut() {
                let stands = ready!(Pin::new(responding).poll(cx));
                let (_, response) = this.responding.take().expect("a pending response");
                return Poll::Ready(Ok(if stands { response } else { not_saved() }));
            }
            let response = match ready!(this.inner.as_mut().poll(cx)) {
                Ok(response) => response,
                Err(err) => {
                    // The inner service failed without a response: nothing to commit. The
                    // rollback runs on its own task.
                    if let Some(unit) = this.unit.take() {
                        drop(unit.finish(false));
                    }
                    return Poll::Ready(Err(err));
                }
            };
            let unit = this.unit.take().expect("polled after completion");
            let decision = response.extensions().get::<TxDecision>().copied();
            let responding = this.units.respond(
                unit,
                response.status().as_u16(),
                decision.map(|decision| decision == TxDecision::Commit),
            );
            *this.responding = Some((responding, response.map(Body::new)));
        }
    }
}
