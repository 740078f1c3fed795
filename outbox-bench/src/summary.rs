//! The results table and `target/outbox-bench/summary.json`.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// Results in the order they were measured.
#[derive(Default)]
pub(crate) struct Summary {
    rows: Vec<(String, f64, Option<String>)>,
}

impl Summary {
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
        println!("{:<28} {:>14}  target", "key", "value");
        for (key, value, target) in &self.rows {
            println!(
                "{key:<28} {value:>14.3}  {}",
                target.as_deref().unwrap_or("-")
            );
        }
    }

    /// Writes the summary next to the workspace's `target/` and returns the path.
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
        let path = dir.join("summary.json");
        std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(values))?)?;
        Ok(path)
    }
}
