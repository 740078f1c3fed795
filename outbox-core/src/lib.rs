//! The storage- and broker-agnostic core of the transactional outbox.
//!
//! Applications do not depend on this crate directly: the adapters (`outbox-sqlx`, ...)
//! re-export everything a user needs. It holds:
//!
//! * the message model ([`Message`], [`Envelope`], [`Status`]) and payload [`Codec`]s;
//! * the [`Store`] and [`Publisher`] seams, and the [`Relay`] that joins them;
//! * the [`RetryPolicy`];
//! * the SQL for every supported database ([`sql`]);
//! * an in-memory store and publishers ([`memory`]) and, behind the `testing` feature, the
//!   conformance suite every store must pass.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> outbox_core::Result<()> {
//! use outbox_core::memory::{CollectingPublisher, MemoryStore};
//! use outbox_core::{Message, Relay};
//!
//! let store = MemoryStore::new();
//! let mut tx = store.begin();
//! tx.enqueue(Message::json("order.created", &serde_json::json!({"id": 1}))?.key(1)?);
//! tx.commit();
//!
//! let publisher = CollectingPublisher::new();
//! let relay = Relay::builder(store.clone(), publisher.clone()).build()?;
//! assert_eq!(relay.drain().await?, 1);
//! assert_eq!(publisher.published()[0].event_type, "order.created");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
mod error;
pub mod memory;
mod message;
mod publisher;
pub mod relay;
mod retry;
pub mod sql;
mod status;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod trace;

pub use self::codec::{Codec, Json};
pub use self::error::{BoxError, Error, Result};
pub use self::message::{
    CONTENT_TYPE_HEADER, DEFAULT_MAX_PAYLOAD_BYTES, Envelope, Headers, MAX_NAME_BYTES, Message,
    check_payload_size, decode_headers, encode_headers,
};
pub use self::publisher::{PublishError, Publisher};
pub use self::relay::{BatchReport, Health, Relay, RelayBuilder, RelayConfig, WakeHandle};
pub use self::retry::{RetryDecision, RetryPolicy};
pub use self::status::{ParseStatusError, Status};
pub use self::store::{
    Claim, CorruptRow, EventTypeStats, Failure, Filter, Inspect, LeaseToken, LiveClaim,
    OutboxStats, Purge, REPLAY_OF_HEADER, Replay, Replayed, Retry, Settled, Settlement, Store,
    StoredMessage,
};
pub use self::trace::{TRACEPARENT_HEADER, TRACESTATE_HEADER};
pub use uuid::Uuid;
