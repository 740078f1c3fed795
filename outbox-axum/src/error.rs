//! The extractor's rejection, the per-response commit override, and the response sent when a
//! commit fails.

use axum_core::body::Body;
use axum_core::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use http::{StatusCode, header};
use outbox_core::{BoxError, Error as OutboxError};

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

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
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

/// Overrides the layer's commit rule for one response: return it as a part of the response,
/// `(TxDecision::Commit, StatusCode::CONFLICT, body)` or
/// `(TxDecision::Rollback, Json(preview))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDecision {
    /// Commit the request's transaction whatever the status.
    Commit,
    /// Roll it back whatever the status.
    Rollback,
}

impl IntoResponseParts for TxDecision {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

impl IntoResponse for TxDecision {
    fn into_response(self) -> Response {
        (self, ()).into_response()
    }
}

/// Why [`Tx`](crate::Tx) could not be extracted. As a response: 500, or 503 when the database
/// cannot be reached; the cause is logged (`tracing`), not sent to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxRejection {
    /// The route has no [`OutboxLayer`](crate::OutboxLayer) for this pool type.
    #[error(
        "no OutboxLayer for this pool type wraps the route: add \
         `.layer(outbox_axum::OutboxLayer::new(pool))` to the router, with the same pool type \
         as the handler's `Tx<..>`"
    )]
    MissingLayer,
    /// The transaction is held by another `Tx` of the same request (two `Tx` arguments, or
    /// one kept by a middleware).
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

    /// The status the rejection responds with: 503 when the database cannot be reached,
    /// 500 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Begin(err) => status_of(Some(err)),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The status of an outbox error, 500 for any other error.
fn status_of(err: Option<&OutboxError>) -> StatusCode {
    err.and_then(|err| StatusCode::from_u16(err.http_status()).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for TxRejection {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "the request's transaction is not available");
        let status = self.status();
        let body = match status {
            StatusCode::SERVICE_UNAVAILABLE => "the database is unavailable; try again later",
            _ => "internal server error",
        };
        plain(status, body)
    }
}

/// The response sent instead of a success whose transaction did not commit.
pub(crate) fn commit_failed() -> Response {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal server error: the request's changes were not saved",
    )
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
