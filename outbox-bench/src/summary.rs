//! The results table and `target/outbox-bench/summary.json`.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// Results in the order they were measured.
#[derive(Default)]
pub(crate) struct Summary {
    database: String,
    rows: Vec<(String, f64, Option<String>)>,
}

impl Summary {
    /// The database the results are for; it names the file.
    pub(crate) fn database(&mut self, name: &str) {
        name.clone_into(&mut self.database);
    }

    /// A result with a target.
    pub(crate) fn ratio(&mut self, key: &str, value: f64, target: &str) {
        self.rows
            .push((key.to_owned(), value, Some(target.to_owned())));
    }

    /// A result reported without a target.
    pub(crate) fn value(&mut self, key: &str, value: f64) {
        self.rows.push((key.to_owned(), value, None));
    }

    pub(crate) fn print(&self) {
        println!("{:<28} {:>14}  target ({})", "key", "value", self.database);
        for (key, value, target) in &self.rows {
            println!(
                "{key:<28} {value:>14.3}  {}",
                target.as_deref().unwrap_or("-")
            );
        }
    }

    /// Writes the summary into the workspace's `target/outbox-bench/` and returns the path:
    /// `summary.json` for PostgreSQL, `summary-<db>.json` for the others.
    pub(crate) fn write(&self) -> std::io::Result<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/outbox-bench");
        std::fs::create_dir_all(&dir)?;
        let mut values = Map::new();
        let mut targets = Map::new();
        for (key, value, target) in &self.rows {
            values.insert(key.clone(), json!(value));
            if let Some(target) = target {
                targets.insert(key.clone(), Value::String(target.clone()));
            }
        }
        values.insert("targets".into(), Value::Object(targets));
        values.insert("database".into(), Value::String(self.database.clone()));
        let path = dir.join(match self.database.as_str() {
            "postgres" | "" => "summary.json".to_owned(),
            other => format!("summary-{other}.json"),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(values))?)?;
        Ok(path)
    }
}
