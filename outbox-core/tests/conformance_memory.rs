//! The conformance suite on the in-memory store.

use outbox_core::testing::MemoryBackend;

outbox_core::conformance_suite!(async { MemoryBackend::new() });
