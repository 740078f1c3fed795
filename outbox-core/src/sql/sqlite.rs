//! SQLite statements. Timestamps are integers: microseconds since the Unix epoch.

use super::{Dialect, RowLeaseSql, Statements, TableName, state};

/// The current time in microseconds since the Unix epoch.
pub(super) const NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

/// The envelope columns as every adapter reads them: aliased, one type on every database.
const ENVELOPE_COLUMNS: &str = "id AS seq, message_id, event_type, partition_key, \
                                aggregate_type, payload, headers, created_at AS created_us, \
                                attempts";

pub(super) fn statements(table: TableName) -> Statements {
    let t = table.quoted('"');
    let base = table.table();
    let (live, dead, published) = (state::LIVE, state::DEAD, state::PUBLISHED);
    let now = NOW;
    let due = super::due(now);
    let create = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (
    id             INTEGER PRIMARY KEY,
    message_id     TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    partition_key  TEXT,
    aggregate_type TEXT,
    payload        BLOB NOT NULL,
    headers        TEXT NOT NULL DEFAULT '{{}}',
    created_at     INTEGER NOT NULL,
    available_at   INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    state          INTEGER NOT NULL DEFAULT {live},
    lease_until    INTEGER,
    lease_token    INTEGER,
    published_at   INTEGER
)"
        ),
        format!("CREATE UNIQUE INDEX IF NOT EXISTS \"{base}_message_id_key\" ON {t} (message_id)"),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{base}_key_idx\" ON {t} (partition_key, id) \
             WHERE state = {live} AND partition_key IS NOT NULL"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{base}_retry_idx\" ON {t} (partition_key) \
             WHERE state = {live} AND attempts > 0"
        ),
        format!("CREATE INDEX IF NOT EXISTS \"{base}_dead_idx\" ON {t} (id) WHERE state = {dead}"),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{base}_published_idx\" ON {t} (published_at) \
             WHERE state = {published}"
        ),
    ];
    let columns = "message_id, event_type, partition_key, aggregate_type, payload, headers, \
                   created_at, available_at";
    let insert_one = format!("INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, {now}, {now})");
    let insert_one_delayed =
        format!("INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, {now}, {now} + ?)");

    // SQLite has one writer at a time, so the claim needs no row locks: the statement runs
    // alone. The per-key rule is the same as on PostgreSQL. A key's gap is its first live row
    // at or below its last candidate that is not eligible (every eligible row up to the last
    // candidate is a candidate). `gaps` is materialized so each key's gap is looked up once,
    // not once per candidate: on a backlog that is all one key, that was 500 scans of 500 rows
    // per claim, and the claim took 120 ms instead of 5.
    // Due and not leased: a live row a claim may take (when its key is not busy).
    let eligible = format!("{due} AND (lease_until IS NULL OR lease_until <= {now})");
    let claim = format!(
        "WITH busy AS (
    SELECT DISTINCT partition_key FROM {t}
    WHERE state = {live} AND attempts > 0 AND partition_key IS NOT NULL
      AND available_at > {now}
), cand AS (
    SELECT id, partition_key FROM {t}
    WHERE state = {live} AND {eligible}
      AND (partition_key IS NULL OR partition_key NOT IN (SELECT partition_key FROM busy))
    ORDER BY id
    LIMIT ?
), gaps AS MATERIALIZED (
    SELECT k.partition_key, (
        SELECT o.id FROM {t} o
        WHERE o.partition_key = k.partition_key AND o.state = {live} AND o.id <= k.last
          AND NOT ({eligible})
        ORDER BY o.id LIMIT 1
    ) AS gap
    FROM (SELECT partition_key, max(id) AS last FROM cand
          WHERE partition_key IS NOT NULL GROUP BY partition_key) k
), picked AS (
    SELECT c.id FROM cand c LEFT JOIN gaps g ON g.partition_key = c.partition_key
    WHERE g.gap IS NULL OR c.id < g.gap
)
UPDATE {t} SET lease_until = {now} + ?, lease_token = ?
WHERE id IN (SELECT id FROM picked)
RETURNING {ENVELOPE_COLUMNS}"
    );

    // The rows come as one JSON array (`json_each`), so every statement has two parameters
    // (the renewal a third: the lease).
    let fenced = "id IN (SELECT value FROM json_each(?1)) AND lease_token = ?2";
    let row_lease = RowLeaseSql {
        ack_delete: format!("DELETE FROM {t} WHERE {fenced}"),
        ack_keep: format!(
            "UPDATE {t} SET state = {published}, published_at = {now}, lease_until = NULL, \
             lease_token = NULL WHERE {fenced}"
        ),
        release: format!("UPDATE {t} SET lease_until = NULL, lease_token = NULL WHERE {fenced}"),
        renew: format!(
            "UPDATE {t} SET lease_until = {now} + ?2 \
             WHERE id IN (SELECT value FROM json_each(?1)) AND lease_token = ?3 \
             AND lease_until > {now}"
        ),
        fail: format!(
            "UPDATE {t} AS o SET attempts = o.attempts + 1, last_error = f.value ->> '$[3]',
    state = CASE WHEN f.value ->> '$[2]' = 1 THEN {dead} ELSE o.state END,
    available_at = CASE WHEN f.value ->> '$[2]' = 1 THEN o.available_at
                        ELSE {now} + (f.value ->> '$[1]') END,
    lease_until = NULL, lease_token = NULL
FROM json_each(?1) AS f
WHERE o.id = f.value ->> '$[0]' AND o.lease_token = ?2"
        ),
    };

    let leased = format!("(lease_token IS NOT NULL AND lease_until > {now})");
    let stats = format!(
        "SELECT
    coalesce(sum(CASE WHEN state = {live} AND attempts = 0 AND NOT {leased} THEN 1 ELSE 0 END), 0)
        AS pending,
    coalesce(sum(CASE WHEN state = {live} AND {leased} THEN 1 ELSE 0 END), 0) AS claimed,
    coalesce(sum(CASE WHEN state = {live} AND attempts > 0 AND NOT {leased} THEN 1 ELSE 0 END), 0)
        AS failed,
    coalesce(sum(CASE WHEN state = {dead} THEN 1 ELSE 0 END), 0) AS dead,
    coalesce(sum(CASE WHEN state = {published} THEN 1 ELSE 0 END), 0) AS published,
    {now} - min(CASE WHEN state = {live} THEN created_at END) AS oldest_age_us
FROM {t}"
    );
    let stored = format!(
        "SELECT {ENVELOPE_COLUMNS}, state, CASE WHEN {leased} THEN 1 ELSE 0 END AS leased, \
         last_error, available_at AS available_us FROM {t} o"
    );
    let get = format!("{stored} WHERE message_id = ?");
    let revive = format!(
        "UPDATE {t} SET state = {live}, attempts = 0, available_at = {now}, \
         lease_until = NULL, lease_token = NULL WHERE state = {dead}"
    );
    let inbox = super::inbox::statements(Dialect::Sqlite, &table);
    let mut create = create;
    create.extend(inbox.create.iter().cloned());
    Statements {
        inbox,
        notify: false,
        claims: None,
        dialect: Dialect::Sqlite,
        migrate: create.clone(),
        list_select: stored,
        leased,
        create,
        insert_one,
        insert_one_delayed,
        claim,
        row_lease: Some(row_lease),
        mysql_claim: None,
        key_locks: None,
        stats,
        get,
        retry_dead_one: format!("{revive} AND message_id = ?"),
        retry_dead_all: revive,
        purge_published: format!(
            "DELETE FROM {t} WHERE state = {published} AND published_at < {now} - ?"
        ),
        table,
    }
}
