//! The response future: the inner service's response, then the unit's commit or rollback.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum_core::body::Body;
use http::Response;
use outbox_core::sql::{Finished, Finishing, TransactionPool, UnitOfWork};
use pin_project_lite::pin_project;

use crate::error::{TxDecision, commit_failed};
use crate::layer::Config;

pin_project! {
    /// The future [`OutboxService`](crate::OutboxService) returns: it runs the inner service,
    /// then finishes the request's transaction, and yields the response only after the commit
    /// (or rollback) is done.
    pub struct ResponseFuture<F, P: TransactionPool> {
        #[pin]
        inner: F,
        unit: Option<UnitOfWork<P>>,
        config: Arc<Config<P>>,
        finishing: Option<Pending>,
    }
}

/// A response waiting for its transaction to end.
struct Pending {
    finishing: Finishing,
    response: Response<Body>,
    commit: bool,
}

impl<F, P: TransactionPool> ResponseFuture<F, P> {
    pub(crate) fn new(inner: F, unit: UnitOfWork<P>, config: Arc<Config<P>>) -> Self {
        Self {
            inner,
            unit: Some(unit),
            config,
            finishing: None,
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
            if let Some(pending) = this.finishing.as_mut() {
                let outcome = ready!(Pin::new(&mut pending.finishing).poll(cx));
                let pending = this.finishing.take().expect("pending response");
                return Poll::Ready(Ok(respond(outcome, pending)));
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
            let commit = match response.extensions().get::<TxDecision>() {
                Some(decision) => *decision == TxDecision::Commit,
                None => (this.config.commit_when)(response.status()),
            };
            *this.finishing = Some(Pending {
                finishing: unit.finish(commit),
                response: response.map(Body::new),
                commit,
            });
        }
    }
}

/// The response to send once the unit has ended.
fn respond(outcome: outbox_core::Result<Finished>, pending: Pending) -> Response<Body> {
    match outcome {
        Ok(_) => pending.response,
        Err(err) if pending.commit => {
            tracing::error!(error = %err, "the request's transaction did not commit");
            commit_failed()
        }
        Err(err) => {
            // The response already says the request failed; the database rolls back a
            // transaction whose connection is gone.
            tracing::warn!(error = %err, "the request's transaction did not roll back cleanly");
            pending.response
        }
    }
}
