//! Payload encoding, kept apart from storage so a store never cares what the bytes mean.

use serde::Serialize;

use crate::error::BoxError;

/// Turns a value into payload bytes at enqueue time.
///
/// Encoding happens before anything is written, so an encoding failure aborts the
/// business transaction instead of committing half of it.
pub trait Codec {
    /// The `content-type` header value recorded with each encoded payload.
    const CONTENT_TYPE: &'static str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError>;
}

/// JSON through `serde_json`, the default codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const CONTENT_TYPE: &'static str = "application/json";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
        serde_json::to_vec(value).map_err(Into::into)
    }
}
