//! `Tx`: the handler's handle to the request's transaction.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use outbox_core::sql::{Lease, OutboxTable, TransactionPool, UnitOfWork};
use outbox_core::{Message, Result};

use crate::error::TxRejection;

/// The request's transaction, as a handler argument: write your rows through it (it
/// dereferences to the ORM's connection) and [`enqueue`](Self::enqueue) the events they
/// cause. Both commit together when the response is a success.
///
/// `P` is the adapter's pool type, the one given to
/// [`OutboxMiddleware::new`](crate::OutboxMiddleware::new): name it once,
/// `type Tx = outbox_actix::Tx<outbox_diesel::asynchronous::AsyncDieselPool<AsyncPgConnection>>;`.
///
/// The first `Tx` of a request begins the transaction; drop it and extract again
/// (`Tx::extract(&req).await`) to get the same transaction back. Two `Tx` alive at once for one
/// request are refused with a 500. Keep it out of spawned tasks and response bodies: a `Tx`
/// still alive when the response is ready makes the request fail and roll back.
pub struct Tx<P: TransactionPool>(Lease<P>);

impl<P: TransactionPool> Tx<P> {
    /// A `Tx` around a transaction you began yourself, for calling a handler in a unit test
    /// without a server. Read what it enqueued from [`unit`](Self::unit) (take the unit before
    /// handing the `Tx` to the handler), and end it with [`UnitOfWork::finish`].
    pub fn from_transaction(tx: P::Transaction, table: OutboxTable) -> Self {
        Self(Lease::from_transaction(tx, table))
    }

    /// Buffers `message` to be written with the request's other messages just before the
    /// commit (one statement for all of them). Its payload size is checked now.
    ///
    /// # Errors
    ///
    /// [`PayloadTooLarge`](outbox_core::Error::PayloadTooLarge); nothing is buffered then.
    pub fn enqueue(&mut self, message: Message) -> Result<()> {
        self.0.enqueue(message)
    }

    /// Buffers several messages, in order; none when one is rejected.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue).
    pub fn enqueue_all(&mut self, messages: impl IntoIterator<Item = Message>) -> Result<()> {
        self.0.enqueue_all(messages)
    }

    /// The request's unit of work: its buffered messages, and its end.
    pub fn unit(&self) -> &UnitOfWork<P> {
        self.0.unit()
    }

    /// The transaction itself, as the ORM represents it.
    pub fn transaction(&mut self) -> &mut P::Transaction {
        self.0.transaction()
    }
}

impl<P: TransactionPool> fmt::Debug for Tx<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tx").field(&self.0).finish()
    }
}

impl<P: TransactionPool> Deref for Tx<P> {
    type Target = P::Connection;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<P: TransactionPool> DerefMut for Tx<P> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<P: TransactionPool> FromRequest for Tx<P> {
    type Error = TxRejection;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let unit = request.extensions().get::<UnitOfWork<P>>().cloned();
        Box::pin(async move {
            let unit = unit.ok_or(TxRejection::MissingMiddleware)?;
            let lease = unit.lease().await.map_err(TxRejection::from_lease)?;
            Ok(Self(lease))
        })
    }
}
