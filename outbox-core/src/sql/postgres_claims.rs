//! PostgreSQL claims: a claim is one row in `<table>_claims` holding the claimed ids, so a
//! claim writes nothing to the outbox rows themselves; acks delete rows as the only per-row
//! write.
//!
//! Claims run one at a time per table, under a transaction-scoped advisory lock taken inside a
//! PL/pgSQL function before the claim query, whose snapshot then sees every claim committed
//! before it; one round trip per claim. A claim
//! records its ids and its keys; a key held by a live claim is busy for every other claim.

use super::{TableName, state};

/// The statements of the claims protocol for one table.
#[derive(Debug, Clone)]
pub struct ClaimsSql {
    /// The claims table, quoted.
    pub claims_table: String,
    /// Creates (or replaces) the claim function: the claim lock and the claim statement in one
    /// round trip.
    pub create_function: String,
    /// The claim function, quoted.
    pub function: String,
    /// Claims rows through the claim function. Parameters: limit, lease in microseconds, token.
    /// Returns the envelope columns.
    pub claim: String,
    /// Settles a whole claim and ends it. Parameters: token, published ids, failed ids, failed
    /// delays (µs), failed errors, failed dead flags, released ids. Returns the counts
    /// `published, failed, released`.
    pub settle: String,
    /// As `settle`, keeping published rows for the retention window.
    pub settle_keep: String,
    /// Acks some rows of a claim. Parameters: ids, token. Returns the count as `changed`.
    pub ack: String,
    /// As `ack`, keeping published rows.
    pub ack_keep: String,
    /// Releases some rows of a claim. Parameters: ids, token. Returns the count as `changed`.
    pub release: String,
    /// Fails some rows of a claim. Parameters: ids, delays (µs), errors, dead flags, token.
    /// Returns the count as `changed`.
    pub fail: String,
    /// Extends a live claim's lease. Parameters: token, lease in microseconds, the claim's
    /// ids. Returns `changed`: 1 when the claim was live and still held every id, else 0.
    pub renew: String,
    /// `true` when a row (aliased `o`) is in a live claim.
    pub leased: String,
}

/// Makes the calling statement's transaction commit without waiting for the WAL flush; used by
/// the claim and the settle only, never by producers. A database crash can then forget the last
/// few hundred milliseconds of claims and settles, which publishes those rows again
/// (at-least-once); each row is still first published in its key's order (ARCHITECTURE.md).
const RELAXED_COMMIT: &str = "set_config('synchronous_commit', 'off', true)";

fn failed_update(t: &str, from: &str, claimed: &str) -> String {
    let dead = state::DEAD;
    format!(
        "UPDATE {t} o SET attempts = o.attempts + 1, last_error = f.err,
        state = CASE WHEN f.dead THEN {dead} ELSE o.state END,
        available_at = CASE WHEN f.dead THEN o.available_at
                            ELSE now() + f.delay * interval '1 microsecond' END
    FROM {from} AS f(id, delay, err, dead)
    WHERE o.id = f.id AND o.id IN {claimed} RETURNING 1"
    )
}

fn acked(t: &str, keep: bool, ids: &str, claimed: &str) -> String {
    if keep {
        format!(
            "UPDATE {t} SET state = {}, published_at = now() \
             WHERE id = ANY({ids}) AND id IN {claimed} RETURNING 1",
            state::PUBLISHED
        )
    } else {
        format!("DELETE FROM {t} WHERE id = ANY({ids}) AND id IN {claimed} RETURNING 1")
    }
}

/// Removes `ids` from the live claim `token` and names its ids before that `old`. A claim left
/// with no ids ends at once (its lease is moved to the past), so its keys are free again.
fn shrink(c: &str, ids: &str, token: &str) -> String {
    format!(
        "old AS (
    SELECT ids FROM {c} WHERE token = {token} AND lease_until > now()
), shrink AS (
    UPDATE {c} k SET
        ids = ARRAY(SELECT x FROM unnest(k.ids) x WHERE x <> ALL({ids})),
        lease_until = CASE WHEN k.ids <@ {ids} THEN '-infinity' ELSE k.lease_until END
    WHERE k.token = {token} AND k.lease_until > now()
)"
    )
}

pub(super) fn claims_sql(
    table: &TableName,
    envelope_columns: &str,
    envelope_select: &str,
) -> ClaimsSql {
    let t = table.quoted('"');
    let c = claims_table(table).quoted('"');
    let function = table.with_suffix("_claim").quoted('"');
    let live = state::LIVE;
    let due = super::due("now()");
    let claimed = "(SELECT unnest(ids) FROM old)";
    // A key is skipped while a live claim holds any of its rows (claims take a key's rows as a
    // prefix, so a held key's head is in flight) or while a row waits for its retry. Retrying
    // keys are left out of the scan, so a failing key's backlog never fills the window; held
    // keys are dropped after it, so a hot key in flight costs one window, not its backlog.
    // Among the remaining candidates, the only rows of a key that can sit older than a
    // candidate without being one are delayed rows: one probe per key on an index that holds
    // only those, and none at all while no row anywhere is delayed (one probe of the same index
    // gates them: a batch of 500 rows on 500 keys spent a fifth of its claim on empty probes).
    // A claim records its keys as they come, repeats and all: `held` reads them as a set, and
    // sorting them for `DISTINCT` (in the database's collation) cost a tenth of the claim.
    let claim = format!(
        "WITH expired AS (
    DELETE FROM {c} WHERE lease_until <= now()
), live_claims AS (
    SELECT ids, keys FROM {c} WHERE lease_until > now()
), held AS (
    SELECT DISTINCT unnest(keys) AS partition_key FROM live_claims
), retrying AS (
    SELECT DISTINCT partition_key FROM {t}
    WHERE state = {live} AND attempts > 0 AND partition_key IS NOT NULL
      AND available_at > now()
), cand AS (
    SELECT {envelope_columns} FROM {t} o
    WHERE state = {live} AND {due}
      AND id NOT IN (SELECT unnest(ids) FROM live_claims)
      AND (partition_key IS NULL OR partition_key NOT IN (SELECT partition_key FROM retrying))
    ORDER BY id
    LIMIT $1
), gaps AS (
    SELECT k.partition_key, w.gap
    FROM (SELECT partition_key, max(id) AS last FROM cand
          WHERE partition_key IS NOT NULL GROUP BY partition_key) k
    CROSS JOIN LATERAL (
        SELECT o.id AS gap FROM {t} o
        WHERE o.partition_key = k.partition_key AND o.state = {live}
          AND o.available_at > o.created_at AND o.available_at > now() AND o.id <= k.last
        ORDER BY o.id LIMIT 1
    ) w
    WHERE EXISTS (SELECT 1 FROM {t} d WHERE d.state = {live} AND d.available_at > d.created_at
                  AND d.available_at > now())
), picked AS (
    SELECT c.* FROM cand c LEFT JOIN gaps g ON g.partition_key = c.partition_key
    WHERE (g.gap IS NULL OR c.id < g.gap)
      AND (c.partition_key IS NULL OR c.partition_key NOT IN (SELECT partition_key FROM held))
), recorded AS (
    INSERT INTO {c} (token, lease_until, ids, keys)
    SELECT $3, now() + $2 * interval '1 microsecond', array_agg(id),
           coalesce(array_agg(partition_key) FILTER (WHERE partition_key IS NOT NULL), '{{}}')
    FROM picked
    HAVING count(*) > 0
)
SELECT * FROM picked"
    );
    let settle = |keep: bool| {
        format!(
            "WITH old AS (
    DELETE FROM {c} WHERE token = $1 AND lease_until > now() RETURNING ids
), acked AS (
    {acked}
), failed AS (
    {failed}
)
SELECT (SELECT count(*) FROM acked) AS published, (SELECT count(*) FROM failed) AS failed,
       (SELECT count(*) FROM unnest($7::bigint[]) r WHERE r IN {claimed}) AS released
FROM (SELECT {RELAXED_COMMIT}) AS relaxed",
            acked = acked(&t, keep, "$2::bigint[]", claimed),
            failed = failed_update(
                &t,
                "unnest($3::bigint[], $4::bigint[], $5::text[], $6::bool[])",
                claimed
            ),
        )
    };
    let ack = |keep: bool| {
        format!(
            "WITH {shrink}, acked AS (
    {acked}
)
SELECT count(*) AS changed FROM acked",
            shrink = shrink(&c, "$1::bigint[]", "$2"),
            acked = acked(&t, keep, "$1::bigint[]", claimed),
        )
    };
    ClaimsSql {
        create_function: format!(
            "CREATE OR REPLACE FUNCTION {function}(p_limit bigint, p_lease bigint, p_token bigint)
RETURNS TABLE (id bigint, message_id uuid, event_type text, partition_key text,
               aggregate_type text, payload bytea, headers text, created_us bigint,
               attempts integer)
LANGUAGE plpgsql VOLATILE
-- The claim is a few milliseconds of index work; on a large backlog its estimated cost passes
-- jit_above_cost and JIT compilation alone took ~600 ms per claim here.
SET jit = off
-- Its plan does not depend on the arguments (an ordered walk of the primary key under a limit,
-- whatever the limit), but the plan cache kept planning it afresh for every call: a third of
-- each claim, spent while every other claim of the table waits for the claim lock.
SET plan_cache_mode = force_generic_plan
AS $claim$
#variable_conflict use_column
BEGIN
    -- Claims of one table run one at a time; the query below takes its snapshot after the
    -- lock, so it sees every claim committed before this one.
    PERFORM pg_advisory_xact_lock(hashtextextended('{table}/claims', 0));
    -- This claim commits without waiting for the WAL flush: a database crash can forget it,
    -- which only publishes its rows again (at-least-once).
    PERFORM {RELAXED_COMMIT};
    RETURN QUERY {body};
END
$claim$",
            body = claim
                .replace("$1", "p_limit")
                .replace("$2", "p_lease")
                .replace("$3", "p_token"),
        ),
        claim: format!("SELECT {envelope_select} FROM {function}($1, $2, $3)"),
        function,
        settle: settle(false),
        settle_keep: settle(true),
        ack: ack(false),
        ack_keep: ack(true),
        release: format!(
            "WITH {shrink}
SELECT count(*) AS changed FROM unnest($1::bigint[]) r WHERE r IN {claimed}",
            shrink = shrink(&c, "$1::bigint[]", "$2"),
        ),
        fail: format!(
            "WITH {shrink}, failed AS (
    {failed}
)
SELECT count(*) AS changed FROM failed",
            shrink = shrink(&c, "$1::bigint[]", "$5"),
            failed = failed_update(
                &t,
                "unnest($1::bigint[], $2::bigint[], $3::text[], $4::bool[])",
                claimed
            ),
        ),
        renew: format!(
            "WITH renewed AS (
    UPDATE {c} SET lease_until = now() + $2 * interval '1 microsecond'
    WHERE token = $1 AND lease_until > now() AND ids @> $3::bigint[] RETURNING 1
)
SELECT count(*) AS changed FROM renewed"
        ),
        leased: format!(
            "EXISTS (SELECT 1 FROM {c} k WHERE k.lease_until > now() AND o.id = ANY(k.ids))"
        ),
        claims_table: c,
    }
}

/// The claims table of `table`: `<table>_claims` in the same schema.
pub(super) fn claims_table(table: &TableName) -> TableName {
    table.with_suffix("_claims")
}
