//! Cross-process wake-ups on PostgreSQL: LISTEN on the outbox table's channel.

use std::time::Duration;

use outbox_core::{Result, WakeHandle};
use sqlx::postgres::{PgListener, PgPool};
use tokio::task::JoinHandle;

use crate::outbox::Outbox;

/// Listens for the notifications that [`Outbox::notify_on_commit`] sends and wakes a relay.
///
/// Runs in a background task until dropped. When the connection drops it reconnects and wakes
/// the relay once, since notifications sent meanwhile are lost; the relay's polling remains
/// the backstop either way.
#[derive(Debug)]
pub struct NotifyListener {
    task: JoinHandle<()>,
}

impl NotifyListener {
    /// Starts listening on `outbox`'s channel with a connection from `pool`.
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when the first connection or `LISTEN`
    /// fails.
    pub async fn start(
        pool: &PgPool,
        outbox: &Outbox<sqlx::Postgres>,
        wake: WakeHandle,
    ) -> Result<Self> {
        let channel = outbox.statements().notify_channel();
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(outbox_core::Error::database)?;
        listener
            .listen(&channel)
            .await
            .map_err(outbox_core::Error::database)?;
        let task = tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.wake(),
                    Ok(None) => {
                        tracing::debug!(%channel, "outbox listener reconnecting");
                        wake.wake();
                    }
                    Err(err) => {
                        tracing::warn!(%channel, error = %err, "outbox listener error; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self { task })
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
