//! The commands that change messages: `retry`, `replay`, `purge`. Each prints what it changed.

use std::io::{BufRead, IsTerminal, Write};

use outbox_sqlx::sql::AnyStore;
use outbox_sqlx::{Filter, Inspect, Purge, REPLAY_OF_HEADER, Replay, Retry, Status};
use serde_json::json;

use crate::args::{PurgeArgs, ReplayArgs, RetryArgs};
use crate::error::{CliError, Exit, Result};
use crate::inspect::not_found;
use crate::output::{self, span};

/// Rows changed per statement: small enough that no statement holds its locks for long.
const BATCH: usize = 1_000;

/// Retries one message, or every dead one.
pub(crate) async fn retry(store: &AnyStore, args: &RetryArgs, json: bool) -> Result<()> {
    if let Some(id) = args.id {
        let before = store.get(id).await?.ok_or_else(|| not_found(store, id))?;
        if store.retry(&Retry::Message(id), 1).await? == 0 {
            return Err(CliError::new(
                Exit::Failed,
                format!(
                    "message {id} is {}: only dead messages and messages waiting for their next \
                     attempt can be retried",
                    before.status
                ),
            ));
        }
        if json {
            println!(
                "{}",
                json!({ "retried": 1, "id": id, "was": before.status.as_str() })
            );
        } else {
            println!("retried {id}: {} -> pending", before.status);
        }
        return Ok(());
    }
    let mut filter = Filter::status(Status::Dead);
    filter.key.clone_from(&args.key);
    filter.event_type.clone_from(&args.event_type);
    let target = Retry::Dead {
        event_type: args.event_type.clone(),
        key: args.key.clone(),
    };
    let dead = store.count(&filter).await?;
    if dead == 0 {
        if json {
            println!("{}", json!({ "retried": 0 }));
        } else {
            println!(
                "no dead messages{}: nothing to retry",
                narrowed(args.event_type.as_deref(), args.key.as_deref())
            );
        }
        return Ok(());
    }
    let retried = in_batches(dead, "retrying", || store.retry(&target, BATCH)).await?;
    if json {
        println!("{}", json!({ "retried": retried }));
    } else {
        println!(
            "retried {retried} dead message{}{}: now pending",
            plural(retried),
            narrowed(args.event_type.as_deref(), args.key.as_deref())
        );
    }
    Ok(())
}

/// Enqueues copies of published messages kept for retention.
pub(crate) async fn replay(store: &AnyStore, args: &ReplayArgs, json: bool) -> Result<()> {
    let mut kept = Filter::status(Status::Published);
    kept.event_type.clone_from(&args.event_type);
    let candidates = store.count(&kept).await?;
    let since = output::time(args.since);
    if candidates == 0 {
        if json {
            println!("{}", json!({ "replayed": 0 }));
        } else {
            println!(
                "nothing to replay: no published messages are kept in {} (the relay deletes \
                 what it published unless it runs with --keep-published)",
                store.statements().table
            );
        }
        return Ok(());
    }
    confirm(
        args.yes,
        &format!(
            "Enqueue again the messages published since {since}{} (of {candidates} kept)? \
             Consumers will receive them once more.",
            narrowed(args.event_type.as_deref(), None)
        ),
    )?;
    let mut target = Replay::since(args.since);
    target.event_type.clone_from(&args.event_type);
    let bar = output::progress(candidates, "replaying");
    let (mut after, mut replayed) = (0, 0);
    loop {
        let page = store.replay(&target, after, BATCH).await?;
        target.through = Some(page.through);
        replayed += page.replayed;
        bar.inc(page.replayed);
        match page.last_seq {
            Some(last) if page.replayed == BATCH as u64 => after = last,
            _ => break,
        }
    }
    bar.finish_and_clear();
    if json {
        println!("{}", json!({ "replayed": replayed }));
    } else {
        println!(
            "replayed {replayed} message{} published since {since}: each copy has a new id and \
             the header {REPLAY_OF_HEADER} naming its original",
            plural(replayed)
        );
    }
    Ok(())
}

/// Deletes dead or kept published messages older than a span.
pub(crate) async fn purge(store: &AnyStore, args: &PurgeArgs, json: bool) -> Result<()> {
    let (target, status, when) = if args.dead {
        let target = Purge::Dead {
            older_than: args.older_than,
            event_type: args.event_type.clone(),
        };
        (target, Status::Dead, "created")
    } else {
        let target = Purge::Published {
            older_than: args.older_than,
        };
        (target, Status::Published, "published")
    };
    let mut filter = Filter::status(status);
    filter.event_type.clone_from(&args.event_type);
    let of_status = store.count(&filter).await?;
    if of_status == 0 {
        if json {
            println!("{}", json!({ "deleted": 0, "status": status.as_str() }));
        } else {
            println!(
                "no {status} messages{}: nothing to delete",
                narrowed(args.event_type.as_deref(), None)
            );
        }
        return Ok(());
    }
    let what = format!(
        "{status} messages{} {when} more than {} ago",
        narrowed(args.event_type.as_deref(), None),
        span(args.older_than)
    );
    confirm(
        args.yes,
        &format!(
            "Delete the {what} from {} ({of_status} {status} in all)? This cannot be undone.",
            store.statements().table
        ),
    )?;
    let deleted = in_batches(of_status, "deleting", || store.purge(&target, BATCH)).await?;
    if json {
        println!(
            "{}",
            json!({ "deleted": deleted, "status": status.as_str() })
        );
    } else {
        println!("deleted {deleted} {what}");
    }
    Ok(())
}

/// Runs `batch` until it changes fewer than [`BATCH`] rows, with a progress bar of `expected`
/// steps; returns how many rows it changed in all.
async fn in_batches<F, Fut>(expected: u64, what: &str, mut batch: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = outbox_sqlx::Result<u64>>,
{
    let bar = output::progress(expected, what);
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        bar.inc(n);
        if n < BATCH as u64 {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(total)
}

/// Asks `question` on the terminal; `yes` answers it in advance.
fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::new(
            Exit::NotConfirmed,
            format!("{question}\nnot confirmed: pass --yes to run it without a terminal"),
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).ok();
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::NotConfirmed,
            "not confirmed: nothing changed",
        ))
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn narrowed(event_type: Option<&str>, key: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(t) = event_type {
        out.push_str(&format!(" of type {t}"));
    }
    if let Some(k) = key {
        out.push_str(&format!(" with key {k}"));
    }
    out
}
