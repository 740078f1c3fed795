//! What the web layers (`outbox-axum`, `outbox-actix`) share, so that each is only the glue
//! between its framework's types and a [`UnitOfWork`]: [`RequestUnits`] (the configuration a
//! layer makes each request's unit from, and its commit rule), [`Responding`] (the unit's end,
//! as the answer to "may this response be sent?"), and the macros that write the extractor
//! and the handler error once for both.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use super::{Finishing, OutboxTable, TransactionPool, UnitOfWork};
use crate::relay::WakeHandle;

/// Decides from a response's status code whether its request's transaction commits.
type CommitWhen = Arc<dyn Fn(u16) -> bool + Send + Sync>;

/// What a web layer makes each request's [`UnitOfWork`] from: the pool, the outbox table, the
/// relay to wake, and the rule deciding from a response whether the request commits (by
/// default, a 2xx or 3xx status). Cheap to clone.
pub struct RequestUnits<P: TransactionPool> {
    pool: P,
    table: OutboxTable,
    wake: Option<WakeHandle>,
    commit_when: CommitWhen,
}

impl<P: TransactionPool> RequestUnits<P> {
    /// Units on `pool`, writing to the default table, `outbox`, waking no relay.
    pub fn new(pool: P) -> Self {
        let table = OutboxTable::new(pool.dialect());
        Self {
            pool,
            table,
            wake: None,
            commit_when: Arc::new(|status| (200..400).contains(&status)),
        }
    }

    /// Writes to `table` instead.
    #[must_use]
    pub fn table(mut self, table: OutboxTable) -> Self {
        self.table = table;
        self
    }

    /// Wakes `wake`'s relay after every commit that wrote messages.
    #[must_use]
    pub fn wake(mut self, wake: WakeHandle) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Commits the requests whose response status satisfies `predicate`.
    #[must_use]
    pub fn commit_when(mut self, predicate: impl Fn(u16) -> bool + Send + Sync + 'static) -> Self {
        self.commit_when = Arc::new(predicate);
        self
    }

    /// A new request's unit of work (no connection is taken yet).
    pub fn unit(&self) -> UnitOfWork<P> {
        UnitOfWork::new(self.pool.clone(), self.table.clone(), self.wake.clone())
    }

    /// Ends `unit` for a response with `status`: commits when `decision` says so (the
    /// response's override: `Some(true)` commit, `Some(false)` roll back) or, without one,
    /// when the commit rule accepts the status; rolls back otherwise.
    pub fn respond(&self, unit: UnitOfWork<P>, status: u16, decision: Option<bool>) -> Responding {
        let commit = decision.unwrap_or_else(|| (self.commit_when)(status));
        Responding {
            finishing: unit.finish(commit),
            commit,
        }
    }
}

impl<P: TransactionPool> Clone for RequestUnits<P> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            wake: self.wake.clone(),
            commit_when: Arc::clone(&self.commit_when),
        }
    }
}

impl<P: TransactionPool> fmt::Debug for RequestUnits<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestUnits")
            .field("dialect", &self.pool.dialect())
            .field("table", self.table.table())
            .field("wake", &self.wake.is_some())
            .finish_non_exhaustive()
    }
}

/// The end of a request's unit of work, from [`RequestUnits::respond`]: `true` when the
/// response may be sent as it is, `false` when it was to commit and did not (the layer then
/// answers `500 Internal Server Error`; nothing of the request was saved). A rollback that
/// fails leaves the response as it is: it already says the request failed, and the database
/// rolls back a transaction whose connection is gone. Failures are logged (`tracing`).
#[must_use = "the response must wait for the commit"]
#[derive(Debug)]
pub struct Responding {
    finishing: Finishing,
    commit: bool,
}

impl Future for Responding {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let commit = self.commit;
        match ready!(Pin::new(&mut self.finishing).poll(cx)) {
            Ok(_) => Poll::Ready(true),
            Err(err) if commit => {
                tracing::error!(error = %err, "the request's transaction did not commit");
                Poll::Ready(false)
            }
            Err(err) => {
                tracing::warn!(error = %err, "the request's transaction did not roll back cleanly");
                Poll::Ready(true)
            }
        }
    }
}

/// The body of the response that replaces a success whose transaction did not commit.
pub const NOT_SAVED: &str = "internal server error: the request's changes were not saved";

/// Writes a web layer's transaction extractor: a newtype over [`Lease`](super::Lease) that
/// dereferences to the adapter's connection, with `from_transaction`, `enqueue`,
/// `enqueue_all`, `unit` and `transaction`. The web crate adds its framework's extraction.
#[doc(hidden)]
#[macro_export]
macro_rules! web_tx {
    ($(#[$meta:meta])* pub struct $name:ident;) => {
        $(#[$meta])*
        pub struct $name<P: $crate::sql::TransactionPool>($crate::sql::Lease<P>);

        impl<P: $crate::sql::TransactionPool> $name<P> {
            /// A handle around a transaction you began yourself, for calling a handler in a
            /// unit test without a server. Read what it enqueued from [`unit`](Self::unit)
            /// (take the unit before handing the handle to the handler), and end it with
            /// [`UnitOfWork::finish`](crate::UnitOfWork::finish).
            pub fn from_transaction(
                tx: P::Transaction,
                table: $crate::sql::OutboxTable,
            ) -> Self {
                Self($crate::sql::Lease::from_transaction(tx, table))
            }

            /// Buffers `message` to be written with the request's other messages just before
            /// the commit (one statement for all of them). Its payload size is checked now.
            ///
            /// # Errors
            ///
            /// [`PayloadTooLarge`]($crate::Error::PayloadTooLarge); nothing is buffered then.
            pub fn enqueue(&mut self, message: $crate::Message) -> $crate::Result<()> {
                self.0.enqueue(message)
            }

            /// Buffers several messages, in order; none when one is rejected.
            ///
            /// # Errors
            ///
            /// As [`enqueue`](Self::enqueue).
            pub fn enqueue_all(
                &mut self,
                messages: impl IntoIterator<Item = $crate::Message>,
            ) -> $crate::Result<()> {
                self.0.enqueue_all(messages)
            }

            /// The request's unit of work: its buffered messages, and its end.
            pub fn unit(&self) -> &$crate::sql::UnitOfWork<P> {
                self.0.unit()
            }

            /// The transaction itself, as the ORM represents it.
            pub fn transaction(&mut self) -> &mut P::Transaction {
                self.0.transaction()
            }
        }

        impl<P: $crate::sql::TransactionPool> ::std::fmt::Debug for $name<P> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0).finish()
            }
        }

        impl<P: $crate::sql::TransactionPool> ::std::ops::Deref for $name<P> {
            type Target = P::Connection;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl<P: $crate::sql::TransactionPool> ::std::ops::DerefMut for $name<P> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}

/// Writes a web layer's handler error `Error` (any error converts into it with `?`; the
/// outbox's own errors get their status) and the extractor's rejection `TxRejection`, over the
/// framework's `StatusCode` type. `$missing` is the rejection's text when the layer is missing.
/// The web crate adds its framework's response conversions.
#[doc(hidden)]
#[macro_export]
macro_rules! web_errors {
    ($status:ty, $missing:literal) => {
        /// A handler error that becomes a plain-text response, and rolls the request's
        /// transaction back (its status is not a success). Any error converts into it with
        /// `?`, as into `anyhow::Error`: the outbox's own errors get their status
        /// ([`PayloadTooLarge`] is `413 Payload Too Large`), everything else is `500 Internal
        /// Server Error`; pick another with [`Error::new`]. The cause is logged (`tracing`) and
        /// only the status's reason is sent, so database details do not reach clients.
        ///
        /// [`PayloadTooLarge`]: outbox_core::Error::PayloadTooLarge
        pub struct Error {
            status: $status,
            cause: $crate::BoxError,
        }

        impl Error {
            /// An error answered with `status`.
            pub fn new(status: $status, cause: impl Into<$crate::BoxError>) -> Self {
                Self {
                    status,
                    cause: cause.into(),
                }
            }

            /// A database error: `500 Internal Server Error`.
            pub fn database(cause: impl Into<$crate::BoxError>) -> Self {
                Self::new(<$status>::INTERNAL_SERVER_ERROR, cause)
            }

            /// The status it is answered with.
            pub fn status(&self) -> $status {
                self.status
            }

            /// What went wrong.
            pub fn cause(&self) -> &(dyn ::std::error::Error + Send + Sync + 'static) {
                &*self.cause
            }

            /// Logs the error, and gives the status and the text to answer with.
            fn answer(&self) -> ($status, &'static str) {
                if self.status.is_server_error() {
                    ::tracing::error!(status = %self.status, error = %self.cause, "request failed");
                } else {
                    ::tracing::debug!(status = %self.status, error = %self.cause, "request refused");
                }
                (self.status, self.status.canonical_reason().unwrap_or("error"))
            }
        }

        impl<E: ::std::error::Error + Send + Sync + 'static> From<E> for Error {
            fn from(err: E) -> Self {
                let cause: $crate::BoxError = Box::new(err);
                let status = status_of(cause.downcast_ref::<$crate::Error>());
                Self { status, cause }
            }
        }

        impl ::std::fmt::Debug for Error {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("Error")
                    .field("status", &self.status)
                    .field("cause", &self.cause)
                    .finish()
            }
        }

        impl ::std::fmt::Display for Error {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}: {}", self.status, self.cause)
            }
        }

        /// Why the transaction extractor failed. As a response: 500, or 503 when the database
        /// cannot be reached; the cause is logged (`tracing`), not sent to the client.
        #[derive(Debug, ::thiserror::Error)]
        #[non_exhaustive]
        pub enum TxRejection {
            /// The route has no outbox layer for this pool type.
            #[error($missing)]
            MissingLayer,
            /// The transaction is held by another handle of the same request (two handles at
            /// once, or one kept by a middleware).
            #[error("{0}")]
            InUse($crate::Error),
            /// The transaction could not be begun.
            #[error("could not begin the request's transaction: {0}")]
            Begin($crate::Error),
        }

        impl TxRejection {
            /// A failed lease, as a rejection.
            pub(crate) fn from_lease(err: $crate::Error) -> Self {
                match err {
                    $crate::Error::TransactionInUse | $crate::Error::TransactionEnded => {
                        Self::InUse(err)
                    }
                    other => Self::Begin(other),
                }
            }

            /// The status the rejection responds with: 503 when the database cannot be
            /// reached, 500 otherwise.
            pub fn status(&self) -> $status {
                match self {
                    Self::Begin(err) => status_of(Some(err)),
                    _ => <$status>::INTERNAL_SERVER_ERROR,
                }
            }

            /// Logs the rejection, and gives the status and the text to answer with.
            fn answer(&self) -> ($status, &'static str) {
                ::tracing::error!(error = %self, "the request's transaction is not available");
                let status = self.status();
                let text = if status == <$status>::SERVICE_UNAVAILABLE {
                    "the database is unavailable; try again later"
                } else {
                    "internal server error"
                };
                (status, text)
            }
        }

        /// The status of an outbox error, 500 for any other error.
        fn status_of(err: Option<&$crate::Error>) -> $status {
            err.and_then(|err| <$status>::from_u16(err.http_status()).ok())
                .unwrap_or(<$status>::INTERNAL_SERVER_ERROR)
        }
    };
}

/// Writes a web layer's configuration type: a struct over shared [`RequestUnits`] with `new`,
/// `table`, `wake` and `commit_when` (on the framework's `StatusCode` type), `Clone` and
/// `Debug`. The web crate adds its framework's layer or middleware traits.
#[doc(hidden)]
#[macro_export]
macro_rules! web_layer {
    ($(#[$meta:meta])* pub struct $name:ident; $status:ty) => {
        $(#[$meta])*
        pub struct $name<P: $crate::sql::TransactionPool> {
            units: ::std::sync::Arc<$crate::sql::web::RequestUnits<P>>,
        }

        impl<P: $crate::sql::TransactionPool> $name<P> {
            /// Request transactions on `pool`, writing messages to the default table, `outbox`.
            pub fn new(pool: P) -> Self {
                Self {
                    units: ::std::sync::Arc::new($crate::sql::web::RequestUnits::new(pool)),
                }
            }

            /// Writes messages to `table` instead (another name, payload limit or locking
            /// setting): pass your adapter's `Outbox::outbox_table()`.
            #[must_use]
            pub fn table(self, table: $crate::sql::OutboxTable) -> Self {
                self.with(|units| units.table(table))
            }

            /// Wakes the in-process relay after every commit that wrote messages, so that they
            /// are published at once instead of at the relay's next poll: pass
            /// `relay.wake_handle()`.
            #[must_use]
            pub fn wake(self, wake: $crate::WakeHandle) -> Self {
                self.with(|units| units.wake(wake))
            }

            /// Commits the transactions of responses whose status satisfies `predicate`,
            /// instead of those with a 2xx or 3xx status.
            #[must_use]
            pub fn commit_when(
                self,
                predicate: impl Fn($status) -> bool + Send + Sync + 'static,
            ) -> Self {
                self.with(|units| {
                    units.commit_when(move |code| <$status>::from_u16(code).is_ok_and(&predicate))
                })
            }

            fn with(
                self,
                change: impl FnOnce(
                    $crate::sql::web::RequestUnits<P>,
                ) -> $crate::sql::web::RequestUnits<P>,
            ) -> Self {
                Self {
                    units: ::std::sync::Arc::new(change(::std::sync::Arc::unwrap_or_clone(
                        self.units,
                    ))),
                }
            }
        }

        impl<P: $crate::sql::TransactionPool> ::std::clone::Clone for $name<P> {
            fn clone(&self) -> Self {
                Self {
                    units: ::std::sync::Arc::clone(&self.units),
                }
            }
        }

        impl<P: $crate::sql::TransactionPool> ::std::fmt::Debug for $name<P> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.units).finish()
            }
        }
    };
}
