//! Project automation: `cargo xtask <command>`.
//!
//! * `services`: checks that the servers the tests need (PostgreSQL, MariaDB, NATS with
//!   JetStream) answer on 127.0.0.1, and starts any that is down.
//! * `test`: `services`, then the whole test suite with nextest, then the doc tests.
//! * `quickstart`: runs the quickstart and checks what it printed.
//! * `examples`: `services`, then every example on SQLite, PostgreSQL and MariaDB, checking
//!   what each published.
//! * `bench [--quick] [--db mysql|sqlite]`: `services`, then the benchmark suite in release
//!   mode; writes `target/outbox-bench/summary.json` (PostgreSQL) or `summary-<db>.json`.
//! * `chaos [--quick] [--db mysql]`: relay processes killed, frozen and hung, their database
//!   connections killed, its own PostgreSQL (or MariaDB) crashed and its own NATS stopped
//!   while producers commit; fails on any lost message, order violation or unexpected dead
//!   letter; writes `target/outbox-chaos/summary.json` (`summary-mysql.json`).
//!
//! Only the standard library: this crate builds in seconds on a new machine.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("services") => services(),
        Some("test") => services().and_then(|()| test(&args[1..])),
        Some("quickstart") => quickstart(),
        Some("examples") => services().and_then(|()| examples()),
        Some("bench") => services().and_then(|()| bench(&args[1..])),
        Some("chaos") => chaos(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <services|test|quickstart|examples|bench [--quick] [--db mysql|sqlite]|chaos [--quick] [--db mysql]>\n\n\
                 services    start PostgreSQL, MariaDB and NATS if they are down\n\
                 test        services, then every test (nextest) and the doc tests\n\
                 quickstart  run the quickstart and check its output\n\
                 examples    services, then every example on SQLite, PostgreSQL and MariaDB\n\
                 bench       services, then the benchmark suite (target/outbox-bench/summary.json)\n\
                 chaos       faults against its own PostgreSQL (or MariaDB) and NATS (target/outbox-chaos/)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

struct Service {
    name: &'static str,
    port: u16,
    start: &'static str,
}

const SERVICES: &[Service] = &[
    Service {
        name: "PostgreSQL",
        port: 5432,
        start: "pg_ctlcluster --skip-systemctl-redirect \"$(ls /etc/postgresql | head -n1)\" main start",
    },
    Service {
        name: "MariaDB",
        port: 3306,
        start: "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    },
    Service {
        name: "NATS (JetStream)",
        port: 4222,
        start: "mkdir -p /var/lib/nats-server && start-stop-daemon --start --oknodo --background \
                --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js \
                -sd /var/lib/nats-server -l /var/log/nats-server.log",
    },
];

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn services() -> Result {
    for service in SERVICES {
        if answers(service.port) {
            eprintln!(
                "xtask: {} is up on 127.0.0.1:{}",
                service.name, service.port
            );
            continue;
        }
        eprintln!("xtask: {} is down; starting it", service.name);
        let status = Command::new("sh")
            .args(["-c", service.start])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("could not run the start command of {}: {e}", service.name))?;
        if !status.success() {
            return Err(format!(
                "starting {} failed ({status}); command: {}",
                service.name, service.start
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers(service.port) {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not open 127.0.0.1:{} within 60s after: {}",
                    service.name, service.port, service.start
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "xtask: {} is up on 127.0.0.1:{}",
            service.name, service.port
        );
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut command: Command) -> Result {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .map_err(|e| format!("could not run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed: {status}"))
    }
}

fn test(extra: &[String]) -> Result {
    let has_nextest = cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_nextest {
        eprintln!("xtask: installing cargo-nextest");
        let mut install = cargo();
        install.args(["install", "cargo-nextest", "--locked"]);
        run(install)?;
    }
    let mut nextest = cargo();
    nextest
        .args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ])
        .args(extra);
    run(nextest)?;
    let mut doctests = cargo();
    doctests.args(["test", "--doc", "--workspace", "--all-features"]);
    run(doctests)
}

/// A runnable example and what it must print: one JSON line per published message.
struct Example {
    package: &'static str,
    /// Each event type it publishes, with how many times.
    events: &'static [(&'static str, usize)],
    /// What only a rolled-back transaction's message would carry.
    rolled_back: &'static str,
}

const QUICKSTART: Example = Example {
    package: "example-quickstart",
    events: &[
        ("order.placed", 1),
        ("payment.requested", 1),
        ("audit.recorded", 1),
    ],
    rolled_back: "\"total_cents\":999",
};

const EXAMPLES: &[Example] = &[
    QUICKSTART,
    Example {
        package: "example-diesel",
        events: &[("order.placed", 3), ("payment.requested", 3)],
        rolled_back: "\"total_cents\":999999",
    },
    Example {
        package: "example-diesel-async",
        events: &[("order.placed", 3), ("payment.requested", 3)],
        rolled_back: "\"total_cents\":999999",
    },
    Example {
        package: "example-seaorm",
        events: &[("order.placed", 3), ("payment.requested", 3)],
        rolled_back: "\"total_cents\":999999",
    },
    Example {
        package: "example-axum-sqlx",
        events: &[("order.created", 3)],
        rolled_back: "\"total_cents\":999999",
    },
    Example {
        package: "example-axum-seaorm",
        events: &[("order.created", 3)],
        rolled_back: "\"total_cents\":999999",
    },
    Example {
        package: "example-actix-diesel",
        events: &[("order.created", 3)],
        rolled_back: "\"total_cents\":999999",
    },
];

/// The databases every example runs on: SQLite by default (no `DATABASE_URL`), then the local
/// servers. libpq (diesel) is asked for no TLS: the local server needs none, and libpq's
/// OpenSSL teardown at exit can crash a process whose pool threads are still connecting.
const DATABASES: &[(&str, Option<&str>)] = &[
    ("SQLite", None),
    (
        "PostgreSQL",
        Some("postgres://postgres@127.0.0.1:5432/test?sslmode=disable"),
    ),
    ("MariaDB", Some("mysql://root@127.0.0.1:3306/test")),
];

fn quickstart() -> Result {
    run_example(&QUICKSTART, None)
}

fn examples() -> Result {
    for example in EXAMPLES {
        for (name, url) in DATABASES {
            eprintln!("xtask: {} on {name}", example.package);
            run_example(example, *url)?;
        }
    }
    Ok(())
}

/// Runs `example` (on `url`, or on its default database) and checks what it published.
fn run_example(example: &Example, url: Option<&str>) -> Result {
    let package = example.package;
    let mut command = cargo();
    command
        .args(["run", "--quiet", "-p", package])
        .stderr(Stdio::inherit());
    match url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    let output = command
        .output()
        .map_err(|e| format!("could not run {package}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{package} failed: {}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    let expected: usize = example.events.iter().map(|(_, n)| n).sum();
    if lines.len() != expected {
        return Err(format!(
            "{package} printed {} messages, expected {expected}",
            lines.len()
        ));
    }
    for (event, count) in example.events {
        let field = format!("\"event_type\":\"{event}\"");
        let seen = lines.iter().filter(|l| l.contains(&field)).count();
        if seen != *count {
            return Err(format!(
                "{package} published {event} {seen} times, expected {count}"
            ));
        }
    }
    if stdout.contains(example.rolled_back) {
        return Err(format!(
            "{package} published a rolled-back transaction's message"
        ));
    }
    eprintln!("xtask: {package} published exactly the {expected} committed messages");
    Ok(())
}

fn bench(extra: &[String]) -> Result {
    // The peer library is a crate of its own outside the workspace; build it first so the
    // suite's timings never include a compile.
    let mut peer = cargo();
    peer.args([
        "build",
        "--release",
        "--quiet",
        "--manifest-path",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../outbox-bench/peer/Cargo.toml"
        ),
    ]);
    run(peer)?;
    let mut suite = cargo();
    suite
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "outbox-bench",
            "--",
            "suite",
        ])
        .args(extra);
    run(suite)
}

fn chaos(extra: &[String]) -> Result {
    let mut run_chaos = cargo();
    run_chaos
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "outbox-chaos",
            "--",
            "run",
        ])
        .args(extra);
    run(run_chaos)
}
