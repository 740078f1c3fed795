//! PostgreSQL statements.

use super::{Dialect, Statements, TableName, postgres_claims, state};

fn micros(col: &str) -> String {
    format!("(extract(epoch FROM {col}) * 1000000)::bigint")
}

/// The envelope columns in the claim function's result order (unaliased: its `RETURNS TABLE`
/// names them).
fn envelope_columns(alias: &str) -> String {
    format!(
        "{a}id, {a}message_id, {a}event_type, {a}partition_key, {a}aggregate_type, {a}payload, \
         {a}headers::text, {created}, {a}attempts",
        a = alias,
        created = micros(&format!("{alias}created_at")),
    )
}

/// The envelope columns as every adapter reads them: aliased, one type on every database.
fn envelope_select(alias: &str) -> String {
    format!(
        "{a}id AS seq, {a}message_id::text AS message_id, {a}event_type, {a}partition_key, \
         {a}aggregate_type, {a}payload, {a}headers::text AS headers, {created} AS created_us, \
         {a}attempts::bigint AS attempts",
        a = alias,
        created = micros(&format!("{alias}created_at")),
    )
}

pub(super) fn statements(table: TableName) -> Statements {
    let t = table.quoted('"');
    let base = table.table();
    let live = state::LIVE;
    let dead = state::DEAD;
    let published = state::PUBLISHED;
    let mut create = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id     uuid NOT NULL,
    event_type     text NOT NULL,
    partition_key  text,
    aggregate_type text,
    payload        bytea NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{{}}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    available_at   timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    state          smallint NOT NULL DEFAULT {live},
    lease_until    timestamptz,
    lease_token    bigint,
    published_at   timestamptz
)"
        ),
        format!("CREATE UNIQUE INDEX IF NOT EXISTS \"{base}_message_id_key\" ON {t} (message_id)"),
        // Keys waiting for a retry: a small set, read on every claim.
        format!(
            "CREATE INDEX IF NOT EXISTS \"{base}_retry_idx\" ON {t} (partition_key) \
             WHERE state = {live} AND attempts > 0"
        ),
        // Rows not yet due (delayed, or waiting for a retry): nearly empty, probed per key.
        format!(
            "CREATE INDEX IF NOT EXISTS \"{base}_waiting_idx\" ON {t} (partition_key, id) \
             WHERE state = {live} AND available_at > created_at"
        ),
        format!("CREATE INDEX IF NOT EXISTS \"{base}_dead_idx\" ON {t} (id) WHERE state = {dead}"),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{base}_published_idx\" ON {t} (published_at) \
             WHERE state = {published}"
        ),
    ];

    let columns = "message_id, event_type, partition_key, aggregate_type, payload, headers";
    // The key lock is a one-time filter, so it is taken before the row's id is drawn from the
    // sequence: a second transaction on the same key draws its id after the first commits.
    let lock = key_lock(&table, "$3::text");
    let insert_one = format!(
        "INSERT INTO {t} ({columns}) SELECT $1::uuid, $2, $3, $4, $5, $6::jsonb WHERE {lock}"
    );
    let insert_one_delayed = format!(
        "INSERT INTO {t} ({columns}, available_at) \
         SELECT $1::uuid, $2, $3, $4, $5, $6::jsonb, now() + $7 * interval '1 microsecond' \
         WHERE {lock}"
    );

    // The claim function's result, aliased and typed as every adapter reads it.
    let claimed = "id AS seq, message_id::text AS message_id, event_type, partition_key, \
                   aggregate_type, payload, headers, created_us, attempts::bigint AS attempts";
    let claims = postgres_claims::claims_sql(&table, &envelope_columns("o."), claimed);
    let claims_table = &claims.claims_table;
    create.push(format!(
        "CREATE TABLE IF NOT EXISTS {claims_table} (
    token       bigint PRIMARY KEY,
    lease_until timestamptz NOT NULL,
    ids         bigint[] NOT NULL,
    keys        text[] NOT NULL
)"
    ));
    create.push(claims_lz4(claims_table));
    create.push(claims.create_function.clone());
    let leased = claims.leased.clone();

    let inflight = format!(
        "WITH inflight AS (SELECT unnest(ids) AS id FROM {claims_table} WHERE lease_until > now())"
    );
    let in_claim = "id IN (SELECT id FROM inflight)";
    let stats = format!(
        "{inflight}
SELECT
    count(*) FILTER (WHERE state = {live} AND attempts = 0 AND NOT {in_claim}) AS pending,
    count(*) FILTER (WHERE state = {live} AND {in_claim}) AS claimed,
    count(*) FILTER (WHERE state = {live} AND attempts > 0 AND NOT {in_claim}) AS failed,
    count(*) FILTER (WHERE state = {dead}) AS dead,
    count(*) FILTER (WHERE state = {published}) AS published,
    {age} AS oldest_age_us
FROM {t}",
        age = micros("now() - min(created_at) FILTER (WHERE state = 0)")
    );

    let stored = format!(
        "SELECT {cols}, o.state::bigint AS state, \
         (CASE WHEN {leased} THEN 1 ELSE 0 END)::bigint AS leased, o.last_error, \
         {available} AS available_us FROM {t} o",
        cols = envelope_select("o."),
        available = micros("o.available_at"),
    );
    let get = format!("{stored} WHERE o.message_id = $1::uuid");
    let revive = format!(
        "UPDATE {t} SET state = {live}, attempts = 0, available_at = now(), \
         lease_until = NULL, lease_token = NULL WHERE state = {dead}"
    );

    let inbox = super::inbox::statements(Dialect::Postgres, &table);
    create.extend(inbox.create.iter().cloned());

    // One statement, so it needs no transaction of its own and is atomic on every adapter:
    // the lock lasts until it ends (or until the caller's transaction does).
    let migrate = vec![format!(
        "DO $outbox_migrate$\nBEGIN\n    PERFORM pg_advisory_xact_lock(hashtext('outbox-migrate:{table}'));\n    {};\nEND\n$outbox_migrate$",
        create.join(";\n    ")
    )];
    Statements {
        inbox,
        dialect: Dialect::Postgres,
        notify: false,
        migrate,
        list_select: stored,
        leased,
        create,
        insert_one,
        insert_one_delayed,
        claim: claims.claim.clone(),
        claims: Some(claims),
        row_lease: None,
        mysql_claim: None,
        key_locks: None,
        stats,
        get,
        retry_dead_one: format!("{revive} AND message_id = $1::uuid"),
        retry_dead_all: revive,
        purge_published: format!(
            "DELETE FROM {t} WHERE state = {published} \
             AND published_at < now() - $1 * interval '1 microsecond'"
        ),
        table,
    }
}

/// Compresses the claims table's arrays with LZ4 where the server has it (PostgreSQL 14 and
/// later, built with LZ4, as the usual packages are), and leaves them on the default `pglz`
/// elsewhere. A claim of 500 rows writes two arrays of a few kilobytes, compressed while every
/// other claim of the table waits for the claim lock: `pglz` was a tenth of the claim's time,
/// and LZ4 made the claim 13% faster. Runs once: a later migration finds it done.
fn claims_lz4(claims_table: &str) -> String {
    format!(
        "DO $claims_lz4$
BEGIN
    IF (SELECT attcompression FROM pg_attribute
        WHERE attrelid = '{claims_table}'::regclass AND attname = 'ids') IS DISTINCT FROM 'l' THEN
        ALTER TABLE {claims_table} ALTER ids SET COMPRESSION lz4, ALTER keys SET COMPRESSION lz4;
    END IF;
EXCEPTION
    -- No `attcompression` (before PostgreSQL 14), or a server built without LZ4.
    WHEN undefined_column OR feature_not_supported OR invalid_parameter_value THEN NULL;
END
$claims_lz4$"
    )
}

/// The LISTEN/NOTIFY channel of `table`.
pub(super) fn notify_channel(table: &TableName) -> String {
    table.to_string()
}

/// The inserts of `statements` with a `pg_notify` on the table's channel folded into their
/// one-time filter: no extra round trip, and identical notifications in one transaction are
/// delivered once.
pub(super) fn with_notify(mut statements: Statements) -> Statements {
    let table = statements.table.clone();
    let notify = format!(
        " AND pg_notify('{}', '') IS NOT NULL",
        notify_channel(&table)
    );
    let lock = key_lock(&table, "$3::text");
    statements.insert_one = statements
        .insert_one
        .replace(&format!("WHERE {lock}"), &format!("WHERE {lock}{notify}"));
    statements.insert_one_delayed = statements
        .insert_one_delayed
        .replace(&format!("WHERE {lock}"), &format!("WHERE {lock}{notify}"));
    statements.notify = true;
    statements
}

/// A condition that takes the transaction-scoped advisory lock of `key` (an SQL expression)
/// in `table`'s namespace, and is true; true at once for a NULL key.
fn key_lock(table: &TableName, key: &str) -> String {
    format!(
        "({key} IS NULL OR pg_advisory_xact_lock(hashtextextended('{table}/' || {key}, 0)) \
         IS NOT NULL)"
    )
}

pub(super) fn insert_many_arrays(table: &TableName, notify: bool) -> String {
    let t = table.quoted('"');
    let notify = if notify {
        format!(
            " AND pg_notify('{}', '') IS NOT NULL",
            notify_channel(table)
        )
    } else {
        String::new()
    };
    // Every distinct key is locked once, in hash order (so two batches never wait on each
    // other in opposite orders), before any id is drawn.
    format!(
        "INSERT INTO {t} (message_id, event_type, partition_key, aggregate_type, payload, headers, \
         available_at)
SELECT m::uuid, e, k, a, p, h::jsonb, now() + d * interval '1 microsecond'
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::bigint[])
     WITH ORDINALITY AS u(m, e, k, a, p, h, d, ord)
WHERE (SELECT count(*) FROM (
        SELECT pg_advisory_xact_lock(x.h) FROM (
            SELECT DISTINCT hashtextextended('{table}/' || key, 0) AS h
            FROM unnest($3::text[]) AS key WHERE key IS NOT NULL ORDER BY 1) x) l) >= 0{notify}
ORDER BY ord"
    )
}
