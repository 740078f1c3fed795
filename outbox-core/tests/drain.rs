//! `Relay::drain` runs the configured number of loops, on the in-memory store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::memory::MemoryStore;
use outbox_core::{Envelope, Message, PublishError, Publisher, Relay};

/// A broker that takes `delay` per batch and records how many batches it had at once and what
/// it acknowledged, in order.
#[derive(Clone, Default)]
struct Slow {
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    acked: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Slow {
    fn new(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    fn acked(&self) -> Vec<(String, u64)> {
        self.acked.lock().unwrap().clone()
    }
}

impl Publisher for Slow {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut acked = self.acked.lock().unwrap();
        for env in batch {
            let n = std::str::from_utf8(&env.payload).unwrap().parse().unwrap();
            acked.push((env.partition_key.clone().unwrap(), n));
        }
        batch.iter().map(|_| Ok(())).collect()
    }
}

/// `per_key` messages on each of `keys` keys, numbered in enqueue order per key.
fn keyed(keys: usize, per_key: u64) -> Vec<Message> {
    (0..per_key)
        .flat_map(|n| {
            (0..keys).map(move |k| {
                Message::bytes("order.created", n.to_string())
                    .unwrap()
                    .key(format!("k{k}"))
                    .unwrap()
            })
        })
        .collect()
}

/// Every key's messages were acknowledged once each, in enqueue order.
fn assert_once_in_order(acked: &[(String, u64)], keys: usize, per_key: u64) {
    let mut by_key: HashMap<&str, Vec<u64>> = HashMap::new();
    for (key, n) in acked {
        by_key.entry(key).or_default().push(*n);
    }
    assert_eq!(by_key.len(), keys, "every key is published");
    let expected: Vec<u64> = (0..per_key).collect();
    for (key, seen) in by_key {
        assert_eq!(seen, expected, "key {key}: once each, in enqueue order");
    }
}

/// A relay over `store` and `broker` with `batch` rows a claim and `concurrency` loops.
fn relay(
    store: &MemoryStore,
    broker: &Slow,
    batch: usize,
    concurrency: usize,
) -> Relay<MemoryStore, Slow> {
    Relay::builder(store.clone(), broker.clone())
        .batch_size(batch)
        .concurrency(concurrency)
        .build()
        .unwrap()
}

/// Runs `relay.drain()`; fails if it does not return.
async fn drain(relay: &Relay<MemoryStore, Slow>) -> u64 {
    tokio::time::timeout(Duration::from_secs(30), relay.drain())
        .await
        .expect("drain returns once the outbox is empty")
        .unwrap()
}

#[tokio::test]
async fn drain_publishes_with_the_configured_concurrency() {
    let store = MemoryStore::new();
    store.enqueue_committed(keyed(16, 5));
    let broker = Slow::new(Duration::from_millis(20));
    let published = drain(&relay(&store, &broker, 4, 4)).await;

    assert_eq!(published, 80);
    assert_once_in_order(&broker.acked(), 16, 5);
    let most = broker.most_in_flight.load(Ordering::SeqCst);
    assert!(
        most > 1,
        "drain with concurrency 4 must have more than one batch in flight, had {most}"
    );
    assert!(most <= 4, "no more batches in flight than loops: {most}");
}

#[tokio::test]
async fn drain_of_one_hot_key_waits_for_the_busy_loop_and_finishes() {
    // One key: only one loop can hold it, the others claim nothing while it is busy. They
    // must neither return early (leaving rows behind) nor spin; drain returns when all is
    // published.
    let store = MemoryStore::new();
    store.enqueue_committed(keyed(1, 30));
    let broker = Slow::new(Duration::from_millis(5));
    let relay = relay(&store, &broker, 3, 4);
    let published = drain(&relay).await;

    assert_eq!(published, 30);
    assert_once_in_order(&broker.acked(), 1, 30);
    assert_eq!(drain(&relay).await, 0, "nothing is left for a second drain");
}

#[tokio::test]
async fn drain_with_concurrency_one_runs_one_batch_at_a_time() {
    let store = MemoryStore::new();
    store.enqueue_committed(keyed(8, 3));
    let broker = Slow::new(Duration::from_millis(2));
    assert_eq!(drain(&relay(&store, &broker, 2, 1)).await, 24);
    assert_eq!(broker.most_in_flight.load(Ordering::SeqCst), 1);
    assert_once_in_order(&broker.acked(), 8, 3);
}
