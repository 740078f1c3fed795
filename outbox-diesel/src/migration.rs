//! `OutboxMigrations`: the outbox table as a `diesel_migrations` migration source.

use std::fmt;
use std::sync::Arc;

use diesel::connection::BoxableConnection;
use diesel::migration::{
    Migration, MigrationMetadata, MigrationName, MigrationSource, MigrationVersion, Result,
};
use outbox_core::sql::Statements;

use crate::{Outbox, OutboxBackend};

/// The outbox table as a migration source for diesel's migration harness
/// (`diesel_migrations::MigrationHarness`), beside the application's own
/// `embed_migrations!` source:
///
/// ```rust,ignore
/// use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
/// use outbox_diesel::{OutboxMigrations, Pg};
///
/// const MIGRATIONS: EmbeddedMigrations = embed_migrations!();
///
/// conn.run_pending_migrations(MIGRATIONS)?;
/// conn.run_pending_migrations(OutboxMigrations::<Pg>::default())?;
/// ```
///
/// It holds one migration, version `20261201000001` (named `20261201000001_create_outbox`,
/// or the table's name with `.` replaced by `_` in place of `outbox`), which diesel records
/// in `__diesel_schema_migrations` like its own. `run` is [`Outbox::migrate`]'s SQL, which
/// creates only what is missing, so adding it where the table already exists is safe;
/// `revert` drops the table with every message in it, and what `run` created beside it.
pub struct OutboxMigrations<DB: OutboxBackend> {
    outbox: Outbox<DB>,
}

impl<DB: OutboxBackend> Default for OutboxMigrations<DB> {
    fn default() -> Self {
        Self::new(Outbox::new())
    }
}

impl<DB: OutboxBackend> fmt::Debug for OutboxMigrations<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OutboxMigrations")
            .field(&self.outbox)
            .finish()
    }
}

impl<DB: OutboxBackend> OutboxMigrations<DB> {
    /// The migration of `outbox`'s table.
    pub fn new(outbox: Outbox<DB>) -> Self {
        Self { outbox }
    }
}

/// The version every outbox migration has.
const VERSION: &str = "20261201000001";

impl<DB: OutboxBackend> MigrationSource<DB> for OutboxMigrations<DB> {
    fn migrations(&self) -> Result<Vec<Box<dyn Migration<DB>>>> {
        let statements = Arc::clone(self.outbox.outbox_table().statements());
        let name = format!(
            "{VERSION}_create_{}",
            self.outbox.table().to_string().replace('.', "_")
        );
        Ok(vec![Box::new(CreateOutbox { statements, name })])
    }
}

struct CreateOutbox {
    statements: Arc<Statements>,
    name: String,
}

impl fmt::Display for CreateOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl MigrationName for CreateOutbox {
    fn version(&self) -> MigrationVersion<'_> {
        MigrationVersion::from(VERSION)
    }
}

impl MigrationMetadata for CreateOutbox {}

impl<DB: OutboxBackend> Migration<DB> for CreateOutbox {
    fn run(&self, conn: &mut dyn BoxableConnection<DB>) -> Result<()> {
        for sql in &self.statements.migrate {
            conn.batch_execute(sql)?;
        }
        Ok(())
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<DB>) -> Result<()> {
        for sql in self.statements.drop_all() {
            conn.batch_execute(&sql)?;
        }
        Ok(())
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        self
    }

    fn name(&self) -> &dyn MigrationName {
        self
    }
}
