//! The relay's metrics as a recorder sees them: gauges refreshed while it runs, publishes by
//! event type, dead letters, claim batch sizes. One test, since the recorder is global.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName};
use metrics::{Metadata, Recorder, SharedString, Unit};
use outbox_core::memory::{CollectingPublisher, MemoryStore};
use outbox_core::{Message, PublishError, Relay, RetryPolicy};
use tokio_util::sync::CancellationToken;

/// Every metric's last value (gauges), sum (counters) or number of samples (histograms), by
/// `name{label=value,..}`.
#[derive(Default, Clone)]
struct Capture(Arc<Mutex<BTreeMap<String, f64>>>);

struct Slot {
    name: String,
    values: Capture,
}

impl Slot {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        let mut values = self.values.0.lock().unwrap();
        f(values.entry(self.name.clone()).or_default());
    }
}

impl CounterFn for Slot {
    fn increment(&self, value: u64) {
        self.update(|v| *v += value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| *v = value as f64);
    }
}

impl GaugeFn for Slot {
    fn increment(&self, value: f64) {
        self.update(|v| *v += value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| *v -= value);
    }
    fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }
}

impl HistogramFn for Slot {
    fn record(&self, _value: f64) {
        self.update(|v| *v += 1.0);
    }
}

impl Capture {
    fn slot(&self, key: &Key) -> Arc<Slot> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        Arc::new(Slot {
            name,
            values: self.clone(),
        })
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.0.lock().unwrap().get(name).copied()
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.slot(key))
    }
}

async fn until(what: &str, capture: &Capture, check: impl Fn(&Capture) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check(capture) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            capture.0.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reports_its_outbox_while_it_runs() {
    let capture = Capture::default();
    metrics::set_global_recorder(capture.clone()).unwrap();

    let store = MemoryStore::new();
    // Poison: every attempt at `order.poison` is refused, and one attempt is all it gets.
    let publisher = CollectingPublisher::failing_when(|m| {
        (m.event_type == "order.poison").then(|| PublishError::rejected("no stream takes it"))
    });
    let retry = RetryPolicy::new(
        Duration::from_millis(10),
        Duration::from_millis(10),
        1.0,
        0.0,
        1,
    )
    .unwrap();
    let relay = Relay::builder(store.clone(), publisher.clone())
        .retry_policy(retry)
        .poll_interval(Duration::from_millis(20))
        .gauges(Duration::from_millis(100))
        .build()
        .unwrap();
    let messages = (0..3)
        .map(|n| Message::json("order.created", &n).unwrap().key(n).unwrap())
        .chain([Message::json("order.shipped", &7).unwrap()])
        .chain([Message::json("order.poison", &9).unwrap()]);
    store.enqueue_committed(messages.collect::<Vec<_>>());

    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (relay, stop) = (relay.clone(), stop.clone());
        async move { relay.run(stop.cancelled_owned()).await }
    });
    until("the poison message is dead in the gauges", &capture, |c| {
        c.get("outbox_messages{status=dead}") == Some(1.0)
            && c.get("outbox_messages{status=pending}") == Some(0.0)
    })
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(publisher.published().len(), 4);
    assert_eq!(
        capture.get("outbox_published_total{event_type=order.created}"),
        Some(3.0)
    );
    assert_eq!(
        capture.get("outbox_published_total{event_type=order.shipped}"),
        Some(1.0)
    );
    assert_eq!(
        capture.get("outbox_dead_lettered_total{event_type=order.poison}"),
        Some(1.0)
    );
    assert_eq!(capture.get("outbox_claimed_total"), Some(5.0));
    assert!(capture.get("outbox_claim_batch_size").unwrap_or(0.0) >= 1.0);
    assert!(capture.get("outbox_gauge_refresh_seconds").unwrap_or(0.0) >= 1.0);
    assert_eq!(capture.get("outbox_messages{status=claimed}"), Some(0.0));
    assert_eq!(
        capture.get("outbox_oldest_unpublished_age_seconds"),
        Some(0.0),
        "nothing is left unpublished"
    );
    assert!(
        Relay::builder(store, publisher)
            .gauges(Duration::from_millis(10))
            .build()
            .unwrap_err()
            .to_string()
            .contains("at least 100ms")
    );
}
