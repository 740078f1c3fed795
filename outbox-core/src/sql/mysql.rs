//! MySQL and MariaDB statements. Timestamps are `DATETIME(6)` in UTC.

use super::{Dialect, KeyLockSql, MySqlClaimSql, RowLeaseSql, Statements, TableName, state};

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
    // Per-key locks (see `KeyLockSql`): one row per slot, filled by one statement, so the
    // last slot present means all are.
    let locks = table.with_suffix("_key_locks").quoted('`');
    let mut create = create;
    create.push(format!(
        "CREATE TABLE IF NOT EXISTS {locks} (slot INT NOT NULL PRIMARY KEY) ENGINE=InnoDB"
    ));
    let digits = (0..16)
        .map(|n| format!("SELECT {n} AS n"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    create.push(format!(
        "INSERT IGNORE INTO {locks} (slot) \
         SELECT a.n * 4096 + b.n * 256 + c.n * 16 + d.n \
         FROM ({digits}) a, ({digits}) b, ({digits}) c, ({digits}) d \
         WHERE NOT EXISTS (SELECT 1 FROM {locks} WHERE slot = {last})",
        last = KeyLockSql::SLOTS - 1
    ));
    let columns = "message_id, event_type, partition_key, aggregate_type, payload, headers, \
                   created_at, available_at";
    let insert_one = format!("INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, {NOW}, {NOW})");
    let key_locks = KeyLockSql {
        insert_one: format!(
            "INSERT INTO {t} ({columns}) SELECT ?, ?, ?, ?, ?, ?, {NOW}, {NOW} \
             FROM {locks} WHERE slot = ? FOR UPDATE"
        ),
        table: locks,
        enabled: true,
    };
    let insert_one_delayed = format!(
        "INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, {NOW}, \
         TIMESTAMPADD(MICROSECOND, ?, {NOW}))"
    );
    let row_lease = row_lease(&t);
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
    let inbox = super::inbox::statements(Dialect::MySql, &table);
    create.extend(inbox.create.iter().cloned());
    Statements {
        inbox,
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
        row_lease: Some(row_lease),
        mysql_claim: Some(claim(&t)),
        key_locks: Some(key_locks),
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

/// A JSON array parameter of ids, as a table with one column `id`.
const IDS: &str = "JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$'))";

/// A JSON array parameter of keys, as a table with one column `k` compared as the outbox's
/// keys are (binary).
const KEYS: &str = "JSON_TABLE(?, '$[*]' COLUMNS (\
    k VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))";

/// The outbox rows (`o`) whose ids a JSON array parameter lists (`j`), for a multi-table
/// `UPDATE` or `DELETE`. The join order and the primary key are forced: on a small table the
/// optimizer would rather scan it, and a locking scan waits for every row a producer has
/// inserted and not yet committed.
fn by_ids(t: &str) -> String {
    format!("{IDS} AS j STRAIGHT_JOIN {t} o FORCE INDEX (PRIMARY) ON o.id = j.id")
}

fn row_lease(t: &str) -> RowLeaseSql {
    let (dead, published) = (state::DEAD, state::PUBLISHED);
    let by_ids = by_ids(t);
    let fenced = |set: &str| format!("UPDATE {by_ids} SET {set} WHERE o.lease_token = ?");
    RowLeaseSql {
        ack_delete: format!("DELETE o FROM {by_ids} WHERE o.lease_token = ?"),
        ack_keep: fenced(&format!(
            "o.state = {published}, o.published_at = {NOW}, o.lease_until = NULL, \
             o.lease_token = NULL"
        )),
        release: fenced("o.lease_until = NULL, o.lease_token = NULL"),
        renew: format!(
            "UPDATE {by_ids} SET o.lease_until = TIMESTAMPADD(MICROSECOND, ?, {NOW}) \
             WHERE o.lease_token = ? AND o.lease_until > {NOW}"
        ),
        fail: format!(
            "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (
        id BIGINT PATH '$[0]', delay BIGINT PATH '$[1]', dead INT PATH '$[2]',
        err TEXT CHARACTER SET utf8mb4 PATH '$[3]')) AS f
    STRAIGHT_JOIN {t} o FORCE INDEX (PRIMARY) ON o.id = f.id
SET o.attempts = o.attempts + 1, o.last_error = f.err,
    o.state = CASE WHEN f.dead = 1 THEN {dead} ELSE o.state END,
    o.available_at = CASE WHEN f.dead = 1 THEN o.available_at
                          ELSE TIMESTAMPADD(MICROSECOND, f.delay, {NOW}) END,
    o.lease_until = NULL, o.lease_token = NULL
WHERE o.lease_token = ?"
        ),
    }
}

fn claim(t: &str) -> MySqlClaimSql {
    let live = state::LIVE;
    let by_ids = by_ids(t);
    let window = |busy: &str| {
        format!(
            "SELECT {} FROM {t} WHERE state = {live} AND {due} \
             AND (lease_until IS NULL OR lease_until <= {NOW}) {busy}\
             ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
            envelope_columns(),
            due = super::due(NOW),
        )
    };
    MySqlClaimSql {
        // Without the key locks (`Statements::with_key_locks(false)`), ids of one key can
        // become visible out of order; so a key with any row in flight is treated as busy.
        busy_keys: format!(
            "SELECT partition_key FROM {t} WHERE lease_until > {NOW} \
               AND state = {live} AND partition_key IS NOT NULL
             UNION
             SELECT partition_key FROM {t} WHERE state = {live} AND attempts > 0 \
               AND available_at > {NOW} AND partition_key IS NOT NULL"
        ),
        window_listed: MySqlClaimSql::LISTED_BUSY_KEYS
            .iter()
            .map(|&len| match len {
                0 => window(""),
                len => window(&format!(
                    "AND (partition_key IS NULL OR partition_key NOT IN ({})) ",
                    vec!["?"; len].join(", ")
                )),
            })
            .collect(),
        window_json: window(&format!(
            "AND (partition_key IS NULL OR partition_key NOT IN (SELECT k FROM {KEYS} AS busy)) "
        )),
        gaps: format!(
            "SELECT partition_key, MIN(id) AS gap FROM {t} \
             WHERE state = {live} AND partition_key IN (SELECT k FROM {KEYS} AS w) \
             AND id <= ? AND id NOT IN (SELECT id FROM {IDS} AS c) GROUP BY partition_key"
        ),
        lease: format!(
            "UPDATE {by_ids} SET o.lease_until = TIMESTAMPADD(MICROSECOND, ?, {NOW}), o.lease_token = ?"
        ),
    }
}
