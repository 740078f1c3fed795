//! NATS JetStream: subject from the event type, `Nats-Msg-Id` for server-side deduplication,
//! and acks awaited as a pipeline (every message of a batch is sent before the first ack is
//! awaited).

use std::fmt;
use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, Context};
use futures_util::future::join_all;
use outbox_core::{Envelope, PublishError, Publisher};

/// Header carrying the partition key.
pub const KEY_HEADER: &str = "Outbox-Key";
/// Header carrying the aggregate type.
pub const AGGREGATE_TYPE_HEADER: &str = "Outbox-Aggregate-Type";
/// Header carrying the event type (the subject may be mapped to something else).
pub const EVENT_TYPE_HEADER: &str = "Outbox-Event-Type";

/// Chooses the subject a message is published on.
#[derive(Clone)]
pub enum SubjectMapper {
    /// The event type itself: `order.created`.
    EventType,
    /// A prefix, a dot, then the event type: `events.order.created`.
    Prefix(String),
    /// Any function of the message.
    Custom(Arc<dyn Fn(&Envelope) -> String + Send + Sync>),
}

impl fmt::Debug for SubjectMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventType => f.write_str("EventType"),
            Self::Prefix(prefix) => f.debug_tuple("Prefix").field(prefix).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl SubjectMapper {
    /// The subject for `envelope`.
    pub fn subject(&self, envelope: &Envelope) -> String {
        match self {
            Self::EventType => envelope.event_type.clone(),
            Self::Prefix(prefix) => format!("{prefix}.{}", envelope.event_type),
            Self::Custom(map) => map(envelope),
        }
    }
}

/// Publishes to NATS JetStream.
///
/// The subject must be bound to a stream (`no responders` otherwise: the message is rejected
/// and retried per the relay's policy, so a missing stream shows up as failed messages with
/// that error rather than as silent loss). JetStream drops a second publish with the same
/// `Nats-Msg-Id` within the stream's duplicate window (2 minutes by default): relay retries
/// after a lost ack do not reach consumers twice inside that window. Consumers still dedup with
/// the inbox for a proof beyond it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("127.0.0.1:4222").await?;
/// let publisher = outbox_publishers::NatsPublisher::new(async_nats::jetstream::new(client))
///     .subject_prefix("events");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NatsPublisher {
    context: Context,
    subjects: SubjectMapper,
}

impl NatsPublisher {
    /// Publishes through `context`, on the event type as subject.
    pub fn new(context: Context) -> Self {
        Self {
            context,
            subjects: SubjectMapper::EventType,
        }
    }

    /// Connects to `url` and publishes through a JetStream context on that connection.
    ///
    /// A server that is down does not fail the call: the client keeps connecting in the
    /// background (and reconnects after any later loss), and until it is connected every
    /// publish reports the broker unavailable, so the relay keeps the messages in the outbox
    /// and backs off. Build the client with [`async_nats::ConnectOptions`] and use
    /// [`NatsPublisher::new`] for other settings.
    ///
    /// # Errors
    ///
    /// Only a `url` that cannot be parsed.
    pub async fn connect(url: &str) -> Result<Self, async_nats::ConnectError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url)
            .await?;
        Ok(Self::new(jetstream::new(client)))
    }

    /// Prefixes every subject: `prefix.event_type`.
    #[must_use]
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subjects = SubjectMapper::Prefix(prefix.into());
        self
    }

    /// Chooses subjects with `map`.
    #[must_use]
    pub fn subject_with(
        mut self,
        map: impl Fn(&Envelope) -> String + Send + Sync + 'static,
    ) -> Self {
        self.subjects = SubjectMapper::Custom(Arc::new(map));
        self
    }

    /// The JetStream context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    fn message(envelope: &Envelope) -> Publish {
        let mut headers = HeaderMap::new();
        for (name, value) in &envelope.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        headers.insert(EVENT_TYPE_HEADER, envelope.event_type.as_str());
        if let Some(key) = &envelope.partition_key {
            headers.insert(KEY_HEADER, key.as_str());
        }
        if let Some(aggregate) = &envelope.aggregate_type {
            headers.insert(AGGREGATE_TYPE_HEADER, aggregate.as_str());
        }
        Publish::build()
            .payload(envelope.payload.clone())
            .headers(headers)
            .message_id(envelope.id.to_string())
    }
}

/// A message JetStream already had (same `Nats-Msg-Id` inside the stream's duplicate window)
/// is acknowledged without being stored again; counted, since each one is a publish that
/// another relay or an earlier attempt already made.
fn count_duplicate(ack: jetstream::publish::PublishAck) {
    if ack.duplicate {
        metrics::counter!("outbox_broker_duplicates_total", "broker" => "nats").increment(1);
    }
}

fn classify(err: jetstream::context::PublishError) -> PublishError {
    match err.kind() {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => PublishError::unavailable(err),
        _ => PublishError::rejected(err),
    }
}

impl Publisher for NatsPublisher {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let mut pending = Vec::with_capacity(batch.len());
        for envelope in batch {
            let subject = self.subjects.subject(envelope);
            pending.push(
                self.context
                    .send_publish(subject, Self::message(envelope))
                    .await,
            );
        }
        join_all(pending.into_iter().map(|sent| async move {
            match sent {
                Ok(ack) => ack.await.map(count_duplicate).map_err(classify),
                Err(err) => Err(classify(err)),
            }
        }))
        .await
    }
}
