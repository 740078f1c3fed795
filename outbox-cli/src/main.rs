//! `outbox`: operate a transactional outbox from the command line.
//!
//! Run with `cargo run -p outbox-cli -- --help`, or install it with
//! `cargo install outbox-cli` and run `outbox --help`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod connect;
mod error;
mod inspect;
mod output;
mod repair;
mod sidecar;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::connect::Target;
use crate::error::Result;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(log_level())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("outbox: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("outbox: {err}");
            err.exit_code()
        }
    }
}

/// `OUTBOX_LOG` (error, warn, info, debug, trace); `info` by default.
fn log_level() -> tracing::Level {
    std::env::var("OUTBOX_LOG")
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(tracing::Level::INFO)
}

async fn run(cli: Cli) -> Result<()> {
    let relay = matches!(cli.command, Command::Relay(_));
    let target = Target {
        url: cli.database_url.as_deref(),
        table: &cli.table,
        create: matches!(cli.command, Command::Migrate),
        keep_published: match &cli.command {
            Command::Relay(args) => args.keep_published,
            _ => false,
        },
        connections: if relay { 8 } else { 2 },
    };
    let store = connect::open(&target).await?;
    match &cli.command {
        Command::Migrate => {
            store.migrate().await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "migrated": store.statements().table.to_string() })
                );
            } else {
                println!(
                    "outbox table {} is ready on {} (with its inbox table {})",
                    store.statements().table,
                    store.dialect(),
                    store.statements().inbox.table.trim_matches(['"', '`'])
                );
            }
            Ok(())
        }
        Command::Status => inspect::status(&store, cli.json).await,
        Command::List(args) => inspect::list(&store, args, cli.json).await,
        Command::Show { id } => inspect::show(&store, *id, cli.json).await,
        Command::Retry(args) => repair::retry(&store, args, cli.json).await,
        Command::Replay(args) => repair::replay(&store, args, cli.json).await,
        Command::Purge(args) => repair::purge(&store, args, cli.json).await,
        Command::Relay(args) => sidecar::run(store, args).await,
    }
}
