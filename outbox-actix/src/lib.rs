#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod extract;
mod middleware;

pub use outbox_core::sql::{Finished, TransactionPool, UnitOfWork};

pub use self::error::{Error, TxDecision, TxRejection};
pub use self::extract::Tx;
pub use self::middleware::{OutboxMiddleware, OutboxService};
