//! The extractor's rejection, the handler error, the per-response commit override.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};

outbox_core::web_errors!(
    StatusCode,
    "no OutboxMiddleware for this pool type wraps the route: add \
     `.wrap(outbox_actix::OutboxMiddleware::new(pool))` to the App, with the same pool type \
     as the handler's `Tx<..>`"
);

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let (status, text) = self.answer();
        plain(status, text)
    }
}

impl ResponseError for TxRejection {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let (status, text) = self.answer();
        plain(status, text)
    }
}

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

pub(crate) fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(body)
}
