//! The read commands: `status`, `list`, `show`.

use outbox_sqlx::sql::AnyStore;
use outbox_sqlx::{Filter, Inspect, Status, Uuid};
use serde_json::json;

use crate::args::ListArgs;
use crate::error::{CliError, Exit, Result};
use crate::output::{self, json_seconds, span};

/// Counts by status and event type, the oldest unpublished age, the live claims.
pub(crate) async fn status(store: &AnyStore, json: bool) -> Result<()> {
    let stats = store.stats().await?;
    let types = store.event_types().await?;
    let claims = store.claims().await?;
    let table = &store.statements().table;
    if json {
        let doc = json!({
            "table": table.to_string(),
            "database": store.dialect().to_string(),
            "counts": {
                "pending": stats.pending,
                "claimed": stats.claimed,
                "failed": stats.failed,
                "dead": stats.dead,
                "published": stats.published,
            },
            "oldest_unpublished_age_seconds": json_seconds(stats.oldest_unpublished_age),
            "event_types": types.iter().map(|t| json!({
                "event_type": t.event_type,
                "unpublished": t.unpublished,
                "dead": t.dead,
                "published": t.published,
                "oldest_unpublished_age_seconds": json_seconds(t.oldest_unpublished_age),
            })).collect::<Vec<_>>(),
            "claims": claims.iter().map(|c| json!({
                "token": c.token.0,
                "messages": c.messages,
                "expires_in_seconds": c.expires_in.as_secs_f64(),
            })).collect::<Vec<_>>(),
        });
        println!("{doc}");
        return Ok(());
    }
    let mut out = format!("outbox table {table} on {}\n\n", store.dialect());
    let counts: Vec<Vec<String>> = [
        (Status::Pending, stats.pending),
        (Status::Claimed, stats.claimed),
        (Status::Failed, stats.failed),
        (Status::Dead, stats.dead),
        (Status::Published, stats.published),
    ]
    .iter()
    .map(|(status, n)| vec![status.to_string(), n.to_string()])
    .collect();
    out.push_str(&output::table(&["status", "messages"], &counts));
    out.push_str(&format!(
        "\noldest unpublished: {}\n",
        stats
            .oldest_unpublished_age
            .map_or_else(|| "none".to_owned(), |age| format!("{} old", span(age)))
    ));
    if stats.dead > 0 {
        out.push_str(&format!(
            "dead: {} (see `outbox list --status dead`, then `outbox retry`)\n",
            stats.dead
        ));
    }
    if claims.is_empty() {
        out.push_str("claims: none (no relay is publishing right now)\n");
    } else {
        let held: u64 = claims.iter().map(|c| c.messages).sum();
        out.push_str(&format!(
            "claims: {} holding {held} messages\n",
            claims.len()
        ));
    }
    if !types.is_empty() {
        let rows: Vec<Vec<String>> = types
            .iter()
            .map(|t| {
                vec![
                    t.event_type.clone(),
                    t.unpublished.to_string(),
                    t.dead.to_string(),
                    t.published.to_string(),
                    t.oldest_unpublished_age.map_or_else(|| "-".into(), span),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&output::table(
            &["event type", "unpublished", "dead", "published", "oldest"],
            &rows,
        ));
    }
    print!("{out}");
    Ok(())
}

/// One page of messages.
pub(crate) async fn list(store: &AnyStore, args: &ListArgs, json: bool) -> Result<()> {
    let mut filter = Filter::all();
    filter.status = args.status.map(Status::from);
    filter.key.clone_from(&args.key);
    filter.event_type.clone_from(&args.event_type);
    let page = store.list(&filter, args.after, args.limit).await?;
    if json {
        for m in &page {
            println!("{}", output::message_json(m, false));
        }
        return Ok(());
    }
    if page.is_empty() {
        println!("no messages");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page.iter().map(output::message_row).collect();
    print!(
        "{}",
        output::table(
            &[
                "seq",
                "id",
                "status",
                "event type",
                "key",
                "attempts",
                "created at",
                "last error"
            ],
            &rows
        )
    );
    if let Some(last) = page.last().filter(|_| page.len() == args.limit) {
        println!("(more may follow: --after {})", last.envelope.seq);
    }
    Ok(())
}

/// One message, whole.
pub(crate) async fn show(store: &AnyStore, id: Uuid, json: bool) -> Result<()> {
    let message = store.get(id).await?.ok_or_else(|| not_found(store, id))?;
    if json {
        println!("{}", output::message_json(&message, true));
    } else {
        print!("{}", output::message_text(&message));
    }
    Ok(())
}

/// No message has `id`.
pub(crate) fn not_found(store: &AnyStore, id: Uuid) -> CliError {
    CliError::new(
        Exit::NotFound,
        format!(
            "no message with id {id} in the outbox table {} (it may have been published and \
             deleted, or purged)",
            store.statements().table
        ),
    )
}
