//! The statements operators' commands send through [`Inspect`](crate::Inspect) (the `outbox`
//! CLI): filtered counts and lists, counts per event type, live claims, and repairs in
//! batches. They run rarely and their text depends on which filters are given, so each is
//! built when it is sent, from the table's [`Statements`] and only validated identifiers;
//! every value is bound.

use super::executor::{Column, Param, Query};
use super::{Dialect, Statements, state};
use crate::status::Status;
use crate::store::{Filter, Purge, Replay, Retry};

/// A value bound to a built statement.
#[derive(Debug, Clone)]
enum Value {
    I64(i64),
    Text(String),
}

/// A statement built for one call, with its values in placeholder order.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    sql: String,
    values: Vec<Value>,
}

impl Built {
    /// The statement as a query returning `columns`.
    pub(crate) fn query(&self, columns: &'static [Column]) -> Query<'_> {
        self.values
            .iter()
            .fold(Query::new(&self.sql, columns), |query, value| {
                query.bind(match value {
                    Value::I64(n) => Param::I64(*n),
                    Value::Text(text) => Param::Text(Some(text)),
                })
            })
    }

    #[cfg(test)]
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }
}

/// Writes one statement, numbering its placeholders as its database wants them.
struct Writer<'s> {
    s: &'s Statements,
    values: Vec<Value>,
}

impl<'s> Writer<'s> {
    fn new(s: &'s Statements) -> Self {
        Self {
            s,
            values: Vec::new(),
        }
    }

    /// A placeholder for `value`, in the order the statement's text reads them.
    fn bind(&mut self, value: Value) -> String {
        self.values.push(value);
        match self.s.dialect {
            Dialect::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        }
    }

    fn text(&mut self, text: &str) -> String {
        self.bind(Value::Text(text.to_owned()))
    }

    fn int(&mut self, n: i64) -> String {
        self.bind(Value::I64(n))
    }

    /// `column` (a timestamp) lies more than `micros` before now, by the database's clock.
    fn older_than(&mut self, column: &str, micros: i64) -> String {
        let p = self.int(micros);
        match self.s.dialect {
            Dialect::Postgres => format!("{column} < now() - {p} * interval '1 microsecond'"),
            Dialect::MySql => {
                format!("{column} < TIMESTAMPADD(MICROSECOND, -{p}, UTC_TIMESTAMP(6))")
            }
            Dialect::Sqlite => format!("{column} < {} - {p}", super::sqlite::NOW),
        }
    }

    /// The conditions of `filter` on the row `o`, joined by `AND` (`TRUE` for none).
    fn filter(&mut self, filter: &Filter) -> String {
        let mut all = Vec::new();
        if let Some(status) = filter.status {
            all.push(self.s.status_condition(status));
        }
        if let Some(key) = &filter.key {
            all.push(format!("o.partition_key = {}", self.text(key)));
        }
        if let Some(event_type) = &filter.event_type {
            all.push(format!("o.event_type = {}", self.text(event_type)));
        }
        if all.is_empty() {
            "1 = 1".to_owned()
        } else {
            all.join(" AND ")
        }
    }

    fn done(self, sql: String) -> Built {
        Built {
            sql,
            values: self.values,
        }
    }

    /// `action` (an `UPDATE ... SET ...` or a `DELETE FROM`, of the table unaliased) on at most
    /// `limit` rows `o` where `condition` holds, oldest first. MySQL refuses a `LIMIT` inside
    /// `IN (...)` and a subquery of the table it changes, so it limits the statement itself.
    fn batched(mut self, action: &str, condition: &str, limit: usize) -> Built {
        let t = self.s.quoted_table();
        let limit = self.int(i64::try_from(limit).unwrap_or(i64::MAX));
        let sql = match self.s.dialect {
            Dialect::MySql => {
                let condition = unqualified(condition);
                format!("{action} WHERE {condition} ORDER BY id LIMIT {limit}")
            }
            _ => format!(
                "{action} WHERE id IN (SELECT o.id FROM {t} o WHERE {condition} \
                 ORDER BY o.id LIMIT {limit})"
            ),
        };
        self.done(sql)
    }
}

/// `condition` with every column's `o.` qualifier removed.
fn unqualified(condition: &str) -> String {
    let mut out = String::with_capacity(condition.len());
    let mut rest = condition;
    while let Some(at) = rest.find("o.") {
        let starts_name = rest[..at]
            .chars()
            .next_back()
            .or_else(|| out.chars().next_back())
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '`' || c == '"'));
        out.push_str(&rest[..at]);
        if !starts_name {
            out.push_str("o.");
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

impl Statements {
    /// The condition that the row `o` is in `status`.
    pub(crate) fn status_condition(&self, status: Status) -> String {
        let (live, leased) = (state::LIVE, &self.leased);
        match status {
            Status::Pending => format!("o.state = {live} AND o.attempts = 0 AND NOT {leased}"),
            Status::Claimed => format!("o.state = {live} AND {leased}"),
            Status::Failed => format!("o.state = {live} AND o.attempts > 0 AND NOT {leased}"),
            Status::Dead => format!("o.state = {}", state::DEAD),
            Status::Published => format!("o.state = {}", state::PUBLISHED),
        }
    }
}

/// How many rows pass `filter`. Returns `n`.
pub(crate) fn count(s: &Statements, filter: &Filter) -> Built {
    let mut w = Writer::new(s);
    let condition = w.filter(filter);
    let sql = format!(
        "SELECT count(*) AS n FROM {} o WHERE {condition}",
        s.quoted_table()
    );
    w.done(sql)
}

/// Up to `limit` rows passing `filter` after sequence `after`, in sequence order. Returns the
/// columns of [`Statements::get`].
pub(crate) fn list(s: &Statements, filter: &Filter, after: i64, limit: usize) -> Built {
    let mut w = Writer::new(s);
    let after = w.int(after);
    let condition = w.filter(filter);
    let limit = w.int(i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = format!(
        "{} WHERE o.id > {after} AND {condition} ORDER BY o.id LIMIT {limit}",
        s.list_select
    );
    w.done(sql)
}

/// Counts per event type. Returns `event_type, unpublished, dead, published, oldest_age_us`.
pub(crate) fn event_types(s: &Statements) -> Built {
    let (live, dead, published) = (state::LIVE, state::DEAD, state::PUBLISHED);
    let count = |cond: String| match s.dialect {
        Dialect::MySql => format!("CAST(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END) AS SIGNED)"),
        _ => format!("sum(CASE WHEN {cond} THEN 1 ELSE 0 END)"),
    };
    let oldest = format!("min(CASE WHEN state = {live} THEN created_at END)");
    let age = match s.dialect {
        Dialect::Postgres => format!("(extract(epoch FROM now() - {oldest}) * 1000000)::bigint"),
        Dialect::MySql => format!("TIMESTAMPDIFF(MICROSECOND, {oldest}, UTC_TIMESTAMP(6))"),
        Dialect::Sqlite => format!("{} - {oldest}", super::sqlite::NOW),
    };
    let sql = format!(
        "SELECT event_type, {} AS unpublished, {} AS dead, {} AS published, {age} AS oldest_age_us \
         FROM {} GROUP BY event_type ORDER BY event_type",
        count(format!("state = {live}")),
        count(format!("state = {dead}")),
        count(format!("state = {published}")),
        s.quoted_table(),
    );
    Writer::new(s).done(sql)
}

/// The live claims. Returns `token, messages, expires_in_us`.
pub(crate) fn claims(s: &Statements) -> Built {
    let live = state::LIVE;
    let sql = match (&s.claims, s.dialect) {
        (Some(claims), _) => format!(
            "SELECT token, cardinality(ids)::bigint AS messages, \
             (extract(epoch FROM lease_until - now()) * 1000000)::bigint AS expires_in_us \
             FROM {} WHERE lease_until > now() ORDER BY token",
            claims.claims_table
        ),
        (None, dialect) => {
            let now = match dialect {
                Dialect::MySql => "UTC_TIMESTAMP(6)",
                _ => super::sqlite::NOW,
            };
            let expires = match dialect {
                Dialect::MySql => format!("TIMESTAMPDIFF(MICROSECOND, {now}, max(lease_until))"),
                _ => format!("max(lease_until) - {now}"),
            };
            format!(
                "SELECT lease_token AS token, count(*) AS messages, {expires} AS expires_in_us \
                 FROM {} WHERE state = {live} AND lease_token IS NOT NULL \
                 AND lease_until > {now} GROUP BY lease_token ORDER BY lease_token",
                s.quoted_table()
            )
        }
    };
    Writer::new(s).done(sql)
}

/// Makes up to `limit` of the rows `target` names due now, attempts reset.
pub(crate) fn retry(s: &Statements, target: &Retry, limit: usize) -> Built {
    let (live, dead) = (state::LIVE, state::DEAD);
    let action = format!(
        "UPDATE {} SET state = {live}, attempts = 0, available_at = {now}, \
         lease_until = NULL, lease_token = NULL",
        s.quoted_table(),
        now = s.now()
    );
    let mut w = Writer::new(s);
    let condition = match target {
        Retry::Message(id) => {
            let id = id.hyphenated().to_string();
            let id = match s.dialect {
                Dialect::Postgres => format!("{}::uuid", w.text(&id)),
                _ => w.text(&id),
            };
            format!(
                "o.message_id = {id} AND (o.state = {dead} OR ({}))",
                s.status_condition(Status::Failed)
            )
        }
        Retry::Dead { event_type, key } => w.filter(&Filter::dead(event_type.clone(), key.clone())),
    };
    w.batched(&action, &condition, limit)
}

/// The highest sequence number in the table (0 when it is empty). Returns `n`.
pub(crate) fn max_seq(s: &Statements) -> Built {
    let sql = format!("SELECT coalesce(max(id), 0) AS n FROM {}", s.quoted_table());
    Writer::new(s).done(sql)
}

/// Up to `limit` published rows of `target` after `after` and up to `through`, in sequence
/// order. Returns the columns of [`Statements::get`].
pub(crate) fn replay_page(
    s: &Statements,
    target: &Replay,
    through: i64,
    after: i64,
    limit: usize,
) -> Built {
    let mut w = Writer::new(s);
    let after = w.int(after);
    let through = w.int(through);
    let filter = w.filter(&Filter {
        status: Some(Status::Published),
        key: None,
        event_type: target.event_type.clone(),
    });
    let since = target
        .since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let since = w.int(since);
    let since = match s.dialect {
        Dialect::Postgres => format!("to_timestamp({since}::float8 / 1000000)"),
        Dialect::MySql => format!("TIMESTAMPADD(MICROSECOND, {since}, '1970-01-01 00:00:00')"),
        Dialect::Sqlite => since,
    };
    let limit = w.int(i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = format!(
        "{} WHERE o.id > {after} AND o.id <= {through} AND {filter} \
         AND o.published_at >= {since} ORDER BY o.id LIMIT {limit}",
        s.list_select
    );
    w.done(sql)
}

/// Deletes up to `limit` of the rows `target` names.
pub(crate) fn purge(s: &Statements, target: &Purge, limit: usize) -> Built {
    let action = format!("DELETE FROM {}", s.quoted_table());
    let mut w = Writer::new(s);
    let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let condition = match target {
        Purge::Dead {
            older_than,
            event_type,
        } => {
            let older = w.older_than("o.created_at", micros(*older_than));
            let filter = w.filter(&Filter::dead(event_type.clone(), None));
            format!("{filter} AND {older}")
        }
        Purge::Published { older_than } => {
            let older = w.older_than("o.published_at", micros(*older_than));
            format!("o.state = {} AND {older}", state::PUBLISHED)
        }
    };
    w.batched(&action, &condition, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::TableName;

    fn all() -> [Statements; 3] {
        [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite]
            .map(|d| Statements::new(d, TableName::default()))
    }

    #[test]
    fn placeholders_follow_the_order_values_are_bound_in() {
        let filter = Filter::status(Status::Dead).key("k").event_type("e");
        for s in all() {
            let built = list(&s, &filter, 7, 10);
            let values: Vec<String> = built
                .values
                .iter()
                .map(|v| match v {
                    Value::I64(n) => n.to_string(),
                    Value::Text(t) => t.clone(),
                })
                .collect();
            assert_eq!(values, ["7", "k", "e", "10"], "{:?}", s.dialect);
            let marks = match s.dialect {
                Dialect::Postgres => (1..=4)
                    .filter(|n| built.sql().contains(&format!("${n}")))
                    .count(),
                _ => built.sql().matches('?').count(),
            };
            assert_eq!(marks, 4, "{:?}: {}", s.dialect, built.sql());
        }
    }

    #[test]
    fn only_the_row_alias_is_removed() {
        assert_eq!(
            unqualified("o.state = 1 AND (o.id > 2) AND foo.bar = 3 AND NOT (o.x)"),
            "state = 1 AND (id > 2) AND foo.bar = 3 AND NOT (x)"
        );
    }

    #[test]
    fn mysql_limits_its_repairs_in_the_statement_itself() {
        let [pg, my, lite] = all();
        let target = Retry::Dead {
            event_type: Some("e".into()),
            key: None,
        };
        let mysql = retry(&my, &target, 100);
        assert!(
            mysql.sql().ends_with("ORDER BY id LIMIT ?") && !mysql.sql().contains("o."),
            "{}",
            mysql.sql()
        );
        for s in [pg, lite] {
            let built = purge(
                &s,
                &Purge::Published {
                    older_than: std::time::Duration::from_secs(1),
                },
                100,
            );
            assert!(
                built.sql().contains("WHERE id IN (SELECT o.id"),
                "{}",
                built.sql()
            );
        }
    }
}
