//! The command line.

use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use outbox_sqlx::{Status, Uuid};

/// Operate a transactional outbox: create its table, see what is pending or dead, retry,
/// replay and purge messages, and run the relay as a sidecar.
///
/// Works on PostgreSQL, MySQL/MariaDB and SQLite, chosen by the URL.
#[derive(Debug, Parser)]
#[command(name = "outbox", version, propagate_version = true)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The database: postgres://…, mysql://… (or mariadb://…), or sqlite:PATH.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub(crate) database_url: Option<String>,

    /// The outbox table (`schema.table` on PostgreSQL).
    #[arg(
        long,
        env = "OUTBOX_TABLE",
        global = true,
        default_value = "outbox",
        hide_env_values = true
    )]
    pub(crate) table: String,

    /// Print JSON instead of text (one document; `list` prints one message per line).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What the exit status means; shown under `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit status:
  0  done
  1  the database or the broker failed while the command ran
  2  bad arguments (a malformed URL, id, duration or time)
  3  the database cannot be reached (or the SQLite file does not exist)
  4  the outbox table does not exist: run `outbox migrate`
  5  no message has that id
  6  a destructive command was not confirmed (answer y, or pass --yes)";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the outbox table, its indexes and the inbox table; safe to run again.
    Migrate,
    /// Counts by status and by event type, the oldest unpublished message's age, and the claims
    /// relays hold.
    Status,
    /// List messages in sequence order.
    List(ListArgs),
    /// Show one message: headers, payload, attempts, last error.
    Show {
        /// The message id (a UUID).
        id: Uuid,
    },
    /// Make a dead message (or one waiting for its next attempt) due now, or every dead one.
    Retry(RetryArgs),
    /// Enqueue copies of published messages kept for retention, with new ids and an
    /// `outbox-replay-of` header naming the original.
    Replay(ReplayArgs),
    /// Delete dead messages, or published ones kept for retention.
    Purge(PurgeArgs),
    /// Run the relay until SIGTERM or SIGINT: claim, publish, settle.
    Relay(RelayArgs),
}

/// A status on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusArg {
    Pending,
    Claimed,
    Failed,
    Dead,
    Published,
}

impl From<StatusArg> for Status {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Pending => Status::Pending,
            StatusArg::Claimed => Status::Claimed,
            StatusArg::Failed => Status::Failed,
            StatusArg::Dead => Status::Dead,
            StatusArg::Published => Status::Published,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only messages in this status.
    #[arg(long, value_enum)]
    pub(crate) status: Option<StatusArg>,
    /// Only messages with this partition key.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Only messages of this event type.
    #[arg(long)]
    pub(crate) event_type: Option<String>,
    /// At most this many messages.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
    /// Start after this sequence number (the `seq` of the last message of the previous page).
    #[arg(long, default_value_t = 0)]
    pub(crate) after: i64,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["id", "all_dead"]))]
pub(crate) struct RetryArgs {
    /// The message to retry.
    pub(crate) id: Option<Uuid>,
    /// Every dead message (narrowed by --event-type and --key).
    #[arg(long, conflicts_with = "id")]
    pub(crate) all_dead: bool,
    /// With --all-dead: only this event type.
    #[arg(long, requires = "all_dead")]
    pub(crate) event_type: Option<String>,
    /// With --all-dead: only this partition key.
    #[arg(long, requires = "all_dead")]
    pub(crate) key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Replay messages published at or after this time: RFC 3339 (2026-12-01T10:00:00Z) or a
    /// span ago (30m, 2h, 7d).
    #[arg(long, value_parser = parse_since)]
    pub(crate) since: SystemTime,
    /// Only this event type.
    #[arg(long)]
    pub(crate) event_type: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["dead", "published"]))]
pub(crate) struct PurgeArgs {
    /// Delete dead messages (created more than --older-than ago).
    #[arg(long)]
    pub(crate) dead: bool,
    /// Delete published messages kept for retention (published more than --older-than ago).
    #[arg(long)]
    pub(crate) published: bool,
    /// How old a message must be: 30m, 12h, 7d, ….
    #[arg(long, value_parser = parse_duration)]
    pub(crate) older_than: Duration,
    /// With --dead: only this event type.
    #[arg(long, requires = "dead")]
    pub(crate) event_type: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Where to publish: nats://HOST:PORT (JetStream) or stdout (JSON lines).
    #[arg(long, env = "OUTBOX_PUBLISHER")]
    pub(crate) publisher: String,
    /// Rows per claim.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch_size: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 2)]
    pub(crate) concurrency: usize,
    /// How often to look for new messages when not woken.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub(crate) poll_interval: Duration,
    /// Keep published rows (for `replay` and `purge --published`) instead of deleting them.
    #[arg(long)]
    pub(crate) keep_published: bool,
    /// Refresh the outbox gauges this often (0 for never).
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub(crate) gauges: Duration,
    /// Serve the relay's metrics for Prometheus at this address (such as 127.0.0.1:9464), on
    /// any path.
    #[arg(long, env = "OUTBOX_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
}

/// A duration such as `90s`, `30m`, `12h` or `7d`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|err| format!("{err}; write a number and a unit, such as 90s, 30m, 12h or 7d"))
}

/// A time: RFC 3339, or a span before now.
fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text} ago is before the epoch")),
        Err(_) => Err(format!(
            "{text:?} is neither a time (2026-12-01T10:00:00Z) nor a span ago (30m, 2h, 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_times_parse_and_bad_ones_say_what_to_write() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(
            parse_duration("7 weeks ago")
                .unwrap_err()
                .contains("such as 90s")
        );
        let since = parse_since("2h").unwrap();
        let ago = SystemTime::now().duration_since(since).unwrap();
        assert!(ago >= Duration::from_secs(7_199) && ago <= Duration::from_secs(7_260));
        assert!(parse_since("2026-12-01T10:00:00Z").is_ok());
        assert!(
            parse_since("yesterday")
                .unwrap_err()
                .contains("neither a time")
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
