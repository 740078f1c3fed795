//! Trace context from enqueue to publish (feature `opentelemetry`): the header enqueue writes,
//! and the parent of the relay's span for each message.

use std::future::Future;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use outbox_core::memory::{CollectingPublisher, MemoryStore};
use outbox_core::sql::{DbError, Dialect, Executor, Query, Rows, Statements, TableName, protocol};
use outbox_core::{Inspect, Message, Relay, TRACEPARENT_HEADER};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Runs `f` inside a new span named `name`; returns what it returned and the span's ids.
fn in_span<T>(name: &'static str, f: impl FnOnce() -> T) -> (T, TraceId, SpanId) {
    let span = tracing::info_span!("request", otel.name = name);
    let out = span.in_scope(f);
    let context = span.context();
    let ids = context.span().span_context().clone();
    (out, ids.trace_id(), ids.span_id())
}

/// An executor that records the headers parameter of every statement it is given.
#[derive(Default)]
struct RecordingExecutor {
    texts: Vec<String>,
}

impl Executor for RecordingExecutor {
    fn fetch(&mut self, query: &Query<'_>) -> impl Future<Output = Result<Rows, DbError>> + Send {
        std::future::ready(Ok(Rows::new(query.columns)))
    }

    fn execute(&mut self, query: &Query<'_>) -> impl Future<Output = Result<u64, DbError>> + Send {
        for param in &query.params {
            match param {
                outbox_core::sql::Param::Text(Some(text)) => self.texts.push((*text).to_owned()),
                outbox_core::sql::Param::TextArray(texts) => {
                    self.texts
                        .extend(texts.iter().flatten().map(|t| (*t).to_owned()));
                }
                _ => {}
            }
        }
        std::future::ready(Ok(1))
    }
}

fn exported(exporter: &InMemorySpanExporter, provider: &SdkTracerProvider) -> Vec<SpanData> {
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_publish_span_is_the_child_of_the_span_that_enqueued_it() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("outbox-test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // A message enqueued inside a traced request carries the request's span as traceparent.
    let store = MemoryStore::new();
    let traced = Message::json("order.created", &serde_json::json!({ "id": 1 }))
        .unwrap()
        .key(1)
        .unwrap();
    let traced_id = traced.id();
    let ((), trace, parent) = in_span("checkout", || {
        let mut tx = store.begin();
        tx.enqueue(traced);
        tx.commit();
    });
    // One enqueued outside any span, and one that brought its own trace context.
    let untraced = Message::json("order.created", &serde_json::json!({ "id": 2 })).unwrap();
    let untraced_id = untraced.id();
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let carried = Message::json("order.created", &serde_json::json!({ "id": 3 }))
        .unwrap()
        .header(TRACEPARENT_HEADER, own)
        .unwrap();
    let carried_id = carried.id();
    let ((), _, _) = in_span("import", || store.enqueue_committed([carried]));
    store.enqueue_committed([untraced]);

    let header = |id| {
        let store = store.clone();
        async move {
            let stored = store.get(id).await.unwrap().unwrap();
            stored.envelope.headers.get(TRACEPARENT_HEADER).cloned()
        }
    };
    assert_eq!(
        header(traced_id).await,
        Some(format!("00-{trace}-{parent}-01")),
        "enqueue did not capture the request's span"
    );
    assert_eq!(header(untraced_id).await, None, "a header without a span");
    assert_eq!(
        header(carried_id).await.as_deref(),
        Some(own),
        "a header was replaced"
    );

    // The SQL path (every adapter's enqueue) writes the same header.
    let statements = Statements::new(Dialect::Postgres, TableName::default());
    let mut recording = RecordingExecutor::default();
    let sql_message = Message::json("order.created", &serde_json::json!({ "id": 4 })).unwrap();
    let (result, sql_trace, sql_parent) = in_span("checkout", || {
        outbox_core::sql::block_on_ready(protocol::enqueue(
            &mut recording,
            &statements,
            usize::MAX,
            std::slice::from_ref(&sql_message),
        ))
    });
    result.unwrap();
    let expected = format!("00-{sql_trace}-{sql_parent}-01");
    assert!(
        recording.texts.iter().any(|t| t.contains(&expected)),
        "the insert's headers lack {expected}: {:?}",
        recording.texts
    );

    // The relay publishes each message under a span whose parent is the producer's span.
    let publisher = CollectingPublisher::new();
    let relay = Relay::builder(store.clone(), publisher.clone())
        .build()
        .unwrap();
    assert_eq!(relay.drain().await.unwrap(), 3);
    let spans = exported(&exporter, &provider);
    let message_span = |id: outbox_core::Uuid| {
        spans
            .iter()
            .find(|s| {
                s.name == "outbox.message"
                    && s.attributes.iter().any(|kv| {
                        kv.key.as_str() == "message_id" && kv.value.as_str() == id.to_string()
                    })
            })
            .unwrap_or_else(|| panic!("no outbox.message span for {id}: {spans:#?}"))
    };
    let published = message_span(traced_id);
    assert_eq!(published.span_context.trace_id(), trace, "another trace");
    assert_eq!(published.parent_span_id, parent, "not the producer's child");
    let attribute = |span: &SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(attribute(published, "key").as_deref(), Some("1"));
    assert_eq!(attribute(published, "attempt").as_deref(), Some("1"));
    assert_eq!(
        attribute(published, "event_type").as_deref(),
        Some("order.created")
    );

    let carried_span = message_span(carried_id);
    assert_eq!(
        carried_span.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(carried_span.parent_span_id.to_string(), "b7ad6b7169203331");
    let untraced_span = message_span(untraced_id);
    assert_ne!(untraced_span.span_context.trace_id(), trace);
}
