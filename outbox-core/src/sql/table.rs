//! Validated table names: identifiers are checked, then quoted, never spliced raw.

use std::fmt;

use crate::error::{Error, Result};

/// The default outbox table name.
pub const DEFAULT_TABLE: &str = "outbox";

/// Longest table name accepted, so that derived index names stay within every database's
/// identifier limit.
pub const MAX_TABLE_NAME_BYTES: usize = 48;

/// A validated outbox table name, optionally qualified by a schema (`schema.table`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] unless every part is a letter or underscore followed by
    /// letters, digits or underscores, at most 48 bytes.
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidTableName {
            name: name.to_owned(),
            reason,
        };
        let mut parts = name.split('.');
        let first = parts.next().unwrap_or_default();
        let second = parts.next();
        if parts.next().is_some() {
            return Err(invalid("it has more than one `.`"));
        }
        let (schema, table) = match second {
            Some(table) => (Some(first), table),
            None => (None, first),
        };
        for part in schema.into_iter().chain([table]) {
            check_identifier(part).map_err(invalid)?;
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The unqualified table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The schema, if the name was qualified.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// A companion table's name: this one's with `suffix` appended (at most 15 bytes of
    /// identifier characters, so the result stays within every database's limit).
    pub(crate) fn with_suffix(&self, suffix: &'static str) -> Self {
        debug_assert!(suffix.len() <= 15 && check_identifier(&format!("x{suffix}")).is_ok());
        Self {
            schema: self.schema.clone(),
            table: format!("{}{suffix}", self.table),
        }
    }

    /// The name quoted with `quote` (`"` for PostgreSQL and SQLite, `` ` `` for MySQL).
    pub(crate) fn quoted(&self, quote: char) -> String {
        match &self.schema {
            Some(schema) => format!("{quote}{schema}{quote}.{quote}{}{quote}", self.table),
            None => format!("{quote}{}{quote}", self.table),
        }
    }
}

impl Default for TableName {
    fn default() -> Self {
        Self {
            schema: None,
            table: DEFAULT_TABLE.to_owned(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl std::str::FromStr for TableName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

fn check_identifier(part: &str) -> std::result::Result<(), &'static str> {
    let mut bytes = part.bytes();
    match bytes.next() {
        None => return Err("a name part is empty"),
        Some(b) if !(b.is_ascii_alphabetic() || b == b'_') => {
            return Err("a name part starts with something other than a letter or underscore");
        }
        Some(_) => {}
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("it contains a character other than letters, digits and underscores");
    }
    if part.len() > MAX_TABLE_NAME_BYTES {
        return Err("a name part is too long");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_qualified_names() {
        assert_eq!(TableName::new("outbox").unwrap().quoted('"'), "\"outbox\"");
        let t = TableName::new("app.events_outbox").unwrap();
        assert_eq!(t.quoted('`'), "`app`.`events_outbox`");
        assert_eq!(t.to_string(), "app.events_outbox");
    }

    #[test]
    fn rejects_injection_and_junk() {
        for bad in [
            "",
            "outbox; DROP TABLE users",
            "out\"box",
            "1outbox",
            "a.b.c",
            ".outbox",
            "outbox-events",
            &"x".repeat(49),
        ] {
            let err = TableName::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidTableName { .. }), "{bad:?}");
        }
    }
}
