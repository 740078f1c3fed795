//! Trace context across the outbox: with the feature `opentelemetry`, enqueue stamps each
//! message with the current span's W3C trace context (`traceparent`, and `tracestate` when it
//! has one), and the relay's span for publishing that message names it as its parent, so a
//! trace runs from the request that enqueued an event to the broker that acknowledged it,
//! across the commit and the relay's process.
//!
//! The current span's context is read through `tracing-opentelemetry`: the application
//! installs its `OpenTelemetryLayer` as it would for any traced service. Without the feature
//! (or without a span that carries a trace), no header is written. A message that already
//! has a `traceparent` header keeps it.
//!
//! Every publish gets a span per message, `outbox.message`, with the message's id, key, event
//! type and attempt (at `INFO` with the feature, so an OpenTelemetry pipeline filtering at
//! `INFO` keeps it; at `DEBUG` without).

use tracing::Level;

use crate::message::{Envelope, Message};

/// The W3C trace context header that carries the producer's span.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The W3C header that carries vendor trace state beside `traceparent`.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// The level of the per-message publish span.
const MESSAGE_SPAN_LEVEL: Level = if cfg!(feature = "opentelemetry") {
    Level::INFO
} else {
    Level::DEBUG
};

/// The trace context of the current span, as headers: `(traceparent, tracestate)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceHeaders {
    parent: String,
    state: Option<String>,
}

/// The current span's trace context, when the feature is on and the span is traced.
#[cfg(feature = "opentelemetry")]
pub(crate) fn current() -> Option<TraceHeaders> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let context = tracing::Span::current().context();
    let span = context.span();
    let span = span.span_context();
    if !span.is_valid() {
        return None;
    }
    let state = span.trace_state().header();
    Some(TraceHeaders {
        parent: format!(
            "00-{}-{}-{:02x}",
            span.trace_id(),
            span.span_id(),
            span.trace_flags().to_u8()
        ),
        state: (!state.is_empty()).then_some(state),
    })
}

/// The current span's trace context: never, without the feature `opentelemetry`.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn current() -> Option<TraceHeaders> {
    None
}

/// `message`'s headers as stored, with `trace` added unless it carries a trace context already.
pub(crate) fn headers_json(message: &Message, trace: Option<&TraceHeaders>) -> String {
    match trace {
        Some(trace) if !message.headers().contains_key(TRACEPARENT_HEADER) => {
            let mut headers = message.headers().clone();
            add(&mut headers, trace);
            crate::message::encode_headers(&headers)
        }
        _ => message.headers_json(),
    }
}

fn add(headers: &mut crate::message::Headers, trace: &TraceHeaders) {
    headers.insert(TRACEPARENT_HEADER.to_owned(), trace.parent.clone());
    if let Some(state) = &trace.state {
        headers.insert(TRACESTATE_HEADER.to_owned(), state.clone());
    }
}

/// `message` with the current span's trace context, for messages buffered now and written
/// later (a web request's unit of work, the in-memory store), when the span is gone.
pub(crate) fn stamp(mut message: Message) -> Message {
    if message.headers().contains_key(TRACEPARENT_HEADER) {
        return message;
    }
    if let Some(trace) = current() {
        add(message.headers_mut(), &trace);
    }
    message
}

/// One span per message of a publish round, each the child of the trace its message carries.
/// Empty when no subscriber takes spans at that level.
pub(crate) fn message_spans(batch: &[Envelope]) -> Vec<tracing::Span> {
    if !tracing::enabled!(MESSAGE_SPAN_LEVEL) {
        return Vec::new();
    }
    batch
        .iter()
        .map(|m| {
            let span = tracing::span!(
                MESSAGE_SPAN_LEVEL,
                "outbox.message",
                message_id = %m.id,
                key = m.partition_key.as_deref(),
                event_type = %m.event_type,
                attempt = m.attempts + 1,
            );
            #[cfg(feature = "opentelemetry")]
            link_to_producer(&span, m);
            span
        })
        .collect()
}

/// Makes `span` the child of the span that enqueued `message`, from its `traceparent`.
#[cfg(feature = "opentelemetry")]
fn link_to_producer(span: &tracing::Span, message: &Envelope) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let Some(parent) = message.headers.get(TRACEPARENT_HEADER) else {
        return;
    };
    let state = message.headers.get(TRACESTATE_HEADER).map(String::as_str);
    if let Some(remote) = parse_traceparent(parent, state) {
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        // Without the OpenTelemetry layer there is no trace to join: nothing to do.
        let _ = span.set_parent(context);
    }
}

/// A W3C `traceparent` (version 00) as a remote span context; `None` when malformed.
#[cfg(feature = "opentelemetry")]
fn parse_traceparent(
    header: &str,
    state: Option<&str>,
) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = state
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let context = SpanContext::new(trace, span, TraceFlags::new(flags), true, state);
    context.is_valid().then_some(context)
}

#[cfg(all(test, feature = "opentelemetry"))]
mod tests {
    use super::parse_traceparent;

    #[test]
    fn only_well_formed_traceparents_parse() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = parse_traceparent(good, Some("vendor=1")).unwrap();
        assert_eq!(
            parsed.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parsed.is_sampled() && parsed.is_remote());
        assert_eq!(parsed.trace_state().header(), "vendor=1");
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "garbage",
        ] {
            assert!(parse_traceparent(bad, None).is_none(), "{bad}");
        }
    }
}
