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
use outbox_core::sql::TransactionPool;
use outbox_core::sql::web::{NOT_SAVED, RequestUnits};

use crate::error::{TxDecision, plain};

outbox_core::web_layer! {
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
    pub struct OutboxMiddleware;
    StatusCode
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
            units: Arc::clone(&self.units),
        }))
    }
}

/// The service [`OutboxMiddleware`] wraps around the inner one.
pub struct OutboxService<S, P: TransactionPool> {
    service: Rc<S>,
    units: Arc<RequestUnits<P>>,
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
        let unit = self.units.unit();
        request.extensions_mut().insert(unit.clone());
        let response = self.service.call(request);
        let units = Arc::clone(&self.units);
        Box::pin(async move {
            // Dropped here (a panic), `unit` rolls back.
            let response = match response.await {
                Ok(response) => response,
                Err(err) => {
                    drop(unit.finish(false));
                    return Err(err);
                }
            };
            let decision = response
                .response()
                .extensions()
                .get::<TxDecision>()
                .copied();
            let stands = units
                .respond(
                    unit,
                    response.status().as_u16(),
                    decision.map(|decision| decision == TxDecision::Commit),
                )
                .await;
            Ok(if stands {
                response.map_into_left_body()
            } else {
                let failed = plain(StatusCode::INTERNAL_SERVER_ERROR, NOT_SAVED);
                response.into_response(failed).map_into_right_body()
            })
        })
    }
}
