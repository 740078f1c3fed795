//! The `outbox` binary end to end, on PostgreSQL, MariaDB/MySQL and SQLite
//! (`OUTBOX_TEST_POSTGRES_URL`, `OUTBOX_TEST_MYSQL_URL`, `OUTBOX_TEST_NATS_URL`; defaults for the
//! local services). Each test runs the real binary against a fresh outbox table.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outbox_core::memory::CollectingPublisher;
use outbox_core::testing::{Backend, SqlBackend, commit_messages, sqlite_file};
use outbox_sqlx::testing::{
    MYSQL_DEFAULT, POSTGRES_DEFAULT, SqlxBackend, mysql_pool, postgres_pool, sqlite_pool, url,
};
use outbox_sqlx::{Failure, Inspect, Message, PublishError, Relay, RetryPolicy, Store, Uuid};
use serde_json::Value;

/// A fresh outbox table and the URL the binary reaches it by.
struct Env<B> {
    backend: B,
    url: String,
}

impl<B: SqlBackend> Env<B> {
    fn table(&self) -> String {
        self.backend.statements().table.to_string()
    }

    /// `ARGS --database-url URL --table TABLE`.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(["--database-url".into(), self.url.clone()]);
        all.extend(["--table".into(), self.table()]);
        all
    }

    /// Runs `outbox ARGS --database-url URL --table TABLE` with no terminal.
    async fn outbox(&self, args: &[&str]) -> Run {
        run(self.args(args)).await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.outbox(&all).await;
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
    }

    async fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.outbox(&all).await;
        out.ok();
        out.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "outbox failed: {self:?}");
        self
    }

    fn failed_with(&self, code: i32, says: &str) {
        assert_eq!(self.code, code, "exit status: {self:?}");
        assert!(
            self.stderr.contains(says),
            "stderr lacks {says:?}: {self:?}"
        );
    }
}

fn outbox_command(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("OUTBOX_TABLE")
        .env("OUTBOX_LOG", "warn")
        .stdin(Stdio::null());
    command
}

async fn run(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let out = outbox_command(&args)
            .output()
            .expect("the outbox binary runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

async fn env<DB>(name: &'static str, pool: sqlx::Pool<DB>, url: String) -> Env<SqlxBackend<DB>>
where
    DB: outbox_sqlx::OutboxDatabase,
    DB::Connection: outbox_sqlx::OutboxConnection<Database = DB>,
{
    let visibility = match name {
        "sqlite" => outbox_core::testing::Visibility::InOrder,
        _ => outbox_core::testing::Visibility::KeySerialized,
    };
    let backend = SqlxBackend::new(name, pool, visibility).await;
    Env { backend, url }
}

async fn postgres() -> Env<SqlxBackend<sqlx::Postgres>> {
    let url = url("OUTBOX_TEST_POSTGRES_URL", POSTGRES_DEFAULT);
    env("postgres", postgres_pool().await, url).await
}

async fn mysql() -> Env<SqlxBackend<sqlx::MySql>> {
    let url = url("OUTBOX_TEST_MYSQL_URL", MYSQL_DEFAULT);
    env("mysql", mysql_pool().await, url).await
}

async fn sqlite() -> Env<SqlxBackend<sqlx::Sqlite>> {
    let path = sqlite_file("outbox-cli-tests");
    let url = format!("sqlite:{}", path.display());
    env("sqlite", sqlite_pool(&path).await, url).await
}

fn message(event_type: &str, key: &str, n: u32) -> Message {
    Message::json(event_type, &serde_json::json!({ "n": n }))
        .unwrap()
        .key(key)
        .unwrap()
}

/// Claims everything and marks the messages at `dead` dead, giving the rest back.
async fn kill<B: Backend>(backend: &B, dead: &[usize]) -> Vec<i64> {
    let store = backend.store();
    let claim = store.claim(100, Duration::from_secs(30)).await.unwrap();
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    let failures: Vec<Failure> = dead
        .iter()
        .map(|&n| Failure {
            seq: seqs[n],
            error: format!("refused {n}"),
            retry_after: None,
        })
        .collect();
    store.fail(claim.token, &failures).await.unwrap();
    let rest: Vec<i64> = (0..seqs.len())
        .filter(|n| !dead.contains(n))
        .map(|n| seqs[n])
        .collect();
    store.release(claim.token, &rest).await.unwrap();
    seqs
}

/// A poison message is dead in `status` and `list --status dead` as soon as the relay's first
/// attempt fails, `show` tells why, and `retry` brings it back: the next relay publishes it.
async fn a_poison_message_is_seen_and_retried<B: SqlBackend>(env: Env<B>) {
    let poison = message("order.poison", "7", 0);
    let good = message("order.created", "8", 1);
    let poison_id = poison.id();
    commit_messages(&env.backend, vec![poison, good])
        .await
        .unwrap();

    let refuse = Arc::new(AtomicBool::new(true));
    let refusing = Arc::clone(&refuse);
    let publisher = CollectingPublisher::failing_when(move |e| {
        (refusing.load(Ordering::SeqCst) && e.event_type == "order.poison")
            .then(|| PublishError::rejected("message too large for the stream"))
    });
    let relay = Relay::builder(env.backend.store(), publisher.clone())
        .retry_policy(
            RetryPolicy::new(
                Duration::from_millis(10),
                Duration::from_millis(10),
                1.0,
                0.0,
                1,
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    // One pass of the relay: the poison message's only attempt fails.
    relay.drain().await.unwrap();

    let status = env.json(&["status"]).await;
    assert_eq!(status["counts"]["dead"], 1, "{status}");
    assert_eq!(status["counts"]["pending"], 0, "{status}");
    let types = status["event_types"].as_array().unwrap();
    let poisoned = types
        .iter()
        .find(|t| t["event_type"] == "order.poison")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(poisoned["dead"], 1, "{status}");
    let text = env.outbox(&["status"]).await;
    text.ok();
    assert!(text.stdout.contains("dead: 1"), "{}", text.stdout);

    let dead = env.json_lines(&["list", "--status", "dead"]).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], poison_id.to_string());
    assert_eq!(dead[0]["status"], "dead");
    let text = env.outbox(&["list", "--status", "dead"]).await;
    text.ok();
    assert!(
        text.stdout.contains(&poison_id.to_string()),
        "{}",
        text.stdout
    );

    let id = poison_id.to_string();
    let shown = env.json(&["show", &id]).await;
    assert_eq!(shown["attempts"], 1, "{shown}");
    assert_eq!(shown["key"], "7", "{shown}");
    assert_eq!(shown["payload"], serde_json::json!({ "n": 0 }), "{shown}");
    assert_eq!(
        shown["headers"]["content-type"], "application/json",
        "{shown}"
    );
    assert!(
        shown["last_error"]
            .as_str()
            .unwrap()
            .contains("too large for the stream"),
        "{shown}"
    );
    let text = env.outbox(&["show", &id]).await;
    text.ok();
    assert!(text.stdout.contains("last error"), "{}", text.stdout);

    let retried = env.outbox(&["retry", &id]).await;
    retried.ok();
    assert!(
        retried
            .stdout
            .contains(&format!("retried {id}: dead -> pending")),
        "{retried:?}"
    );
    let status = env.json(&["status"]).await;
    assert_eq!(
        (&status["counts"]["dead"], &status["counts"]["pending"]),
        (&Value::from(0), &Value::from(1)),
        "{status}"
    );

    refuse.store(false, Ordering::SeqCst);
    relay.drain().await.unwrap();
    let published: Vec<Uuid> = publisher.published().iter().map(|e| e.id).collect();
    assert!(
        published.contains(&poison_id),
        "the retried message was not published"
    );
    let status = env.json(&["status"]).await;
    assert_eq!(status["counts"]["dead"], 0, "{status}");
    assert_eq!(
        status["oldest_unpublished_age_seconds"],
        Value::Null,
        "{status}"
    );
}

/// A missing table says to migrate; an unknown id, a bad id and a message in the wrong state
/// each get their own exit status and say what is wrong.
async fn bad_input_gets_its_exit_status_and_advice<B: SqlBackend>(env: Env<B>) {
    let missing = format!("{}_missing", env.table());
    let args: Vec<String> = ["status", "--database-url", &env.url, "--table", &missing]
        .map(String::from)
        .to_vec();
    run(args).await.failed_with(4, "run `outbox migrate`");

    let unknown = Uuid::now_v7().to_string();
    env.outbox(&["show", &unknown])
        .await
        .failed_with(5, &format!("no message with id {unknown}"));
    env.outbox(&["retry", &unknown])
        .await
        .failed_with(5, "no message with id");
    env.outbox(&["show", "not-a-uuid"])
        .await
        .failed_with(2, "invalid value 'not-a-uuid'");

    let pending = message("order.created", "1", 0);
    let id = pending.id().to_string();
    commit_messages(&env.backend, vec![pending]).await.unwrap();
    env.outbox(&["retry", &id])
        .await
        .failed_with(1, "is pending: only dead messages");
    env.outbox(&["list", "--status", "gone"])
        .await
        .failed_with(2, "invalid value 'gone'");
    env.outbox(&["purge", "--dead", "--older-than", "soon", "--yes"])
        .await
        .failed_with(2, "such as 90s");

    // Migrating is safe to repeat.
    env.outbox(&["migrate"]).await.ok();
    env.outbox(&["migrate"]).await.ok();
    assert_eq!(env.json(&["status"]).await["counts"]["pending"], 1);
}

/// `list` filters by status, key and event type and pages with `--after`; `retry --all-dead`
/// narrows by event type; `purge` asks first, refuses without a terminal, and reports.
async fn list_retry_and_purge_by_filter<B: SqlBackend>(env: Env<B>) {
    let messages = vec![
        message("e1", "k1", 0),
        message("e1", "k2", 1),
        message("e2", "k3", 2),
        message("e2", "k4", 3),
    ];
    let ids: Vec<String> = messages.iter().map(|m| m.id().to_string()).collect();
    commit_messages(&env.backend, messages).await.unwrap();
    let seqs = kill(&env.backend, &[0, 1, 2]).await;

    let ids_of = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = env
        .outbox(&["list", "--status", "dead", "--limit", "2"])
        .await;
    first.ok();
    assert!(
        first
            .stdout
            .contains(&format!("(more may follow: --after {})", seqs[1])),
        "{}",
        first.stdout
    );
    let after = seqs[1].to_string();
    let next = env
        .json_lines(&["list", "--status", "dead", "--after", &after])
        .await;
    assert_eq!(ids_of(&next), [ids[2].clone()]);
    let e2 = env.json_lines(&["list", "--event-type", "e2"]).await;
    assert_eq!(ids_of(&e2), [ids[2].clone(), ids[3].clone()]);
    let k2 = env.json_lines(&["list", "--key", "k2"]).await;
    assert_eq!(ids_of(&k2), [ids[1].clone()]);
    let none = env.outbox(&["list", "--status", "failed"]).await;
    none.ok();
    assert_eq!(none.stdout.trim(), "no messages");

    let retried = env
        .outbox(&["retry", "--all-dead", "--event-type", "e1"])
        .await;
    retried.ok();
    assert!(
        retried
            .stdout
            .contains("retried 2 dead messages of type e1"),
        "{retried:?}"
    );
    let dead = env.json_lines(&["list", "--status", "dead"]).await;
    assert_eq!(ids_of(&dead), [ids[2].clone()]);

    let young = env
        .json(&["purge", "--dead", "--older-than", "1h", "--yes"])
        .await;
    assert_eq!(young["deleted"], 0, "{young}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    env.outbox(&["purge", "--dead", "--older-than", "1ms"])
        .await
        .failed_with(6, "pass --yes");
    assert_eq!(env.json(&["status"]).await["counts"]["dead"], 1);
    let purged = env
        .outbox(&["purge", "--dead", "--older-than", "1ms", "--yes"])
        .await;
    purged.ok();
    assert!(
        purged
            .stdout
            .contains("deleted 1 dead messages created more than 1ms ago"),
        "{purged:?}"
    );
    env.outbox(&["show", &ids[2]])
        .await
        .failed_with(5, "no message");
    let all = env.json_lines(&["list"]).await;
    assert_eq!(all.len(), 3, "{all:?}");
}

/// `replay` asks first, then enqueues copies of kept published messages with a header naming
/// their originals; with nothing kept it says why.
async fn replay_copies_kept_published_messages<B: SqlBackend>(env: Env<B>) {
    let nothing = env.outbox(&["replay", "--since", "1h"]).await;
    nothing.ok();
    assert!(nothing.stdout.contains("--keep-published"), "{nothing:?}");

    let messages = vec![message("e1", "k", 0), message("e1", "k", 1)];
    let originals: Vec<String> = messages.iter().map(|m| m.id().to_string()).collect();
    commit_messages(&env.backend, messages).await.unwrap();
    let store = env.backend.store_keeping_published();
    let claim = store.claim(10, Duration::from_secs(30)).await.unwrap();
    let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
    store.ack(claim.token, &seqs).await.unwrap();

    env.outbox(&["replay", "--since", "1h"])
        .await
        .failed_with(6, "pass --yes");
    let replayed = env.outbox(&["replay", "--since", "1h", "--yes"]).await;
    replayed.ok();
    assert!(
        replayed.stdout.contains("replayed 2 messages"),
        "{replayed:?}"
    );
    let pending = env.json_lines(&["list", "--status", "pending"]).await;
    assert_eq!(pending.len(), 2, "{pending:?}");
    for (copy, original) in pending.iter().zip(&originals) {
        let shown = env.json(&["show", copy["id"].as_str().unwrap()]).await;
        assert_eq!(
            shown["headers"]["outbox-replay-of"],
            original.as_str(),
            "{shown}"
        );
        assert_eq!(shown["key"], "k", "{shown}");
    }
    let published = env.json_lines(&["list", "--status", "published"]).await;
    assert_eq!(published.len(), 2, "the originals stay as they were");
}

/// `outbox relay` publishes what is committed, and a SIGTERM stops it cleanly (exit 0).
async fn the_sidecar_publishes_and_stops_on_sigterm<B: SqlBackend>(env: Env<B>) {
    let m = message("order.created", "1", 0);
    let id = m.id().to_string();
    commit_messages(&env.backend, vec![m]).await.unwrap();
    let args = env.args(&["relay", "--publisher", "stdout", "--poll-interval", "50ms"]);
    let (published, status) = tokio::task::spawn_blocking(move || {
        let mut child = outbox_command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30));
        terminate(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (line, status)
    })
    .await
    .unwrap();
    let line = published.expect("the sidecar published nothing within 30 s");
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["id"], id, "{line}");
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status:?}");
    let stats = env.backend.store().stats().await.unwrap();
    assert_eq!(stats.unpublished(), 0, "{stats:?}");

    // It refuses to start on a table that is not there, or with an unknown broker.
    let missing = format!("{}_missing", env.table());
    run([
        "relay",
        "--publisher",
        "stdout",
        "--database-url",
        &env.url,
        "--table",
        &missing,
    ]
    .map(String::from)
    .to_vec())
    .await
    .failed_with(4, "run `outbox migrate`");
    env.outbox(&["relay", "--publisher", "kafka://localhost"])
        .await
        .failed_with(2, "unknown publisher");
}

/// `outbox relay --metrics-listen` serves the relay's metrics for Prometheus: the gauges show
/// a dead message, the counters what was published, by event type.
async fn the_sidecar_serves_prometheus_metrics<B: SqlBackend>(env: Env<B>) {
    let messages = vec![
        message("order.refused", "1", 0),
        message("order.created", "2", 1),
    ];
    commit_messages(&env.backend, messages).await.unwrap();
    kill(&env.backend, &[0]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let args = env.args(&[
        "relay",
        "--publisher",
        "stdout",
        "--poll-interval",
        "50ms",
        "--gauges",
        "100ms",
        "--metrics-listen",
        &listen,
    ]);
    let mut child = outbox_command(&args).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = tokio::task::spawn_blocking({
            let listen = listen.clone();
            move || scrape(&listen)
        })
        .await
        .unwrap();
        if let Some(page) = page.filter(|p| {
            p.contains("outbox_published_total{event_type=\"order.created\"} 1")
                && p.contains("outbox_messages{status=\"dead\"} 1")
                && p.contains("outbox_messages{status=\"pending\"} 0")
        }) {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never showed the outbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    terminate(child.id());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    for metric in [
        "outbox_oldest_unpublished_age_seconds",
        "outbox_claim_batch_size",
        "outbox_publish_latency_seconds",
        "outbox_gauge_refresh_seconds",
    ] {
        assert!(page.contains(metric), "no {metric} in:\n{page}");
    }
}

/// One `GET /metrics` over plain HTTP/1.1: the body, or `None` while nothing listens.
fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .starts_with("HTTP/1.1 200")
        .then(|| {
            response
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_owned())
        })
        .flatten()
}

fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid} failed");
}

macro_rules! on_every_database {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::postgres().await).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::mysql().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::sqlite().await).await;
                }
            )*
        }
    };
}

on_every_database!(
    a_poison_message_is_seen_and_retried,
    bad_input_gets_its_exit_status_and_advice,
    list_retry_and_purge_by_filter,
    replay_copies_kept_published_messages,
    the_sidecar_publishes_and_stops_on_sigterm,
    the_sidecar_serves_prometheus_metrics,
);

/// URLs the binary cannot use: an unknown scheme, an unreachable server, no URL at all, and a
/// SQLite file that does not exist (which only `migrate` creates).
#[tokio::test]
async fn urls_that_cannot_work_say_why() {
    let with =
        |url: &str, command: &str| [command, "--database-url", url].map(String::from).to_vec();
    run(with("redis://127.0.0.1", "status"))
        .await
        .failed_with(2, "must start with postgres://");
    run(with("postgres://postgres@127.0.0.1:1/test", "status"))
        .await
        .failed_with(3, "cannot reach the database");
    run(vec!["status".into()])
        .await
        .failed_with(2, "pass --database-url or set DATABASE_URL");
    let path = std::env::temp_dir().join(format!("outbox-cli-{}.db", Uuid::now_v7()));
    let url = format!("sqlite:{}", path.display());
    run(with(&url, "status"))
        .await
        .failed_with(3, "create it with `outbox migrate`");
    run(with(&url, "migrate")).await.ok();
    let status = run(with(&url, "status")).await;
    status.ok();
    assert!(status.stdout.contains("pending    0"), "{status:?}");
    std::fs::remove_file(&path).ok();
}

/// The sidecar publishes to JetStream, with the message id as `Nats-Msg-Id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_publishes_to_jetstream() {
    use async_nats::jetstream::{self, stream};
    let nats = std::env::var("OUTBOX_TEST_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(&nats))
        .await
        .unwrap_or_else(|_| {
            panic!("NATS at {nats} did not answer within 10s; start it (see .ci/run)")
        })
        .unwrap_or_else(|e| panic!("NATS is not reachable at {nats}: {e}; start nats-server -js"));
    let js = jetstream::new(client);
    let prefix = format!("clitest{:08x}", fastrand::u32(..));
    let stream = js
        .create_stream(stream::Config {
            name: prefix.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("JetStream is not enabled on the NATS server (start it with -js)");

    let env = postgres().await;
    let m = message(&format!("{prefix}.created"), "1", 0);
    let id = m.id().to_string();
    commit_messages(&env.backend, vec![m]).await.unwrap();
    let publisher = if nats.contains("://") {
        nats.clone()
    } else {
        format!("nats://{nats}")
    };
    let args = env.args(&[
        "relay",
        "--publisher",
        &publisher,
        "--poll-interval",
        "50ms",
    ]);
    let mut child = outbox_command(&args).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = stream;
    while stream.info().await.unwrap().state.messages < 1 {
        assert!(
            Instant::now() < deadline,
            "nothing reached the stream within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = stream.get_raw_message(1).await.unwrap();
    let msg_id = stored
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_owned());
    terminate(child.id());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    js.delete_stream(&prefix).await.unwrap();
    assert_eq!(msg_id.as_deref(), Some(id.as_str()));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(env.backend.store().stats().await.unwrap().unpublished(), 0);
}
