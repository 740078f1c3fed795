//! The relay under publisher faults, on the in-memory store.

use std::time::Duration;

use outbox_core::memory::MemoryStore;
use outbox_core::{Envelope, Error, Message, PublishError, Publisher, Relay, Store};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(60);

fn messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            Message::bytes("order.created", format!("{i}"))
                .unwrap()
                .key(format!("k{i}"))
                .unwrap()
        })
        .collect()
}

/// A broker that is down.
struct Down;

impl Publisher for Down {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        batch
            .iter()
            .map(|_| {
                Err(PublishError::unavailable(
                    "connection refused (127.0.0.1:4222)",
                ))
            })
            .collect()
    }
}

/// A publisher that returns `extra` outcomes more (or fewer) than it was given messages.
struct Miscounts {
    extra: isize,
}

impl Publisher for Miscounts {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let n = batch.len().saturating_add_signed(self.extra);
        (0..n).map(|_| Ok(())).collect()
    }
}

#[tokio::test]
async fn drain_with_the_broker_down_says_the_broker_is_unavailable() {
    let store = MemoryStore::new();
    store.enqueue_committed(messages(3));
    let relay = Relay::builder(store.clone(), Down).build().unwrap();
    let err = relay.drain().await.unwrap_err();
    let Error::BrokerUnavailable { reason } = &err else {
        panic!("a broker outage must not read as a configuration error: {err:?}");
    };
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(err.to_string().contains("nothing is lost"), "{err}");
    let again = store.claim(10, LEASE).await.unwrap();
    assert_eq!(
        again.messages.len(),
        3,
        "the messages are given back, claimable at once"
    );
}

#[tokio::test]
async fn a_publisher_miscounting_its_outcomes_is_a_typed_error_and_nothing_is_settled() {
    for extra in [-1_isize, -3, 1] {
        let store = MemoryStore::new();
        store.enqueue_committed(messages(3));
        let relay = Relay::builder(store.clone(), Miscounts { extra })
            .build()
            .unwrap();
        let err = relay
            .process_batch(&CancellationToken::new())
            .await
            .unwrap_err();
        let returned = 3_usize.saturating_add_signed(extra);
        assert!(
            matches!(
                err,
                Error::PublisherContract { expected: 3, returned: r } if r == returned
            ),
            "{extra:+} outcomes: {err:?}"
        );
        let again = store.claim(10, LEASE).await.unwrap();
        assert_eq!(
            again.messages.len(),
            3,
            "{extra:+} outcomes: no message is acknowledged on an outcome that may be another's, \
             and all are given back at once"
        );
    }
}
