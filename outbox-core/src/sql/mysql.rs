//! MySQL and MariaDB statements. Timestamps are `DATETIME(6)` in UTC.

use super::{Dialect, RowLeaseSql, Statements, TableName, question_marks, state};

const NOW: &str = "UTC_TIMESTAMP(6)";

fn micros(expr: &str) -> String {
    format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {expr})")
}

/// The envelope columns as every adapter reads them: aliased, one type on every database.
fn envelope_columns() -> String {
    format!(
        "id AS seq, message_id, event_type, partition_key, aggregate_type, payload, headers, \
         {} AS created_us, CAST(attempts AS SIGNED) AS attempts",
        micros("created_at")
    )
}

pub(super) fn statements(table: TableName) -> Statements {
    let t = table.quoted('`');
    let base = table.table();
    let (live, dead, published) = (state::LIVE, state::DEAD, state::PUBLISHED);
    let create = vec![format!(
        "CREATE TABLE IF NOT EXISTS {t} (
    id             BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id     CHAR(36) NOT NULL,
    event_type     VARCHAR(255) NOT NULL,
    partition_key  VARCHAR(255) NULL,
    aggregate_type VARCHAR(255) NULL,
    payload        LONGBLOB NOT NULL,
    headers        TEXT NOT NULL,
    created_at     DATETIME(6) NOT NULL,
    available_at   DATETIME(6) NOT NULL,
    attempts       INT NOT NULL DEFAULT 0,
    last_error     TEXT NULL,
    state          SMALLINT NOT NULL DEFAULT {live},
    lease_until    DATETIME(6) NULL,
    lease_token    BIGINT NULL,
    published_at   DATETIME(6) NULL,
    UNIQUE KEY `{base}_message_id_key` (message_id),
    KEY `{base}_key_idx` (partition_key, id),
    KEY `{base}_lease_idx` (lease_until),
    KEY `{base}_attempts_idx` (state, attempts),
    KEY `{base}_published_idx` (state, published_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )];
    let columns = "message_id, event_type, partition_key, aggregate_type, payload, headers, \
                   created_at, available_at";
    let insert_one = format!("INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, {NOW}, {NOW})");
    let insert_one_delayed = format!(
        "INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, {NOW}, \
         TIMESTAMPADD(MICROSECOND, ?, {NOW}))"
    );
    // MySQL applies single-table assignments left to right, so `available_at` sees the new
    // `state`: each parameter is then bound once.
    let fail_one = format!(
        "UPDATE {t} SET attempts = attempts + 1, last_error = ?,
    state = CASE WHEN ? = 1 THEN {dead} ELSE state END,
    available_at = CASE WHEN state = {dead} THEN available_at
                        ELSE TIMESTAMPADD(MICROSECOND, ?, {NOW}) END,
    lease_until = NULL, lease_token = NULL
WHERE id = ? AND lease_token = ?"
    );
    let leased = format!("(lease_token IS NOT NULL AND lease_until > {NOW})");
    let count = |cond: &str| {
        format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS SIGNED)")
    };
    let stats = format!(
        "SELECT {} AS pending, {} AS claimed, {} AS failed, {} AS dead, {} AS published, \
         TIMESTAMPDIFF(MICROSECOND, MIN(CASE WHEN state = {live} THEN created_at END), {NOW}) \
         AS oldest_age_us FROM {t}",
        count(&format!("state = {live} AND attempts = 0 AND NOT {leased}")),
        count(&format!("state = {live} AND {leased}")),
        count(&format!("state = {live} AND attempts > 0 AND NOT {leased}")),
        count(&format!("state = {dead}")),
        count(&format!("state = {published}")),
    );
    let stored = format!(
        "SELECT {}, CAST(state AS SIGNED) AS state, \
         CAST(CASE WHEN {leased} THEN 1 ELSE 0 END AS SIGNED) AS leased, last_error, \
         {} AS available_us FROM {t} o",
        envelope_columns(),
        micros("available_at")
    );
    let get = format!("{stored} WHERE message_id = ?");
    let revive = format!(
        "UPDATE {t} SET state = {live}, attempts = 0, available_at = {NOW}, \
         lease_until = NULL, lease_token = NULL WHERE state = {dead}"
    );
    Statements {
        notify: false,
        claims: None,
        dialect: Dialect::MySql,
        migrate: create.clone(),
        list_select: stored,
        leased,
        create,
        insert_one,
        insert_one_delayed,
        claim: String::new(),
        row_lease: Some(RowLeaseSql::new(t.clone(), NOW, fail_one)),
        stats,
        get,
        retry_dead_one: format!("{revive} AND message_id = ?"),
        retry_dead_all: revive,
        purge_published: format!(
            "DELETE FROM {t} WHERE state = {published} \
             AND published_at < TIMESTAMPADD(MICROSECOND, -?, {NOW})"
        ),
        table,
    }
}

/// Keys leased or waiting for a retry. No parameters; returns one `partition_key`
/// column.
pub fn claim_busy_keys(s: &Statements) -> String {
    let t = s.quoted_table();
    let live = state::LIVE;
    // MySQL has no per-key advisory lock that lasts until commit, so ids of one key can
    // become visible out of order; a key with any row in flight is treated as busy.
    format!(
        "SELECT partition_key FROM {t} WHERE lease_until > {NOW} \
           AND state = {live} AND partition_key IS NOT NULL
         UNION
         SELECT partition_key FROM {t} WHERE state = {live} AND attempts > 0 \
           AND available_at > {NOW} AND partition_key IS NOT NULL"
    )
}

/// The candidate window, locked with `SKIP LOCKED`. Parameters: the busy keys to exclude as a
/// JSON array of strings (one parameter however many there are), then the limit. Returns the
/// envelope columns.
pub fn claim_window(s: &Statements) -> String {
    let t = s.quoted_table();
    let live = state::LIVE;
    format!(
        "SELECT {} FROM {t} WHERE state = {live} AND {due} \
         AND (lease_until IS NULL OR lease_until <= {NOW}) \
         AND (partition_key IS NULL OR partition_key NOT IN (\
             SELECT k FROM JSON_TABLE(?, '$[*]' COLUMNS (\
                 k VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS busy)) \
         ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
        envelope_columns(),
        due = super::due(NOW),
    )
}

/// The first live row of each key outside the window. Parameters: `keys` keys, the window's
/// highest id, then `ids` window ids. Returns `partition_key, gap`.
pub fn claim_gaps(s: &Statements, keys: usize, ids: usize) -> String {
    let t = s.quoted_table();
    format!(
        "SELECT partition_key, MIN(id) AS gap FROM {t} WHERE state = {} AND partition_key IN ({}) \
         AND id <= ? AND id NOT IN ({}) GROUP BY partition_key",
        state::LIVE,
        question_marks(keys),
        question_marks(ids)
    )
}

/// Lease the picked rows. Parameters: lease in microseconds, token, then `n` ids.
pub fn claim_lease(s: &Statements, n: usize) -> String {
    let t = s.quoted_table();
    format!(
        "UPDATE {t} SET lease_until = TIMESTAMPADD(MICROSECOND, ?, {NOW}), lease_token = ? \
         WHERE id IN ({})",
        question_marks(n)
    )
}
