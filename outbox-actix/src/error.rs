//! The extractor's rejection, the handler error, the per-response commit override.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use outbox_core::{BoxError, Error as OutboxError};

/// Overrides the middleware's commit rule for one response: insert it into the response's
/// extensions, `response.extensions_mut().insert(TxDecision::Commit)`, or use
/// [`TxDecision::on`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDecision {
    /// Commit the request's transaction whatever the status.
    Commit,
    /// Roll it back whatever the status.
    Rollback,
}

impl TxDecision {
    /// `response` with this decision attached.
    pub fn on<B>(self, mut response: HttpResponse<B>) -> HttpResponse<B> {
        response.extensions_mut().insert(self);
        response
    }
}

/// A handler error that becomes a plain-text response, and rolls the request's transaction
/// back (its status is not a success). Any error converts into it with `?`, as into
/// `anyhow::Error`: the outbox's own errors get their status ([`PayloadTooLarge`] is
/// `413 Payload Too Large`), everything else is `500 Internal Server Error`; pick another with
/// [`Error::new`]. The cause is logged (`tracing`) and only the status's reason is sent, so
/// database details do not reach clients.
///
/// [`PayloadTooLarge`]: outbox_core::Error::PayloadTooLarge
pub struct Error {
    status: StatusCode,
    cause: BoxError,
}

impl Error {
    /// An error answered with `status`.
    pub fn new(status: StatusCode, cause: impl Into<BoxError>) -> Self {
        Self {
            status,
            cause: cause.into(),
        }
    }

    /// A database error: `500 Internal Server Error`.
    pub fn database(cause: impl Into<BoxError>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, cause)
    }

    /// What went wrong.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.cause
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(err: E) -> Self {
        let cause: BoxError = Box::new(err);
        let status = status_of(cause.downcast_ref::<OutboxError>());
        Self { status, cause }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Error")
            .field("status", &self.status)
            .field("cause", &self.cause)
            .finish()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.cause)
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.cause, "request failed");
        } else {
            tracing::debug!(status = %self.status, error = %self.cause, "request refused");
        }
        plain(
            self.status,
            self.status.canonical_reason().unwrap_or("error"),
        )
    }
}

/// Why [`Tx`](crate::Tx) could not be extracted. As a response: 500, or 503 when the database
/// cannot be reached; the cause is logged (`tracing`), not sent to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxRejection {
    /// The app or scope has no [`OutboxMiddleware`](crate::OutboxMiddleware) for this pool
    /// type.
    #[error(
        "no OutboxMiddleware for this pool type wraps the route: add \
         `.wrap(outbox_actix::OutboxMiddleware::new(pool))` to the App, with the same pool \
         type as the handler's `Tx<..>`"
    )]
    MissingMiddleware,
    /// The transaction is held by another `Tx` of the same request.
    #[error("{0}")]
    InUse(OutboxError),
    /// The transaction could not be begun.
    #[error("could not begin the request's transaction: {0}")]
    Begin(OutboxError),
}

impl TxRejection {
    pub(crate) fn from_lease(err: OutboxError) -> Self {
        match err {
            OutboxError::TransactionInUse | OutboxError::TransactionEnded => Self::InUse(err),
            other => Self::Begin(other),
        }
    }
}

impl ResponseError for TxRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Begin(err) => status_of(Some(err)),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        tracing::error!(error = %self, "the request's transaction is not available");
        let status = self.status_code();
        let body = match status {
            StatusCode::SERVICE_UNAVAILABLE => "the database is unavailable; try again later",
            _ => "internal server error",
        };
        plain(status, body)
    }
}

/// The status of an outbox error, 500 for any other error.
fn status_of(err: Option<&OutboxError>) -> StatusCode {
    err.and_then(|err| StatusCode::from_u16(err.http_status()).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(body)
}
