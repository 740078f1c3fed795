//! One JSON object per line, for the embedded quickstart, logs and files.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use outbox_core::{CONTENT_TYPE_HEADER, Envelope, PublishError, Publisher};
use serde_json::{Map, Value, json};

type Sink = Box<dyn Write + Send>;

/// Writes each message as one JSON line and flushes after every batch.
///
/// The line holds `id`, `event_type`, `key`, `aggregate_type`, `headers`, `created_at_us` and
/// `payload` (inlined as JSON when the content type is JSON, otherwise as a UTF-8 string, or as
/// an array of bytes).
#[derive(Clone)]
pub struct JsonLinesPublisher {
    sink: Arc<Mutex<Sink>>,
}

impl std::fmt::Debug for JsonLinesPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesPublisher").finish_non_exhaustive()
    }
}

impl JsonLinesPublisher {
    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self::to_writer(std::io::stdout())
    }

    /// Writes to any writer, such as a file.
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Self {
            sink: Arc::new(Mutex::new(Box::new(writer))),
        }
    }

    /// The JSON line for one message (without the newline).
    pub fn line(envelope: &Envelope) -> String {
        let payload = decode_payload(envelope);
        let headers: Map<String, Value> = envelope
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let created_at_us = envelope
            .created_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        json!({
            "id": envelope.id.to_string(),
            "event_type": envelope.event_type,
            "key": envelope.partition_key,
            "aggregate_type": envelope.aggregate_type,
            "headers": headers,
            "created_at_us": created_at_us,
            "payload": payload,
        })
        .to_string()
    }
}

fn decode_payload(envelope: &Envelope) -> Value {
    let is_json = envelope
        .headers
        .get(CONTENT_TYPE_HEADER)
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json && let Ok(value) = serde_json::from_slice(&envelope.payload) {
        return value;
    }
    match std::str::from_utf8(&envelope.payload) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::Array(envelope.payload.iter().map(|b| json!(b)).collect()),
    }
}

impl Publisher for JsonLinesPublisher {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let mut text = String::new();
        for envelope in batch {
            text.push_str(&Self::line(envelope));
            text.push('\n');
        }
        let written = {
            let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
            sink.write_all(text.as_bytes()).and_then(|()| sink.flush())
        };
        match written {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            Err(err) => {
                let message = err.to_string();
                batch
                    .iter()
                    .map(|_| Err(PublishError::unavailable(message.clone())))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use outbox_core::Message;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn writes_one_json_line_per_message() {
        let buffer = Buffer::default();
        let publisher = JsonLinesPublisher::to_writer(buffer.clone());
        let a = Message::json("order.created", &json!({"id": 1}))
            .unwrap()
            .key("o-1")
            .unwrap();
        let b = Message::bytes("blob.stored", vec![0xff, 0x00]).unwrap();
        let batch = vec![
            Envelope::from_message(1, &a, SystemTime::now(), 0),
            Envelope::from_message(2, &b, SystemTime::now(), 0),
        ];
        let outcomes = publisher.publish(&batch).await;
        assert!(outcomes.iter().all(Result::is_ok));
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], a.id().to_string());
        assert_eq!(lines[0]["key"], "o-1");
        assert_eq!(lines[0]["payload"]["id"], 1);
        assert_eq!(lines[1]["payload"], json!([255, 0]));
        assert_eq!(lines[1]["key"], Value::Null);
    }
}
