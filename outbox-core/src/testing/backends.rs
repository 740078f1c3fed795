//! The in-memory backend and publisher wrappers used by the suite.

use std::future::Future;
use std::time::Duration;

use super::{Backend, Visibility};
use crate::error::Result;
use crate::memory::{MemoryStore, MemoryTransaction};
use crate::message::{Envelope, Message};
use crate::publisher::{PublishError, Publisher};

/// The conformance backend for [`MemoryStore`].
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    store: MemoryStore,
}

impl MemoryBackend {
    /// A backend with an empty outbox.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for MemoryBackend {
    type Store = MemoryStore;
    type Tx = MemoryTransaction;

    fn name(&self) -> String {
        "memory".into()
    }

    fn store(&self) -> MemoryStore {
        self.store.clone()
    }

    fn begin(&self) -> impl Future<Output = Result<MemoryTransaction>> + Send {
        std::future::ready(Ok(self.store.begin()))
    }

    fn enqueue(
        &self,
        tx: &mut MemoryTransaction,
        messages: Vec<Message>,
    ) -> impl Future<Output = Result<()>> + Send {
        for message in messages {
            tx.enqueue(message);
        }
        std::future::ready(Ok(()))
    }

    fn commit(&self, tx: MemoryTransaction) -> impl Future<Output = Result<()>> + Send {
        tx.commit();
        std::future::ready(Ok(()))
    }

    fn rollback(&self, tx: MemoryTransaction) -> impl Future<Output = Result<()>> + Send {
        drop(tx);
        std::future::ready(Ok(()))
    }

    fn visibility(&self) -> Visibility {
        Visibility::InOrder
    }
}

/// Wraps a publisher and waits `delay` before each batch, like a slow broker.
#[derive(Debug, Clone)]
pub struct SlowPublisher<P> {
    inner: P,
    delay: Duration,
}

impl<P> SlowPublisher<P> {
    /// Delays every batch sent to `inner` by `delay`.
    pub fn new(inner: P, delay: Duration) -> Self {
        Self { inner, delay }
    }
}

impl<P: Publisher> Publisher for SlowPublisher<P> {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        tokio::time::sleep(self.delay).await;
        self.inner.publish(batch).await
    }
}
