//! `Tx`: the handler's handle to the request's transaction.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use outbox_core::sql::{TransactionPool, UnitOfWork};

use crate::error::TxRejection;

outbox_core::web_tx! {
    /// The request's transaction, as a handler argument: write your rows through it (it
    /// dereferences to the ORM's connection) and [`enqueue`](Self::enqueue) the events they
    /// cause. Both commit together when the response is a success.
    ///
    /// `P` is the adapter's pool type, the one given to
    /// [`OutboxMiddleware::new`](crate::OutboxMiddleware::new): name it once, `type Tx =
    /// outbox_actix::Tx<outbox_diesel::asynchronous::AsyncDieselPool<AsyncPgConnection>>;`.
    ///
    /// The first `Tx` of a request begins the transaction; drop it and extract again
    /// (`Tx::extract(&req).await`) to get the same transaction back. Two `Tx` alive at once
    /// for one request are refused with a 500. Keep it out of spawned tasks and response
    /// bodies: a `Tx` still alive when the response is ready makes the request fail and roll
    /// back.
    pub struct Tx;
}

impl<P: TransactionPool> FromRequest for Tx<P> {
    type Error = TxRejection;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let unit = request.extensions().get::<UnitOfWork<P>>().cloned();
        Box::pin(async move {
            let unit = unit.ok_or(TxRejection::MissingLayer)?;
            let lease = unit.lease().await.map_err(TxRejection::from_lease)?;
            Ok(Self(lease))
        })
    }
}
