//! The broker seam: what the relay needs from a message broker.

use std::future::Future;

use crate::error::BoxError;
use crate::message::Envelope;

/// Why one message was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The broker is unreachable or overloaded. Nothing is wrong with the message: the relay
    /// gives it back without counting an attempt and backs off as a whole.
    #[error("broker unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The broker refused this message, or acknowledged it with an error. It counts as a failed
    /// attempt and is retried per the retry policy, then dead-lettered.
    #[error("message rejected: {0}")]
    Rejected(#[source] BoxError),
}

impl PublishError {
    /// An unavailable-broker error from any error value.
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        Self::Unavailable(err.into())
    }

    /// A rejected-message error from any error value.
    pub fn rejected(err: impl Into<BoxError>) -> Self {
        Self::Rejected(err.into())
    }
}

/// A broker the relay publishes to.
///
/// # Contract
///
/// * `publish` returns exactly one outcome per message, in the order given.
/// * `Ok(())` only once the broker acknowledged the message (stored it durably, as far as the
///   broker offers that).
/// * A batch never holds two messages with the same partition key, so an implementation may
///   send the whole batch at once (pipelined) without breaking per-key order.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes a batch and reports each message's outcome.
    fn publish(
        &self,
        batch: &[Envelope],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send;
}

impl<P: Publisher> Publisher for std::sync::Arc<P> {
    fn publish(
        &self,
        batch: &[Envelope],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        (**self).publish(batch)
    }
}
