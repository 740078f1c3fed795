//! `outbox relay`: the relay as a process of its own, until SIGTERM or SIGINT.

use outbox_publishers::{JsonLinesPublisher, NatsPublisher};
use outbox_sqlx::sql::AnyStore;
use outbox_sqlx::{Envelope, Inspect, PublishError, Publisher, Relay};

use crate::args::RelayArgs;
use crate::error::{CliError, Exit, Result};

/// The broker the sidecar publishes to, chosen on the command line.
enum Broker {
    Nats(Box<NatsPublisher>),
    Stdout(JsonLinesPublisher),
}

impl Publisher for Broker {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        match self {
            Broker::Nats(nats) => nats.publish(batch).await,
            Broker::Stdout(stdout) => stdout.publish(batch).await,
        }
    }
}

async fn broker(spec: &str) -> Result<Broker> {
    if spec == "stdout" {
        return Ok(Broker::Stdout(JsonLinesPublisher::stdout()));
    }
    if spec.starts_with("nats://") || spec.starts_with("tls://") {
        return NatsPublisher::connect(spec)
            .await
            .map(|nats| Broker::Nats(Box::new(nats)))
            .map_err(|err| {
                CliError::new(Exit::Usage, format!("invalid NATS URL {spec:?}: {err}"))
            });
    }
    Err(CliError::new(
        Exit::Usage,
        format!("unknown publisher {spec:?}: use nats://HOST:PORT (JetStream) or stdout"),
    ))
}

/// Runs the relay until SIGTERM or SIGINT, then lets in-flight batches settle and returns.
pub(crate) async fn run(store: AnyStore, args: &RelayArgs) -> Result<()> {
    // Refuse to start on a table that is not there, rather than logging it forever.
    store.stats().await?;
    let publisher = broker(&args.publisher).await?;
    if let Some(addr) = args.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|err| {
                CliError::new(
                    Exit::Failed,
                    format!("cannot serve metrics on {addr}: {err}"),
                )
            })?;
    }
    let mut builder = Relay::builder(store.clone(), publisher)
        .batch_size(args.batch_size)
        .concurrency(args.concurrency)
        .poll_interval(args.poll_interval);
    if !args.gauges.is_zero() {
        builder = builder.gauges(args.gauges);
    }
    let relay = builder
        .build()
        .map_err(|err| CliError::new(Exit::Usage, err.to_string()))?;
    let shutdown = shutdown_signal()?;
    tracing::info!(
        table = %store.statements().table,
        database = %store.dialect(),
        publisher = %args.publisher,
        metrics = ?args.metrics_listen,
        "relay started; SIGTERM or SIGINT stops it"
    );
    relay.run(shutdown).await?;
    tracing::info!("relay stopped: in-flight batches settled");
    Ok(())
}

/// Completes at the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let failed = |err: std::io::Error| {
        CliError::new(Exit::Failed, format!("cannot listen for signals: {err}"))
    };
    let mut term = signal(SignalKind::terminate()).map_err(failed)?;
    let mut int = signal(SignalKind::interrupt()).map_err(failed)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}
