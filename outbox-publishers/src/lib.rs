//! Broker publishers for the outbox relay, one feature each.
//!
//! | feature | publisher | broker idiom |
//! | --- | --- | --- |
//! | `nats` | [`NatsPublisher`] | JetStream publish, `Nats-Msg-Id` = message id (server-side dedup), subject from the event type, acks awaited in a pipeline |
//! | `stdout` | [`JsonLinesPublisher`] | one JSON object per line on stdout or any writer |
//!
//! Every publisher reports a message as published only after the broker acknowledged it, and
//! tells the relay whether a failure is the broker's (`Unavailable`: retried without counting an
//! attempt) or the message's (`Rejected`: counted, then dead-lettered).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "stdout")]
mod stdout;

#[cfg(feature = "nats")]
pub use self::nats::{
    AGGREGATE_TYPE_HEADER, EVENT_TYPE_HEADER, KEY_HEADER, NatsPublisher, SubjectMapper,
};
#[cfg(feature = "stdout")]
pub use self::stdout::JsonLinesPublisher;
