//! The conformance suite and adapter tests on SQLite through diesel, one database file per
//! test.

use diesel::SqliteConnection;
use outbox_core::testing::Visibility;
use outbox_diesel::testing::{DieselBackend, SqliteSettings, pool_with};

fn backend() -> DieselBackend<SqliteConnection> {
    let dir = std::env::temp_dir().join("outbox-diesel-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", outbox_core::testing::fresh_table()));
    let pool = pool_with("SQLite", &path.display().to_string(), 4, SqliteSettings);
    DieselBackend::new("diesel sqlite", pool, Visibility::InOrder)
}

outbox_core::conformance_suite!(async { tokio::task::block_in_place(backend) });

outbox_core::adapter_suite!(async { tokio::task::block_in_place(backend) });
