//! The extractor's rejection, the handler error, the per-response commit override, and the
//! response sent when a commit fails.

use axum_core::body::Body;
use axum_core::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use http::{StatusCode, header};

outbox_core::web_errors!(
    StatusCode,
    "no OutboxLayer for this pool type wraps the route: add \
     `.layer(outbox_axum::OutboxLayer::new(pool))` to the router, with the same pool type as \
     the handler's `Tx<..>`"
);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, text) = self.answer();
        plain(status, text)
    }
}

impl IntoResponse for TxRejection {
    fn into_response(self) -> Response {
        let (status, text) = self.answer();
        plain(status, text)
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

/// The response sent instead of a success whose transaction did not commit.
pub(crate) fn not_saved() -> Response {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        outbox_core::sql::web::NOT_SAVED,
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
