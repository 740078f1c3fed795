//! `Tx`: the handler's handle to the request's transaction.

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use outbox_core::sql::{TransactionPool, UnitOfWork};

use crate::error::TxRejection;

outbox_core::web_tx! {
    /// The request's transaction, as a handler argument: write your rows through it (it
    /// dereferences to the ORM's connection) and [`enqueue`](Self::enqueue) the events they
    /// cause. Both commit together when the response is a success.
    ///
    /// `P` is the adapter's pool type, the one given to
    /// [`OutboxLayer::new`](crate::OutboxLayer::new): name it once,
    /// `type Tx = outbox_axum::Tx<outbox_sqlx::SqlxPool<sqlx::Postgres>>;`.
    ///
    /// The first `Tx` of a request begins the transaction; drop it and extract again (in a
    /// later middleware or extractor) to get the same transaction back. Two `Tx` alive at once
    /// for one request are refused with a 500. Keep it out of spawned tasks and response
    /// bodies: a `Tx` still alive when the response is ready makes the request fail and roll
    /// back.
    pub struct Tx;
}

impl<S: Send + Sync, P: TransactionPool> FromRequestParts<S> for Tx<P> {
    type Rejection = TxRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let unit = parts
            .extensions
            .get::<UnitOfWork<P>>()
            .ok_or(TxRejection::MissingLayer)?
            .clone();
        let lease = unit.lease().await.map_err(TxRejection::from_lease)?;
        Ok(Self(lease))
    }
}
