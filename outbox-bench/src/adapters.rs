//! The other adapters' stores against the sqlx store, on the same table and backlog.

use std::sync::Arc;

use outbox_sqlx::memory::NullPublisher;
use sqlx::Pool;

use crate::BoxError;
use crate::backend::Backend;
use crate::drain::{self, DrainSpec};
use crate::fixtures::{Keys, Table, median};

/// Medians over `rounds` interleaved rounds of the diesel and the diesel-async store's drain
/// rate / the sqlx store's, each draining the same preloaded backlog (1,000 keys) to a null
/// publisher with the same settings.
pub(crate) async fn drain_ratios<DB: Backend>(
    pool: &Pool<DB>,
    url: &str,
    table: &Table<DB>,
    spec: DrainSpec,
    rounds: usize,
    progress: &impl Fn(&str),
) -> Result<(f64, f64), BoxError> {
    let statements = Arc::clone(table.outbox.outbox_table().statements());
    let diesel = DB::diesel_store(url, Arc::clone(&statements))?;
    let diesel_async = DB::diesel_async_store(url, statements)?;
    let uniform = Keys::Uniform(1_000);
    let (mut sync_ratios, mut async_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        progress(&format!("  round {}", round + 1));
        let sqlx = || drain::relay_null(pool, table, uniform, spec);
        let sync = || drain::relay_on(pool, table, uniform, spec, NullPublisher, || diesel.clone());
        let asynchronous = || {
            drain::relay_on(pool, table, uniform, spec, NullPublisher, || {
                diesel_async.clone()
            })
        };
        // Alternate which goes first so drift does not favour one side.
        let (x, d, a) = if round % 2 == 0 {
            let x = sqlx().await?;
            let d = sync().await?;
            (x, d, asynchronous().await?)
        } else {
            let a = asynchronous().await?;
            let d = sync().await?;
            (sqlx().await?, d, a)
        };
        progress(&format!(
            "    rows/s: sqlx {x:.0}, diesel {d:.0}, diesel-async {a:.0}"
        ));
        sync_ratios.push(d / x);
        async_ratios.push(a / x);
    }
    Ok((median(sync_ratios), median(async_ratios)))
}
