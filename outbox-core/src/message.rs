//! The message model: what a producer enqueues and what a publisher receives.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::codec::{Codec, Json};
use crate::error::{Error, Result};

/// Largest payload accepted unless a store is configured otherwise: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Longest event type, partition key or aggregate type, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Header carrying the payload's content type.
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// Message headers, sorted by name.
pub type Headers = BTreeMap<String, String>;

/// A message to enqueue inside the caller's transaction.
///
/// Built with [`Message::json`] (or [`Message::encoded`] / [`Message::bytes`]) and refined with
/// the builder methods. Everything is validated while building, so a message that exists is
/// one that every store and publisher accepts, but for its payload's size, which each store
/// limits and checks at enqueue.
///
/// ```
/// # use outbox_core as outbox_sqlx;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use outbox_sqlx::Message; // or the adapter you use: every adapter re-exports the core
///
/// #[derive(serde::Serialize)]
/// struct OrderCreated { id: u64, total: u64 }
///
/// let order = OrderCreated { id: 42, total: 1999 };
/// let msg = Message::json("order.created", &order)?
///     .key(order.id)?
///     .aggregate_type("order")?
///     .header("tenant", "acme")?;
/// assert_eq!(msg.event_type(), "order.created");
/// assert_eq!(msg.partition_key(), Some("42"));
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    id: Uuid,
    event_type: String,
    partition_key: Option<String>,
    aggregate_type: Option<String>,
    payload: Bytes,
    headers: Headers,
    delay: Duration,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("partition_key", &self.partition_key)
            .field("aggregate_type", &self.aggregate_type)
            .field("payload_bytes", &self.payload.len())
            .field("headers", &self.headers)
            .field("delay", &self.delay)
            .finish()
    }
}

impl Message {
    /// A message whose payload is `value` serialized as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEventType`] for an unroutable event type, [`Error::Encode`] when `value`
    /// cannot be serialized. The payload's size is checked when the message is enqueued,
    /// against the store's limit ([`DEFAULT_MAX_PAYLOAD_BYTES`] unless the store raises it).
    pub fn json<T: Serialize + ?Sized>(event_type: impl Into<String>, value: &T) -> Result<Self> {
        Self::encoded::<Json, T>(event_type, value)
    }

    /// A message whose payload is `value` encoded with the codec `C`.
    ///
    /// # Errors
    ///
    /// As for [`Message::json`].
    pub fn encoded<C: Codec, T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self> {
        let event_type = event_type.into();
        validate_event_type(&event_type)?;
        let payload = C::encode(value).map_err(|cause| Error::Encode {
            event_type: event_type.clone(),
            cause,
        })?;
        let mut msg = Self::bytes(event_type, payload)?;
        msg.headers
            .insert(CONTENT_TYPE_HEADER.to_owned(), C::CONTENT_TYPE.to_owned());
        Ok(msg)
    }

    /// A message with an opaque payload.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEventType`]. The payload's size is checked when the message is
    /// enqueued, against the store's limit.
    pub fn bytes(event_type: impl Into<String>, payload: impl Into<Bytes>) -> Result<Self> {
        let event_type = event_type.into();
        validate_event_type(&event_type)?;
        let payload = payload.into();
        Ok(Self {
            id: Uuid::now_v7(),
            event_type,
            partition_key: None,
            aggregate_type: None,
            payload,
            headers: Headers::new(),
            delay: Duration::ZERO,
        })
    }

    /// Sets the partition key: messages with the same key are published in commit order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] if the key is empty or longer than 255 bytes.
    pub fn key(mut self, key: impl fmt::Display) -> Result<Self> {
        let key = key.to_string();
        validate_name("key", &key)?;
        self.partition_key = Some(key);
        Ok(self)
    }

    /// Sets the aggregate type (for example `order`), carried to the broker as metadata.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] if it is empty or longer than 255 bytes.
    pub fn aggregate_type(mut self, aggregate_type: impl Into<String>) -> Result<Self> {
        let aggregate_type = aggregate_type.into();
        validate_name("aggregate type", &aggregate_type)?;
        self.aggregate_type = Some(aggregate_type);
        Ok(self)
    }

    /// Adds a header, replacing any header of the same name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidHeader`] for a name or value that some broker cannot carry.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let (name, value) = (name.into(), value.into());
        validate_header(&name, &value)?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Delays delivery: the relay publishes the message no earlier than `delay` after commit
    /// (measured on the database clock).
    #[must_use]
    pub fn deliver_after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Replaces the generated id, for producers that derive ids from their own data.
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// The message id (UUIDv7 unless replaced): the consumer's deduplication key.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The event type, which publishers route on.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The partition key, if any.
    pub fn partition_key(&self) -> Option<&str> {
        self.partition_key.as_deref()
    }

    /// The aggregate type, if any.
    pub fn aggregate_type_name(&self) -> Option<&str> {
        self.aggregate_type.as_deref()
    }

    /// The encoded payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The delivery delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The headers, to add trace context to.
    pub(crate) fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The headers encoded as a JSON object, as stores keep them.
    pub fn headers_json(&self) -> String {
        encode_headers(&self.headers)
    }
}

/// A message read back from the outbox, as the relay hands it to a publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The row's position in the outbox table: the per-key order.
    pub seq: i64,
    /// The message id, the consumer's deduplication key.
    pub id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The partition key, if any.
    pub partition_key: Option<String>,
    /// The aggregate type, if any.
    pub aggregate_type: Option<String>,
    /// The payload bytes.
    pub payload: Bytes,
    /// The headers.
    pub headers: Headers,
    /// When the enqueueing transaction wrote the row (database clock).
    pub created_at: SystemTime,
    /// Failed publish attempts so far.
    pub attempts: u32,
}

impl Envelope {
    /// Builds an envelope from a stored message (used by the in-memory store and tests).
    pub fn from_message(seq: i64, msg: &Message, created_at: SystemTime, attempts: u32) -> Self {
        Self {
            seq,
            id: msg.id,
            event_type: msg.event_type.clone(),
            partition_key: msg.partition_key.clone(),
            aggregate_type: msg.aggregate_type.clone(),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
            created_at,
            attempts,
        }
    }
}

/// Encodes headers as a JSON object.
pub fn encode_headers(headers: &Headers) -> String {
    if headers.is_empty() {
        return "{}".to_owned();
    }
    // A map of strings always serializes.
    serde_json::to_string(headers).unwrap_or_else(|_| "{}".to_owned())
}

/// Decodes headers stored by [`encode_headers`].
///
/// # Errors
///
/// [`Error::CorruptRow`] when the text is not a JSON object of strings.
pub fn decode_headers(seq: i64, text: &str) -> Result<Headers> {
    if text == "{}" || text.is_empty() {
        return Ok(Headers::new());
    }
    serde_json::from_str(text).map_err(|e| Error::CorruptRow {
        seq,
        reason: format!("headers are not a JSON object of strings: {e}"),
    })
}

/// Checks a payload size against a limit.
///
/// # Errors
///
/// [`Error::PayloadTooLarge`] when `size > limit`.
pub fn check_payload_size(size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(Error::PayloadTooLarge { size, limit });
    }
    Ok(())
}

fn validate_event_type(event_type: &str) -> Result<()> {
    let reason = if event_type.is_empty() {
        Some("it is empty")
    } else if event_type.len() > MAX_NAME_BYTES {
        Some("it is longer than 255 bytes")
    } else if !event_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
    {
        Some("it contains a character outside the allowed set")
    } else if event_type.starts_with('.') || event_type.ends_with('.') || event_type.contains("..")
    {
        Some("it has an empty `.`-separated token")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidEventType {
            event_type: event_type.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_name(field: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.len() > MAX_NAME_BYTES {
        "it is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidField {
        field,
        value: value.chars().take(64).collect(),
        reason,
    })
}

fn validate_header(name: &str, value: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        Some("the name contains a space, a colon or a non-ASCII character")
    } else if value.contains(['\r', '\n']) {
        Some("the value contains a line break")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidHeader {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sets_content_type_and_uuid_v7() {
        let msg = Message::json("order.created", &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(msg.headers()[CONTENT_TYPE_HEADER], "application/json");
        assert_eq!(msg.id().get_version_num(), 7);
        assert_eq!(&msg.payload()[..], br#"{"a":1}"#);
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = Message::bytes("e", "x").unwrap();
        let b = Message::bytes("e", "x").unwrap();
        assert!(a.id() < b.id());
    }

    #[test]
    fn bad_event_types_are_rejected() {
        for bad in ["", "has space", "a..b", ".a", "a>b", "a*", &"x".repeat(256)] {
            let err = Message::bytes(bad, "x").unwrap_err();
            assert!(
                matches!(err, Error::InvalidEventType { .. }),
                "{bad:?}: {err}"
            );
        }
        for good in ["order.created", "billing/invoice-paid", "v1:user_signed_up"] {
            Message::bytes(good, "x").unwrap();
        }
    }

    #[test]
    fn unserializable_payload_is_an_encode_error() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("refuses"))
            }
        }
        let err = Message::json("e", &Fails).unwrap_err();
        assert!(matches!(err, Error::Encode { .. }));
        assert!(err.to_string().contains("nothing was written"));
    }

    #[test]
    fn a_payload_over_the_default_limit_is_left_to_the_store() {
        let size = DEFAULT_MAX_PAYLOAD_BYTES * 2;
        let msg = Message::bytes("e", vec![0u8; size]).unwrap();
        assert_eq!(msg.payload().len(), size);
        let err = check_payload_size(size, DEFAULT_MAX_PAYLOAD_BYTES).unwrap_err();
        assert!(matches!(err, Error::PayloadTooLarge { .. }));
    }

    #[test]
    fn header_and_key_validation() {
        let m = Message::bytes("e", "x").unwrap();
        assert!(matches!(
            m.clone().header("bad name", "v"),
            Err(Error::InvalidHeader { .. })
        ));
        assert!(matches!(
            m.clone().header("n", "a\nb"),
            Err(Error::InvalidHeader { .. })
        ));
        assert!(matches!(m.clone().key(""), Err(Error::InvalidField { .. })));
        let m = m.key(7).unwrap().header("x-a", "1").unwrap();
        let json = m.headers_json();
        assert_eq!(decode_headers(1, &json).unwrap(), *m.headers());
    }
}
