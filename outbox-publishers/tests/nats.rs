//! The JetStream publisher against a real NATS server (`OUTBOX_TEST_NATS_URL`, default
//! `127.0.0.1:4222`), and an outage test against a `nats-server` this test starts itself.

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, stream};
use outbox_core::memory::MemoryStore;
use outbox_core::{Envelope, Inspect, Message, PublishError, Publisher, Relay};
use outbox_publishers::{KEY_HEADER, NatsPublisher};

fn nats_url() -> String {
    std::env::var("OUTBOX_TEST_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned())
}

async fn jetstream_context() -> jetstream::Context {
    let url = nats_url();
    let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(&url))
        .await
        .unwrap_or_else(|_| {
            panic!("NATS at {url} did not answer within 10s; start it (see .ci/run)")
        })
        .unwrap_or_else(|e| {
            panic!("NATS is not reachable at {url}: {e}; start nats-server -js (see .ci/run)")
        });
    jetstream::new(client)
}

/// A stream of its own for one test, bound to `<prefix>.>`.
async fn fresh_stream(js: &jetstream::Context) -> (String, stream::Stream) {
    let prefix = format!("outboxtest{:08x}", fastrand::u32(..));
    let stream = js
        .create_stream(stream::Config {
            name: prefix.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("JetStream is not enabled on the NATS server (start it with -js)");
    (prefix, stream)
}

fn envelope(seq: i64, message: &Message) -> Envelope {
    Envelope::from_message(seq, message, SystemTime::now(), 0)
}

#[tokio::test]
async fn publishes_a_batch_with_subjects_ids_and_headers() {
    let js = jetstream_context().await;
    let (prefix, mut stream) = fresh_stream(&js).await;
    let publisher = NatsPublisher::new(js.clone()).subject_prefix(prefix.clone());
    let messages: Vec<Message> = (0..50)
        .map(|n| {
            Message::json("order.created", &serde_json::json!({ "n": n }))
                .unwrap()
                .key(format!("order-{}", n % 5))
                .unwrap()
                .header("tenant", "acme")
                .unwrap()
        })
        .collect();
    let batch: Vec<Envelope> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| envelope(i as i64, m))
        .collect();
    let outcomes = publisher.publish(&batch).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

    assert_eq!(stream.info().await.unwrap().state.messages, 50);
    for (i, message) in messages.iter().enumerate() {
        let stored = stream.get_raw_message(i as u64 + 1).await.unwrap();
        assert_eq!(stored.subject.as_str(), format!("{prefix}.order.created"));
        let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(
            header("Nats-Msg-Id"),
            Some(message.id().to_string()),
            "in publish order"
        );
        assert_eq!(header("tenant").as_deref(), Some("acme"));
        assert_eq!(header(KEY_HEADER).as_deref(), message.partition_key());
        assert_eq!(stored.payload, message.payload());
    }
    js.delete_stream(&prefix).await.unwrap();
}

#[tokio::test]
async fn republishing_the_same_message_is_dropped_by_jetstream() {
    let js = jetstream_context().await;
    let (prefix, mut stream) = fresh_stream(&js).await;
    let publisher = NatsPublisher::new(js.clone()).subject_prefix(prefix.clone());
    let message = Message::json("invoice.paid", &serde_json::json!({"id": 9})).unwrap();
    let batch = vec![envelope(1, &message)];
    for _ in 0..3 {
        let outcomes = publisher.publish(&batch).await;
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
    }
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    js.delete_stream(&prefix).await.unwrap();
}

#[tokio::test]
async fn a_subject_without_a_stream_is_rejected_not_lost() {
    let js = jetstream_context().await;
    let publisher =
        NatsPublisher::new(js).subject_prefix(format!("nostream{:08x}", fastrand::u32(..)));
    let message = Message::json("order.created", &serde_json::json!({})).unwrap();
    let outcomes = publisher.publish(&[envelope(1, &message)]).await;
    match &outcomes[0] {
        Err(PublishError::Rejected(err)) => {
            assert!(err.to_string().contains("no stream"), "{err}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

struct NatsServer {
    child: Child,
    _dir: std::path::PathBuf,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_nats(port: u16) -> NatsServer {
    let dir = std::env::temp_dir().join(format!("outbox-nats-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is not installed (Debian package nats-server); see .ci/run");
    NatsServer { child, _dir: dir }
}

/// Creates the in-memory stream `name` on subjects `name.>` as soon as a server started by
/// this test answers.
async fn stream_once_up(js: &jetstream::Context, name: &str) -> stream::Stream {
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let config = stream::Config {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            storage: stream::StorageType::Memory,
            ..Default::default()
        };
        if let Ok(stream) = js.create_stream(config).await {
            return stream;
        }
    }
    panic!("the NATS server started by this test never came up");
}

/// The broker is down when the relay starts: messages stay in the outbox, no attempt is
/// counted, and everything is published once the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_nats_keeps_messages_pending_until_it_is_back() {
    let port = free_port();
    let url = format!("127.0.0.1:{port}");
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_millis(200))
        .connect(&url)
        .await
        .unwrap();
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(300))
        .build(client);
    let publisher = NatsPublisher::new(js.clone()).subject_prefix("outage");

    let store = MemoryStore::new();
    let messages: Vec<Message> = (0..20)
        .map(|n| {
            Message::json("order.created", &serde_json::json!({ "n": n }))
                .unwrap()
                .key(n % 3)
                .unwrap()
        })
        .collect();
    let ids: HashSet<_> = messages.iter().map(Message::id).collect();
    store.enqueue_committed(messages);
    let relay = Relay::builder(store.clone(), publisher)
        .batch_size(10)
        .poll_interval(Duration::from_millis(50))
        .unavailable_backoff(Duration::from_millis(50), Duration::from_millis(300))
        .build()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let relay = relay.clone();
        let stop = stop.clone();
        async move { relay.run(stop.cancelled_owned()).await }
    });

    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.unpublished(),
        20,
        "messages must wait in the outbox: {stats:?}"
    );
    assert_eq!(
        (stats.failed, stats.dead),
        (0, 0),
        "an outage must not count attempts: {stats:?}"
    );

    let _server = start_nats(port);
    let mut stream = stream_once_up(&js, "outage").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.stats().await.unwrap().unpublished() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog not drained after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();

    let count = stream.info().await.unwrap().state.messages;
    assert_eq!(count, 20, "every message reached the stream exactly once");
    let mut seen = HashSet::new();
    for seq in 1..=count {
        let stored = stream.get_raw_message(seq).await.unwrap();
        let id = stored
            .headers
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert!(ids.contains(&id));
        seen.insert(id);
    }
    assert_eq!(seen.len(), 20);
    assert_eq!(store.stats().await.unwrap().dead, 0);
}

/// `NatsPublisher::connect` starts with the server down, reports it unavailable (not a
/// rejection, so no attempt is counted), and publishes once the server is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_starts_with_the_server_down_and_publishes_once_it_is_up() {
    let port = free_port();
    let url = format!("127.0.0.1:{port}");
    let publisher = tokio::time::timeout(Duration::from_secs(5), NatsPublisher::connect(&url))
        .await
        .expect("connect must not wait for the server")
        .expect("a server that is down is not a connect error");
    let publisher = publisher.subject_prefix("late");
    let msg = Message::json("order.created", &serde_json::json!({})).unwrap();
    let outcomes = publisher.publish(&[envelope(1, &msg)]).await;
    assert!(
        matches!(outcomes.as_slice(), [Err(PublishError::Unavailable(_))]),
        "{outcomes:?}"
    );

    let _server = start_nats(port);
    let mut stream = stream_once_up(publisher.context(), "late").await;
    let outcomes = publisher.publish(&[envelope(1, &msg)]).await;
    assert!(matches!(outcomes.as_slice(), [Ok(())]), "{outcomes:?}");
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}
