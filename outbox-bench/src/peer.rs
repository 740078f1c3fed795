//! The peer: a published Rust outbox library run through the same workloads, side by side.
//!
//! The peer is Oxide Outbox (`outbox-core` 0.6 with `outbox-postgres` 0.3 from crates.io), the
//! most complete maintained outbox library for sqlx and PostgreSQL found: a worker with
//! LISTEN/NOTIFY wake-ups, retries to a dead-letter table, garbage collection. It lives in
//! `outbox-bench/peer`, a crate outside the workspace (its `outbox-core` shares our core's
//! name and it builds on sqlx 0.8), built by `cargo xtask bench` before the suite starts and
//! run as a child process that prints one JSON line per workload.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::BoxError;

/// The peer's release binary: `cargo xtask bench` builds it first, into `CARGO_TARGET_DIR` when
/// that is set and into `outbox-bench/peer/target` otherwise.
fn binary() -> Result<PathBuf, BoxError> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peer/target")),
        PathBuf::from,
    );
    let binary = target.join("release").join("outbox-peer-bench");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "the peer is not built ({} is missing): run `cargo xtask bench`, or \
             `cargo build --release --manifest-path outbox-bench/peer/Cargo.toml` first",
            binary.display()
        )
        .into())
    }
}

/// Runs one peer workload and returns its JSON result.
pub(crate) async fn run(
    args: &[&str],
    database_url: &str,
    nats_url: &str,
) -> Result<Value, BoxError> {
    let out = tokio::process::Command::new(binary()?)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("the peer's {} run failed ({})", args[0], out.status).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().ok_or("the peer printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

/// A number from a peer result.
pub(crate) fn field(value: &Value, name: &str) -> Result<f64, BoxError> {
    value[name]
        .as_f64()
        .ok_or_else(|| format!("the peer's result has no {name}: {value}").into())
}
