//! The conformance cases. Each takes a fresh backend and panics with a message naming the
//! backend when the store breaks its contract.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Backend, Shared, SlowPublisher, Visibility, commit_messages, wait_until};
use crate::memory::CollectingPublisher;
use crate::message::{Envelope, Message};
use crate::publisher::PublishError;
use crate::relay::Relay;
use crate::retry::RetryPolicy;
use crate::status::Status;
use crate::store::{Failure, Filter, Inspect, Purge, Retry, Settled, Settlement, Store};

const LONG: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);

fn msg(event: &str, key: Option<&str>, n: u64) -> Message {
    let m = Message::json(event, &serde_json::json!({ "n": n })).unwrap();
    match key {
        Some(k) => m.key(k).unwrap(),
        None => m,
    }
}

fn ids(envelopes: &[Envelope]) -> Vec<Uuid> {
    envelopes.iter().map(|e| e.id).collect()
}

fn fast_relay<B: Backend, P: crate::Publisher>(
    backend: &B,
    publisher: P,
    batch: usize,
) -> Relay<B::Store, P> {
    Relay::builder(backend.store(), publisher)
        .batch_size(batch)
        .poll_interval(Duration::from_millis(20))
        .lease(LONG)
        .concurrency(2)
        .build()
        .unwrap()
}

/// Runs `relay` in the background until the returned token is cancelled.
fn spawn_relay<S: Store, P: crate::Publisher>(
    relay: Relay<S, P>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<crate::Result<()>>,
) {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let handle = tokio::spawn(async move { relay.run(token.cancelled_owned()).await });
    (stop, handle)
}

async fn stop_relays(
    relays: Vec<(
        CancellationToken,
        tokio::task::JoinHandle<crate::Result<()>>,
    )>,
) {
    for (stop, _) in &relays {
        stop.cancel();
    }
    for (_, handle) in relays {
        handle
            .await
            .expect("relay task panicked")
            .expect("relay returned an error");
    }
}

/// Asserts every id in `expected` was published exactly once.
fn assert_exactly_once(name: &str, published: &[Envelope], expected: &HashSet<Uuid>) {
    let mut seen = HashSet::new();
    for env in published {
        assert!(
            seen.insert(env.id),
            "[{name}] message {} published twice",
            env.id
        );
        assert!(
            expected.contains(&env.id),
            "[{name}] published {} which was never committed",
            env.id
        );
    }
    let missing = expected.len() - seen.len();
    assert_eq!(
        missing, 0,
        "[{name}] {missing} committed messages were not published"
    );
}

/// Asserts that, for every key, published order equals `commit_order[key]`.
fn assert_key_order(name: &str, published: &[Envelope], commit_order: &HashMap<String, Vec<Uuid>>) {
    let mut by_key: HashMap<&str, Vec<Uuid>> = HashMap::new();
    for env in published {
        if let Some(key) = env.partition_key.as_deref() {
            by_key.entry(key).or_default().push(env.id);
        }
    }
    for (key, expected) in commit_order {
        let got = by_key.get(key.as_str()).cloned().unwrap_or_default();
        assert_eq!(
            &got, expected,
            "[{name}] key {key} published out of commit order"
        );
    }
}

/// A committed transaction always publishes; a rolled-back one never does.
pub async fn rolled_back_never_published<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let committed = vec![
        msg("order.created", Some("o-1"), 1),
        msg("order.paid", Some("o-1"), 2),
        msg("audit.logged", None, 3),
    ];
    let expected = committed.iter().map(Message::id).collect::<Vec<_>>();
    commit_messages(&*backend, committed).await.unwrap();

    let mut tx = backend.begin().await.unwrap();
    let doomed = msg("order.created", Some("o-2"), 4);
    let doomed_id = doomed.id();
    backend.enqueue(&mut tx, vec![doomed]).await.unwrap();
    backend.rollback(tx).await.unwrap();

    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 100);
    assert_eq!(relay.drain().await.unwrap(), 3, "[{name}] drain count");
    let published = ids(&publisher.published());
    let mut sorted = published.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "[{name}] published set");
    let order = HashMap::from([("o-1".to_owned(), expected[..2].to_vec())]);
    assert_key_order(&name, &publisher.published(), &order);
    assert!(
        !published.contains(&doomed_id),
        "[{name}] rolled-back message published"
    );
    let stats = backend.store().stats().await.unwrap();
    assert_eq!(stats.unpublished(), 0, "[{name}] rows left: {stats:?}");
    assert!(
        backend.store().get(doomed_id).await.unwrap().is_none(),
        "[{name}] rolled-back row is visible"
    );
}

/// A relay that claimed rows and died without settling them loses them only until its lease
/// expires; then another relay publishes them.
pub async fn expired_claims_are_reclaimed<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let mut order: HashMap<String, Vec<Uuid>> = HashMap::new();
    let mut all = HashSet::new();
    let mut batch = Vec::new();
    for n in 0..20u64 {
        let key = (n % 3 != 0).then(|| format!("k{}", n % 4));
        let m = msg("e", key.as_deref(), n);
        if let Some(k) = key {
            order.entry(k).or_default().push(m.id());
        }
        all.insert(m.id());
        batch.push(m);
    }
    commit_messages(&*backend, batch).await.unwrap();

    let store = backend.store();
    let dead_relay = store.claim(100, Duration::from_millis(300)).await.unwrap();
    assert_eq!(dead_relay.messages.len(), 20, "[{name}] first claim");
    let during = store.claim(100, LONG).await.unwrap();
    assert!(
        during.messages.is_empty(),
        "[{name}] leased rows were claimed twice"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;

    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 100);
    assert_eq!(
        relay.drain().await.unwrap(),
        20,
        "[{name}] reclaimed after expiry"
    );
    let published = publisher.published();
    assert_exactly_once(&name, &published, &all);
    assert_key_order(&name, &published, &order);
    assert!(
        published.iter().all(|e| e.attempts == 0),
        "[{name}] an expired lease must not count as a failed attempt"
    );
}

struct Produced {
    all: HashSet<Uuid>,
    order: HashMap<String, Vec<Uuid>>,
}

/// Runs `producers` tasks, each committing `txs` transactions of `per_tx` messages on keys it
/// owns (plus unkeyed ones), and returns what was committed in commit order per key.
async fn produce<B: Backend>(
    backend: &Shared<B>,
    producers: usize,
    txs: usize,
    per_tx: usize,
) -> Produced {
    let mut tasks = Vec::new();
    for p in 0..producers {
        let backend = Arc::clone(backend);
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(p as u64 + 7);
            let mut committed: Vec<(Option<String>, Uuid)> = Vec::new();
            for t in 0..txs {
                let mut batch = Vec::new();
                for i in 0..per_tx {
                    let key =
                        (!rng.u8(..).is_multiple_of(4)).then(|| format!("p{p}-k{}", rng.u8(..4)));
                    batch.push(msg("load.event", key.as_deref(), (t * per_tx + i) as u64));
                }
                let ids: Vec<_> = batch
                    .iter()
                    .map(|m| (m.partition_key().map(str::to_owned), m.id()))
                    .collect();
                commit_messages(&*backend, batch).await.unwrap();
                committed.extend(ids);
            }
            committed
        }));
    }
    let mut produced = Produced {
        all: HashSet::new(),
        order: HashMap::new(),
    };
    for task in tasks {
        for (key, id) in task.await.unwrap() {
            produced.all.insert(id);
            if let Some(key) = key {
                produced.order.entry(key).or_default().push(id);
            }
        }
    }
    produced
}

/// Four relays on one table while eight producers commit: every message is published, none
/// twice (no lease expires here).
pub async fn four_relays_eight_producers_publish_everything_once<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let publisher = CollectingPublisher::new();
    let relays: Vec<_> = (0..4)
        .map(|_| spawn_relay(fast_relay(&*backend, publisher.clone(), 50)))
        .collect();
    let produced = produce(&backend, 8, 25, 4).await;
    let total = produced.all.len();
    wait_until(
        WAIT,
        &format!("[{name}] all {total} messages published"),
        || {
            let n = publisher.published().len();
            async move { n >= total }
        },
    )
    .await;
    stop_relays(relays).await;
    let published = publisher.published();
    assert_exactly_once(&name, &published, &produced.all);
    assert_key_order(&name, &published, &produced.order);
}

/// Eight producers, four relays and a broker that rejects 20% of publishes at random: for every
/// key the published sequence is exactly the commit order.
pub async fn per_key_order_holds_with_random_failures<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let seed = fastrand::u64(..);
    let rng = Arc::new(std::sync::Mutex::new(fastrand::Rng::with_seed(seed)));
    let publisher = CollectingPublisher::failing_when(move |_| {
        let fail = rng.lock().unwrap().f64() < 0.2;
        fail.then(|| PublishError::rejected("injected failure"))
    });
    let retry = RetryPolicy::new(
        Duration::from_millis(5),
        Duration::from_millis(40),
        2.0,
        0.5,
        1000,
    )
    .unwrap();
    let relays: Vec<_> = (0..4)
        .map(|_| {
            let relay = Relay::builder(backend.store(), publisher.clone())
                .batch_size(40)
                .poll_interval(Duration::from_millis(10))
                .lease(LONG)
                .retry_policy(retry.clone())
                .build()
                .unwrap();
            spawn_relay(relay)
        })
        .collect();
    let produced = produce(&backend, 8, 20, 3).await;
    let total = produced.all.len();
    wait_until(
        WAIT,
        &format!("[{name}] all {total} messages published (seed {seed})"),
        || {
            let n = publisher.published().len();
            async move { n >= total }
        },
    )
    .await;
    stop_relays(relays).await;
    let published = publisher.published();
    assert_exactly_once(&format!("{name} seed {seed}"), &published, &produced.all);
    assert_key_order(&format!("{name} seed {seed}"), &published, &produced.order);
    let failures = publisher.attempts().len() - published.len();
    assert!(
        failures > 0,
        "[{name}] the failing broker never failed (seed {seed})"
    );
}

/// A message that always fails blocks its own key only; it goes dead after the last attempt
/// with its error kept, and then its key moves on.
pub async fn poison_message_blocks_only_its_key<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let poison = msg("e", Some("A"), 0).header("poison", "1").unwrap();
    let poison_id = poison.id();
    let mut batch = vec![poison];
    let a_rest: Vec<Message> = (1..4).map(|n| msg("e", Some("A"), n)).collect();
    let a_ids = a_rest.iter().map(Message::id).collect::<Vec<_>>();
    batch.extend(a_rest);
    let others: Vec<Message> = (0..5)
        .map(|n| msg("e", Some("B"), n))
        .chain((0..5).map(|n| msg("e", None, n)))
        .collect();
    let other_ids: HashSet<Uuid> = others.iter().map(Message::id).collect();
    batch.extend(others);
    commit_messages(&*backend, batch).await.unwrap();

    let publisher = CollectingPublisher::failing_when(|env| {
        env.headers
            .contains_key("poison")
            .then(|| PublishError::rejected("consumer schema rejects this payload"))
    });
    let retry = RetryPolicy::new(
        Duration::from_millis(400),
        Duration::from_secs(2),
        2.0,
        0.0,
        3,
    )
    .unwrap();
    let relay = Relay::builder(backend.store(), publisher.clone())
        .batch_size(100)
        .poll_interval(Duration::from_millis(20))
        .retry_policy(retry)
        .build()
        .unwrap();
    let started = Instant::now();
    let running = spawn_relay(relay);

    wait_until(
        Duration::from_secs(10),
        &format!("[{name}] key B and unkeyed published"),
        || {
            let done = publisher
                .published()
                .iter()
                .filter(|e| other_ids.contains(&e.id))
                .count();
            async move { done == 10 }
        },
    )
    .await;
    let blocked_for = started.elapsed();
    assert!(
        blocked_for < Duration::from_millis(1000),
        "[{name}] other keys waited {blocked_for:?} behind the poison message"
    );
    assert!(
        !publisher.published().iter().any(|e| a_ids.contains(&e.id)),
        "[{name}] key A overtook its failing head"
    );

    let store = backend.store();
    wait_until(WAIT, &format!("[{name}] poison message dead"), || {
        let store = store.clone();
        async move { store.stats().await.unwrap().dead == 1 }
    })
    .await;
    wait_until(
        WAIT,
        &format!("[{name}] key A resumes after its dead head"),
        || {
            let n = publisher.published().len();
            async move { n == 13 }
        },
    )
    .await;
    stop_relays(vec![running]).await;

    let dead = store.get(poison_id).await.unwrap().expect("dead row kept");
    assert_eq!(dead.status, Status::Dead, "[{name}] poison status");
    assert_eq!(dead.envelope.attempts, 3, "[{name}] poison attempts");
    assert!(
        dead.last_error
            .as_deref()
            .is_some_and(|e| e.contains("consumer schema rejects")),
        "[{name}] last error kept: {:?}",
        dead.last_error
    );
    let a_published: Vec<Uuid> = publisher
        .published()
        .iter()
        .filter(|e| e.partition_key.as_deref() == Some("A"))
        .map(|e| e.id)
        .collect();
    assert_eq!(
        a_published, a_ids,
        "[{name}] key A order after the dead head"
    );
}

/// Attempt times follow the policy: each wait at least the policy's delay, growing, and no
/// tight retry loop.
pub async fn backoff_grows_per_policy<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let m = msg("e", Some("k"), 0);
    let id = m.id();
    commit_messages(&*backend, vec![m]).await.unwrap();
    let publisher =
        CollectingPublisher::failing_when(|_| Some(PublishError::rejected("always fails")));
    let retry = RetryPolicy::new(
        Duration::from_millis(150),
        Duration::from_secs(5),
        2.0,
        0.0,
        4,
    )
    .unwrap();
    let relay = Relay::builder(backend.store(), publisher.clone())
        .poll_interval(Duration::from_millis(10))
        .retry_policy(retry.clone())
        .build()
        .unwrap();
    let running = spawn_relay(relay);
    let store = backend.store();
    wait_until(
        WAIT,
        &format!("[{name}] message dead after 4 attempts"),
        || {
            let store = store.clone();
            async move { store.stats().await.unwrap().dead == 1 }
        },
    )
    .await;
    stop_relays(vec![running]).await;
    let attempts: Vec<Instant> = publisher
        .attempts()
        .into_iter()
        .filter(|(a, _)| *a == id)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(attempts.len(), 4, "[{name}] attempts made");
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let expected = retry.base_delay(i as u32 + 1);
        assert!(
            *gap >= expected.mul_f64(0.9),
            "[{name}] retry {} came after {gap:?}, policy says {expected:?}",
            i + 1
        );
    }
    assert!(gaps[2] > gaps[0], "[{name}] backoff did not grow: {gaps:?}");
}

/// Three rows of one key claimed with a short lease that runs out (`stale`), then claimed
/// again by another relay (`fresh`).
async fn stale_and_fresh_claims<B: Backend>(
    backend: &B,
) -> (B::Store, crate::store::Claim, crate::store::Claim) {
    let name = backend.name();
    let batch: Vec<Message> = (0..3).map(|n| msg("e", Some("k"), n)).collect();
    commit_messages(backend, batch).await.unwrap();
    let store = backend.store();
    let stale = store.claim(10, Duration::from_millis(200)).await.unwrap();
    assert_eq!(stale.messages.len(), 3, "[{name}] first claim");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let fresh = store.claim(10, LONG).await.unwrap();
    assert_eq!(fresh.messages.len(), 3, "[{name}] reclaim after expiry");
    assert_ne!(stale.token, fresh.token, "[{name}] tokens must differ");
    (store, stale, fresh)
}

/// A relay whose lease expired cannot ack, fail or release rows that another relay has since
/// claimed.
pub async fn fencing_refuses_stale_settlements<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let (store, stale, fresh) = stale_and_fresh_claims(&*backend).await;
    let seqs: Vec<i64> = stale.messages.iter().map(|m| m.seq).collect();

    assert_eq!(
        store.ack(stale.token, &seqs).await.unwrap(),
        0,
        "[{name}] stale ack"
    );
    let failures: Vec<Failure> = seqs
        .iter()
        .map(|&seq| Failure {
            seq,
            error: "late".into(),
            retry_after: None,
        })
        .collect();
    assert_eq!(
        store.fail(stale.token, &failures).await.unwrap(),
        0,
        "[{name}] stale fail"
    );
    assert_eq!(
        store.release(stale.token, &seqs).await.unwrap(),
        0,
        "[{name}] stale release"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.claimed, stats.dead),
        (3, 0),
        "[{name}] rows untouched: {stats:?}"
    );

    assert_eq!(
        store.ack(fresh.token, &seqs).await.unwrap(),
        3,
        "[{name}] owner's ack"
    );
    assert_eq!(
        store.stats().await.unwrap().unpublished(),
        0,
        "[{name}] drained"
    );
}

/// The relay settles a whole claim with one `settle` call: a relay whose lease expired and
/// whose rows were claimed again changes nothing with it, and the owner's settle lands.
pub async fn fencing_refuses_a_stale_settle<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let (store, stale, fresh) = stale_and_fresh_claims(&*backend).await;
    let seqs: Vec<i64> = fresh.messages.iter().map(|m| m.seq).collect();
    let settlement = |dead: bool| Settlement {
        published: vec![seqs[0]],
        failed: vec![Failure {
            seq: seqs[1],
            error: "broker said no".into(),
            retry_after: (!dead).then_some(Duration::from_secs(60)),
        }],
        released: vec![seqs[2]],
    };

    let settled = store.settle(stale.token, &settlement(true)).await.unwrap();
    assert_eq!(
        settled,
        Settled::default(),
        "[{name}] stale settle changed rows"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.claimed,
            stats.dead,
            stats.published,
            stats.unpublished()
        ),
        (3, 0, 0, 3),
        "[{name}] rows untouched by the stale settle: {stats:?}"
    );

    let settled = store.settle(fresh.token, &settlement(false)).await.unwrap();
    assert_eq!(
        settled,
        Settled {
            published: 1,
            failed: 1,
            released: 1
        },
        "[{name}] owner's settle"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.failed, stats.claimed, stats.dead),
        (1, 1, 0, 0),
        "[{name}] after the owner's settle: {stats:?}"
    );
    let failed = store.get(fresh.messages[1].id).await.unwrap().unwrap();
    assert_eq!(failed.status, Status::Failed, "[{name}] failed row");
    assert_eq!(
        failed.last_error.as_deref(),
        Some("broker said no"),
        "[{name}]"
    );
}

/// Ids are taken at insert but rows become visible at commit. A transaction holding a lower id
/// that commits after one holding a higher id is neither skipped nor allowed to overtake.
pub async fn sequence_visibility_skips_nothing<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let store = backend.store();
    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 100);

    let early = vec![msg("e", Some("K"), 1), msg("e", None, 2)];
    let late = vec![msg("e", Some("K"), 3), msg("e", None, 4)];
    let early_ids: Vec<Uuid> = early.iter().map(Message::id).collect();
    let late_ids: Vec<Uuid> = late.iter().map(Message::id).collect();

    match backend.visibility() {
        Visibility::Unordered => {
            // `early` takes the lower ids but commits last.
            let mut tx_early = backend.begin().await.unwrap();
            backend.enqueue(&mut tx_early, early).await.unwrap();
            let mut tx_late = backend.begin().await.unwrap();
            backend.enqueue(&mut tx_late, late).await.unwrap();
            backend.commit(tx_late).await.unwrap();

            // The later commit is claimed first and held in flight...
            let in_flight = store.claim(100, LONG).await.unwrap();
            assert_eq!(ids(&in_flight.messages), late_ids, "[{name}] first claim");
            backend.commit(tx_early).await.unwrap();
            // ...so the key's older-id row, now visible, must wait for it; the unkeyed row
            // need not.
            let second = store.claim(100, LONG).await.unwrap();
            assert_eq!(
                ids(&second.messages),
                vec![early_ids[1]],
                "[{name}] key K overtook its in-flight message"
            );
            let seqs: Vec<i64> = in_flight.messages.iter().map(|m| m.seq).collect();
            store.ack(in_flight.token, &seqs).await.unwrap();
            let seqs: Vec<i64> = second.messages.iter().map(|m| m.seq).collect();
            store.ack(second.token, &seqs).await.unwrap();
            assert_eq!(relay.drain().await.unwrap(), 1, "[{name}] the held row");
            assert_eq!(
                ids(&publisher.published()),
                vec![early_ids[0]],
                "[{name}] last row"
            );
        }
        Visibility::KeySerialized => {
            // Different keys: the lower ids commit last and are still published.
            let other = vec![msg("e", Some("other"), 3), msg("e", None, 4)];
            let mut expected: Vec<Uuid> = other.iter().map(Message::id).collect();
            expected.extend(&early_ids);
            drop(late);
            let mut tx_early = backend.begin().await.unwrap();
            backend.enqueue(&mut tx_early, early).await.unwrap();
            commit_messages(&*backend, other).await.unwrap();
            assert_eq!(relay.drain().await.unwrap(), 2, "[{name}] the later commit");
            backend.commit(tx_early).await.unwrap();
            assert_eq!(
                relay.drain().await.unwrap(),
                2,
                "[{name}] lower ids committed last"
            );
            let mut got = ids(&publisher.published());
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "[{name}] nothing skipped");

            // The same key: the second transaction waits for the first, so its id is higher.
            let mut tx_first = backend.begin().await.unwrap();
            let first = msg("e", Some("K"), 5);
            let first_id = first.id();
            backend.enqueue(&mut tx_first, vec![first]).await.unwrap();
            let second = msg("e", Some("K"), 6);
            let second_id = second.id();
            let waiting = tokio::spawn({
                let backend = Arc::clone(&backend);
                async move { commit_messages(&*backend, vec![second]).await }
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !waiting.is_finished(),
                "[{name}] same-key transactions did not serialize"
            );
            backend.commit(tx_first).await.unwrap();
            waiting.await.unwrap().unwrap();
            let before = publisher.published().len();
            assert_eq!(relay.drain().await.unwrap(), 2, "[{name}] same-key pair");
            assert_eq!(
                ids(&publisher.published()[before..]),
                vec![first_id, second_id],
                "[{name}] same-key commit order"
            );

            // Batches too: one holding the key waits for the open transaction, whichever of
            // its keys comes first.
            let mut tx_first = backend.begin().await.unwrap();
            let first = vec![msg("e", Some("K"), 7), msg("e", Some("a"), 8)];
            let first_id = first[0].id();
            backend.enqueue(&mut tx_first, first).await.unwrap();
            let second = vec![msg("e", Some("b"), 9), msg("e", Some("K"), 10)];
            let second_id = second[1].id();
            let waiting = tokio::spawn({
                let backend = Arc::clone(&backend);
                async move { commit_messages(&*backend, second).await }
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !waiting.is_finished(),
                "[{name}] same-key batches did not serialize"
            );
            backend.commit(tx_first).await.unwrap();
            waiting.await.unwrap().unwrap();
            let before = publisher.published().len();
            assert_eq!(relay.drain().await.unwrap(), 4, "[{name}] same-key batches");
            let key_k: Vec<Uuid> = publisher.published()[before..]
                .iter()
                .filter(|e| e.partition_key.as_deref() == Some("K"))
                .map(|e| e.id)
                .collect();
            assert_eq!(
                key_k,
                vec![first_id, second_id],
                "[{name}] same-key batch commit order"
            );
        }
        Visibility::InOrder => {
            // Ids follow commit order by construction. Check nothing is skipped when a relay
            // drains between commits.
            commit_messages(&*backend, late).await.unwrap();
            assert_eq!(relay.drain().await.unwrap(), 2, "[{name}] first commit");
            commit_messages(&*backend, early).await.unwrap();
            assert_eq!(relay.drain().await.unwrap(), 2, "[{name}] second commit");
            let mut expected = late_ids;
            expected.extend(early_ids);
            assert_eq!(
                ids(&publisher.published()),
                expected,
                "[{name}] commit order"
            );
        }
    }
    assert_eq!(
        store.stats().await.unwrap().unpublished(),
        0,
        "[{name}] nothing left"
    );
}

/// Shutdown returns promptly, leaves no row leased, and loses nothing.
pub async fn graceful_shutdown_loses_nothing<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let batch: Vec<Message> = (0..300u64)
        .map(|n| msg("e", (n % 2 == 0).then_some("k"), n))
        .collect();
    let all: HashSet<Uuid> = batch.iter().map(Message::id).collect();
    commit_messages(&*backend, batch).await.unwrap();

    let publisher = CollectingPublisher::new();
    let slow = SlowPublisher::new(publisher.clone(), Duration::from_millis(15));
    let relay = Relay::builder(backend.store(), slow)
        .batch_size(100)
        .lease(LONG)
        .build()
        .unwrap();
    let (stop, handle) = spawn_relay(relay);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let asked = Instant::now();
    stop.cancel();
    handle.await.unwrap().unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "[{name}] shutdown took {took:?}"
    );
    let stats = backend.store().stats().await.unwrap();
    assert_eq!(stats.claimed, 0, "[{name}] leases left behind: {stats:?}");
    let first = publisher.published().len();
    assert!(
        first < 300,
        "[{name}] shutdown came too late to test anything"
    );

    let relay = fast_relay(&*backend, publisher.clone(), 100);
    relay.drain().await.unwrap();
    assert_exactly_once(&name, &publisher.published(), &all);
}

/// The head of a key, claimed by one relay, blocks the rest of that key for every other relay
/// (the `SKIP LOCKED` trap), while unkeyed rows stay free.
pub async fn busy_head_blocks_its_key<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let keyed: Vec<Message> = (0..5).map(|n| msg("e", Some("K"), n)).collect();
    let keyed_ids: Vec<Uuid> = keyed.iter().map(Message::id).collect();
    let free: Vec<Message> = (0..3).map(|n| msg("e", None, n)).collect();
    let free_ids: Vec<Uuid> = free.iter().map(Message::id).collect();
    let mut batch = keyed;
    batch.extend(free);
    commit_messages(&*backend, batch).await.unwrap();

    let store = backend.store();
    let first = store.claim(1, LONG).await.unwrap();
    assert_eq!(
        ids(&first.messages),
        vec![keyed_ids[0]],
        "[{name}] head claim"
    );
    let second = store.claim(100, LONG).await.unwrap();
    assert_eq!(
        ids(&second.messages),
        free_ids,
        "[{name}] key K claimed behind its busy head"
    );
    let seqs: Vec<i64> = second.messages.iter().map(|m| m.seq).collect();
    store.ack(second.token, &seqs).await.unwrap();
    store
        .ack(first.token, &[first.messages[0].seq])
        .await
        .unwrap();
    let third = store.claim(100, LONG).await.unwrap();
    assert_eq!(
        ids(&third.messages),
        keyed_ids[1..].to_vec(),
        "[{name}] rest of key K"
    );
}

/// One key with a deep backlog is claimed many rows at a time, in order.
pub async fn hot_key_claims_many_rows_in_order<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let batch: Vec<Message> = (0..300).map(|n| msg("e", Some("hot"), n)).collect();
    let expected: Vec<Uuid> = batch.iter().map(Message::id).collect();
    commit_messages(&*backend, batch).await.unwrap();
    let store = backend.store();
    let claim = store.claim(100, LONG).await.unwrap();
    assert_eq!(
        ids(&claim.messages),
        expected[..100].to_vec(),
        "[{name}] hot key claim"
    );
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    store.release(claim.token, &seqs).await.unwrap();

    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 100);
    assert_eq!(relay.drain().await.unwrap(), 300, "[{name}] drained");
    assert_eq!(
        ids(&publisher.published()),
        expected,
        "[{name}] hot key order"
    );
}

/// A delayed message is not claimed before it is due.
pub async fn delayed_delivery_waits<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let m = msg("e", None, 0).deliver_after(Duration::from_millis(500));
    let id = m.id();
    commit_messages(&*backend, vec![m]).await.unwrap();
    let store = backend.store();
    let early = store.claim(10, LONG).await.unwrap();
    assert!(
        early.messages.is_empty(),
        "[{name}] delayed message claimed early"
    );
    tokio::time::sleep(Duration::from_millis(650)).await;
    let due = store.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&due.messages), vec![id], "[{name}] due message");
}

/// A dead message is kept, and an operator's retry makes it publishable again.
pub async fn dead_messages_can_be_retried<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let m = msg("e", Some("k"), 0);
    let id = m.id();
    commit_messages(&*backend, vec![m]).await.unwrap();
    let store = backend.store();
    let claim = store.claim(10, LONG).await.unwrap();
    let failure = Failure {
        seq: claim.messages[0].seq,
        error: "gave up".into(),
        retry_after: None,
    };
    assert_eq!(
        store.fail(claim.token, &[failure]).await.unwrap(),
        1,
        "[{name}] fail"
    );
    assert_eq!(
        store.get(id).await.unwrap().unwrap().status,
        Status::Dead,
        "[{name}]"
    );
    assert!(
        store.claim(10, LONG).await.unwrap().messages.is_empty(),
        "[{name}] dead claimed"
    );

    assert_eq!(
        store.retry_dead(Some(Uuid::now_v7())).await.unwrap(),
        0,
        "[{name}] wrong id"
    );
    assert_eq!(
        store.retry_dead(Some(id)).await.unwrap(),
        1,
        "[{name}] retry"
    );
    let revived = store.get(id).await.unwrap().unwrap();
    assert_eq!(revived.status, Status::Pending, "[{name}] revived status");
    assert_eq!(revived.envelope.attempts, 0, "[{name}] attempts reset");
    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 10);
    assert_eq!(
        relay.drain().await.unwrap(),
        1,
        "[{name}] revived message published"
    );
    assert_eq!(ids(&publisher.published()), vec![id], "[{name}]");
}

/// A relay that stalls mid-batch (a slow broker, a paused process) publishes no round once
/// most of its lease is gone: the rest of the batch is given back, not published behind the
/// back of a relay that may have claimed it since.
pub async fn stalled_relay_stops_publishing_before_its_lease_ends<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let batch: Vec<Message> = (0..3).map(|n| msg("e", Some("a"), n)).collect();
    let order: Vec<Uuid> = batch.iter().map(Message::id).collect();
    commit_messages(&*backend, batch).await.unwrap();

    // Three messages of one key make three rounds; the first round outlasts three quarters
    // of the lease, so the second must not start.
    let stalled = CollectingPublisher::new();
    let relay = Relay::builder(
        backend.store(),
        SlowPublisher::new(stalled.clone(), Duration::from_millis(500)),
    )
    .batch_size(10)
    .lease(Duration::from_millis(600))
    .build()
    .unwrap();
    let report = relay
        .process_batch(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.claimed, 3, "[{name}] claimed");
    assert!(report.lease_expired, "[{name}] lease_expired not reported");
    assert_eq!(
        ids(&stalled.published()),
        order[..1],
        "[{name}] the stalled relay published past its lease"
    );
    assert_eq!(report.published, 1, "[{name}] first round acknowledged");

    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 10);
    assert_eq!(
        relay.drain().await.unwrap(),
        2,
        "[{name}] the given-back rows are published by the next relay"
    );
    assert_eq!(
        ids(&publisher.published()),
        order[1..],
        "[{name}] key order"
    );
}

/// `list` pages through messages in sequence order, filtered by status.
pub async fn list_pages_in_sequence_order_by_status<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let messages: Vec<Message> = (0..5).map(|n| msg("e", None, n)).collect();
    let all: Vec<Uuid> = messages.iter().map(Message::id).collect();
    commit_messages(&*backend, messages).await.unwrap();
    let store = backend.store();
    let claim = store.claim(2, LONG).await.unwrap();
    assert_eq!(ids(&claim.messages), all[..2], "[{name}] claim");
    let dead = Failure {
        seq: claim.messages[0].seq,
        error: "refused".into(),
        retry_after: None,
    };
    assert_eq!(
        store.fail(claim.token, &[dead]).await.unwrap(),
        1,
        "[{name}] fail"
    );

    let listed = |status: Option<Status>, after, limit| {
        let store = store.clone();
        async move {
            let filter = status.map_or_else(Filter::all, Filter::status);
            let page: Vec<_> = store.list(&filter, after, limit).await.unwrap();
            page.iter().map(|m| m.envelope.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(None, 0, 10).await, all, "[{name}] everything");
    assert_eq!(
        listed(Some(Status::Dead), 0, 10).await,
        all[..1],
        "[{name}] dead"
    );
    assert_eq!(
        listed(Some(Status::Claimed), 0, 10).await,
        all[1..2],
        "[{name}] claimed"
    );
    assert_eq!(
        listed(Some(Status::Failed), 0, 10).await,
        Vec::<Uuid>::new(),
        "[{name}] failed"
    );
    assert_eq!(
        listed(Some(Status::Pending), 0, 2).await,
        all[2..4],
        "[{name}] first page"
    );
    let page = store
        .list(&Filter::status(Status::Pending), 0, 2)
        .await
        .unwrap();
    let after = page.last().unwrap().envelope.seq;
    assert_eq!(
        listed(Some(Status::Pending), after, 2).await,
        all[4..],
        "[{name}] next page"
    );
    let dead = store
        .list(&Filter::status(Status::Dead), 0, 10)
        .await
        .unwrap();
    assert_eq!(dead[0].status, Status::Dead, "[{name}]");
    assert_eq!(dead[0].last_error.as_deref(), Some("refused"), "[{name}]");
}

/// What operators see and repair: counts and lists by status, key and event type, counts per
/// event type, live claims, retry of one message or of dead ones by event type in batches,
/// and purge of dead messages by age.
pub async fn operators_filter_retry_and_purge<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let shape = [
        ("e1", Some("a")),
        ("e1", Some("a")),
        ("e2", Some("b")),
        ("e2", Some("b")),
        ("e1", None),
        ("e2", None),
    ];
    let messages: Vec<Message> = shape
        .iter()
        .zip(0..)
        .map(|((event, key), n)| msg(event, *key, n))
        .collect();
    let m: Vec<Uuid> = messages.iter().map(Message::id).collect();
    commit_messages(&*backend, messages).await.unwrap();
    let store = backend.store();

    // m0, m2 and m4 die; m5 waits an hour for its retry; m1 and m3 go back pending.
    let claim = store.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&claim.messages), m, "[{name}] claim");
    let seq = |n: usize| claim.messages[n].seq;
    let failure = |n: usize, retry_after| Failure {
        seq: seq(n),
        error: format!("refused {n}"),
        retry_after,
    };
    let failures = [
        failure(0, None),
        failure(2, None),
        failure(4, None),
        failure(5, Some(Duration::from_secs(3600))),
    ];
    assert_eq!(
        store.fail(claim.token, &failures).await.unwrap(),
        4,
        "[{name}]"
    );
    assert_eq!(
        store.release(claim.token, &[seq(1), seq(3)]).await.unwrap(),
        2,
        "[{name}]"
    );
    assert!(
        store.claims().await.unwrap().is_empty(),
        "[{name}] claims left"
    );

    let count = |filter: Filter| {
        let store = store.clone();
        async move { store.count(&filter).await.unwrap() }
    };
    assert_eq!(count(Filter::all()).await, 6, "[{name}] all");
    assert_eq!(
        count(Filter::status(Status::Dead)).await,
        3,
        "[{name}] dead"
    );
    assert_eq!(
        count(Filter::status(Status::Dead).event_type("e1")).await,
        2,
        "[{name}] dead e1"
    );
    assert_eq!(count(Filter::all().key("a")).await, 2, "[{name}] key a");
    assert_eq!(
        count(Filter::status(Status::Failed)).await,
        1,
        "[{name}] failed"
    );
    let listed = |filter: Filter| {
        let store = store.clone();
        async move {
            let page = store.list(&filter, 0, 10).await.unwrap();
            page.iter().map(|m| m.envelope.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(Filter::status(Status::Dead).event_type("e1")).await,
        [m[0], m[4]],
        "[{name}] list dead e1"
    );
    assert_eq!(
        listed(Filter::all().key("b")).await,
        [m[2], m[3]],
        "[{name}] list b"
    );
    assert_eq!(
        listed(Filter::status(Status::Pending).key("b").event_type("e1")).await,
        Vec::<Uuid>::new(),
        "[{name}] nothing passes every filter"
    );

    let types = store.event_types().await.unwrap();
    let summary: Vec<_> = types
        .iter()
        .map(|t| (t.event_type.as_str(), t.unpublished, t.dead))
        .collect();
    assert_eq!(
        summary,
        [("e1", 1, 2), ("e2", 2, 1)],
        "[{name}] event types"
    );
    assert!(
        types.iter().all(|t| t.oldest_unpublished_age.is_some()),
        "[{name}] {types:?}"
    );

    // m1 and m3 head their keys now that the heads are dead; m5 is not due.
    let live = store.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&live.messages), [m[1], m[3]], "[{name}] second claim");
    let claims = store.claims().await.unwrap();
    assert_eq!(claims.len(), 1, "[{name}] {claims:?}");
    assert_eq!(claims[0].token, live.token, "[{name}]");
    assert_eq!(claims[0].messages, 2, "[{name}]");
    assert!(
        claims[0].expires_in <= LONG && claims[0].expires_in > LONG / 2,
        "[{name}] {claims:?}"
    );
    assert_eq!(
        store.retry(&Retry::Message(m[1]), 100).await.unwrap(),
        0,
        "[{name}] a claimed message was retried"
    );
    let seqs: Vec<i64> = live.messages.iter().map(|m| m.seq).collect();
    store.release(live.token, &seqs).await.unwrap();

    assert_eq!(
        store.retry(&Retry::Message(m[5]), 100).await.unwrap(),
        1,
        "[{name}] retry of a message waiting for its attempt"
    );
    let now_due = store.get(m[5]).await.unwrap().unwrap();
    assert_eq!(
        (now_due.status, now_due.envelope.attempts),
        (Status::Pending, 0),
        "[{name}]"
    );
    assert_eq!(
        store
            .retry(&Retry::Message(Uuid::now_v7()), 100)
            .await
            .unwrap(),
        0,
        "[{name}] unknown id"
    );
    let dead_e1 = Retry::Dead {
        event_type: Some("e1".into()),
        key: None,
    };
    assert_eq!(
        store.retry(&dead_e1, 1).await.unwrap(),
        1,
        "[{name}] batch 1"
    );
    assert_eq!(
        store.retry(&dead_e1, 1).await.unwrap(),
        1,
        "[{name}] batch 2"
    );
    assert_eq!(
        store.retry(&dead_e1, 1).await.unwrap(),
        0,
        "[{name}] batch 3"
    );
    assert_eq!(
        listed(Filter::status(Status::Dead)).await,
        [m[2]],
        "[{name}] only e2's dead message is left"
    );

    let old_dead = |older_than| Purge::Dead {
        older_than,
        event_type: None,
    };
    assert_eq!(
        store
            .purge(&old_dead(Duration::from_secs(3600)), 100)
            .await
            .unwrap(),
        0,
        "[{name}] purged a young dead message"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        store
            .purge(&old_dead(Duration::from_millis(1)), 100)
            .await
            .unwrap(),
        1,
        "[{name}] purge"
    );
    assert!(
        store.get(m[2]).await.unwrap().is_none(),
        "[{name}] purged row"
    );

    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 10);
    assert_eq!(relay.drain().await.unwrap(), 5, "[{name}] drain");
    let mut published = ids(&publisher.published());
    published.sort();
    let mut expected = vec![m[0], m[1], m[3], m[4], m[5]];
    expected.sort();
    assert_eq!(published, expected, "[{name}] published");
}

/// `renew` extends a live lease, and refuses one that ran out, one another relay holds now,
/// a wrong token, and rows that are not the claim's.
pub async fn leases_are_renewed_only_while_they_hold<B: Backend>(backend: Shared<B>) {
    let name = backend.name();
    let batch: Vec<Message> = (0..3).map(|n| msg("e", Some("k"), n)).collect();
    commit_messages(&*backend, batch).await.unwrap();
    let store = backend.store();
    // Long enough that a claim right after a renewal finishes inside the lease on a loaded
    // machine, short enough to outlive by renewals.
    let short = Duration::from_secs(2);
    let claim = store.claim(10, short).await.unwrap();
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs.len(), 3, "[{name}] first claim");
    assert!(
        store.renew(claim.token, &seqs, short).await.unwrap(),
        "[{name}] a live lease was not renewed"
    );
    assert!(
        !store
            .renew(crate::store::LeaseToken(claim.token.0 ^ 1), &seqs, short)
            .await
            .unwrap(),
        "[{name}] a wrong token renewed the lease"
    );
    let mut more = seqs.clone();
    more.push(seqs[2] + 1_000_000);
    assert!(
        !store.renew(claim.token, &more, short).await.unwrap(),
        "[{name}] rows outside the claim were renewed"
    );
    // Renewed every 500 ms, the 2 s lease holds for 3 s.
    let mut renewed = std::time::Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = std::time::Instant::now();
        assert!(
            store.renew(claim.token, &seqs, short).await.unwrap(),
            "[{name}] a renewed lease ran out early: renewed again {:?} after the last \
             renewal was sent, answered after {:?}",
            sent - renewed,
            sent.elapsed()
        );
        renewed = sent;
        assert!(
            store.claim(10, LONG).await.unwrap().is_empty(),
            "[{name}] rows under a renewed lease were claimed again, {:?} after the renewal \
             was sent",
            renewed.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert!(
        !store.renew(claim.token, &seqs, LONG).await.unwrap(),
        "[{name}] a lease that ran out was renewed"
    );
    let next = store.claim(10, LONG).await.unwrap();
    assert_eq!(next.messages.len(), 3, "[{name}] reclaim after expiry");
    assert!(
        !store.renew(claim.token, &seqs, LONG).await.unwrap(),
        "[{name}] a lease another relay holds was renewed"
    );
    assert!(
        store.renew(next.token, &seqs, LONG).await.unwrap(),
        "[{name}] the new owner's renewal"
    );
}

/// A relay publishing a batch for longer than the heartbeat lease keeps its rows: no other
/// relay claims them while it lives, and everything is published once.
pub async fn a_living_relay_keeps_its_claim_past_the_heartbeat_lease<B: Backend>(
    backend: Shared<B>,
) {
    let name = backend.name();
    let batch: Vec<Message> = (0..4).map(|n| msg("e", Some("k"), n)).collect();
    let all: HashSet<Uuid> = batch.iter().map(Message::id).collect();
    commit_messages(&*backend, batch).await.unwrap();
    let publisher = CollectingPublisher::new();
    // Four rounds of 700 ms: 2.8 s in flight, nearly three heartbeat leases.
    let relay = Relay::builder(
        backend.store(),
        SlowPublisher::new(publisher.clone(), Duration::from_millis(700)),
    )
    .batch_size(10)
    .lease(LONG)
    .build()
    .unwrap();
    let batch = tokio::spawn(async move { relay.process_batch(&CancellationToken::new()).await });
    let other = backend.store();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let claim = other.claim(10, LONG).await.unwrap();
        assert!(
            claim.is_empty(),
            "[{name}] another relay claimed {} rows of a living relay's batch",
            claim.messages.len()
        );
    }
    let report = batch.await.unwrap().unwrap();
    assert_eq!(
        (report.published, report.released, report.fenced),
        (4, 0, 0),
        "[{name}] {report:?}"
    );
    assert_exactly_once(&name, &publisher.published(), &all);
}

/// A relay that dies mid-batch (its task dropped: no more renewals, no settlement) holds its
/// keys for the heartbeat lease, not for the configured 30 s lease: another relay publishes
/// them within seconds.
pub async fn a_dead_relays_keys_flow_again_within_the_heartbeat_lease<B: Backend>(
    backend: Shared<B>,
) {
    let name = backend.name();
    let batch: Vec<Message> = (0..3).map(|n| msg("e", Some("k"), n)).collect();
    let order: Vec<Uuid> = batch.iter().map(Message::id).collect();
    commit_messages(&*backend, batch).await.unwrap();
    let dying = Relay::builder(
        backend.store(),
        SlowPublisher::new(CollectingPublisher::new(), Duration::from_secs(3600)),
    )
    .batch_size(10)
    .lease(LONG)
    .build()
    .unwrap();
    let batch = tokio::spawn(async move { dying.process_batch(&CancellationToken::new()).await });
    let store = backend.store();
    wait_until(WAIT, "the dying relay's claim", || async {
        store.stats().await.unwrap().claimed == 3
    })
    .await;
    // Held across renewals while it lives...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        store.claim(10, LONG).await.unwrap().is_empty(),
        "[{name}] a living relay's rows were claimed"
    );
    batch.abort();
    let died = Instant::now();
    let publisher = CollectingPublisher::new();
    let relay = fast_relay(&*backend, publisher.clone(), 10);
    let (stop, handle) = spawn_relay(relay);
    wait_until(WAIT, "the dead relay's key to flow again", || async {
        publisher.published().len() == 3
    })
    .await;
    let recovered = died.elapsed();
    stop_relays(vec![(stop, handle)]).await;
    assert_eq!(ids(&publisher.published()), order, "[{name}] key order");
    assert!(
        recovered < LONG / 3,
        "[{name}] the dead relay's key waited {recovered:?}: its configured lease, not the \
         heartbeat lease"
    );
}
