//! `OutboxMigration`: the outbox table as a sea-orm migration.

use outbox_core::sql::TableName;
use sea_orm::DbErr;
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::Outbox;

/// Creates the outbox table (and what the relay needs beside it) from your `Migrator`;
/// `down` drops them with every message in them.
///
/// ```
/// use outbox_seaorm::OutboxMigration;
/// use sea_orm_migration::{MigrationTrait, MigratorTrait};
///
/// pub struct Migrator;
///
/// impl MigratorTrait for Migrator {
///     fn migrations() -> Vec<Box<dyn MigrationTrait>> {
///         vec![
///             // ... your migrations, then:
///             Box::new(OutboxMigration::default()),
///         ]
///     }
/// }
/// # assert_eq!(Migrator::migrations().len(), 1);
/// ```
///
/// Its name, `m20261201_000001_create_outbox` (for another table, the table's name with `.`
/// replaced by `_` in place of `outbox`), is what sea-orm records in `seaql_migrations`; keep
/// it where it is in the list. `up` runs [`Outbox::migrate`], which creates only what is
/// missing, so adding it to a database where the table already exists is safe.
#[derive(Debug, Clone)]
pub struct OutboxMigration {
    outbox: Outbox,
    name: String,
}

impl Default for OutboxMigration {
    fn default() -> Self {
        Self::new(Outbox::new())
    }
}

impl OutboxMigration {
    /// The migration of `outbox`'s table.
    pub fn new(outbox: Outbox) -> Self {
        let name = format!("m20261201_000001_create_{}", slug(outbox.table()));
        Self { outbox, name }
    }
}

fn slug(table: &TableName) -> String {
    table.to_string().replace(['.', '"', '`'], "_")
}

impl MigrationName for OutboxMigration {
    fn name(&self) -> &str {
        &self.name
    }
}

fn migration_error(err: outbox_core::Error) -> DbErr {
    DbErr::Migration(format!("the outbox migration failed: {err}"))
}

// async-trait's expansion needs the elided lifetime as the trait declares it.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.outbox
            .migrate(manager.get_connection())
            .await
            .map_err(migration_error)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.outbox
            .uninstall(manager.get_connection())
            .await
            .map_err(migration_error)
    }
}
