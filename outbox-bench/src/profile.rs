//! Where a relay batch spends its time: its claim against its settle.

use std::time::{Duration, Instant};

use outbox_sqlx::{Outbox, Settlement, Store};
use sqlx::{PgPool, Postgres};

use crate::BoxError;

/// Times the store's claim and settle (every row published) separately, batch by batch, as
/// one relay loop runs them.
pub(crate) async fn claims_and_settles(
    pool: &PgPool,
    outbox: &Outbox<Postgres>,
    batch: usize,
) -> Result<f64, BoxError> {
    let store = outbox.store(pool.clone());
    let (mut claim_t, mut settle_t, mut rows) = (Duration::ZERO, Duration::ZERO, 0usize);
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let claim = store.claim(batch, Duration::from_secs(30)).await?;
        let took = t.elapsed();
        claim_t += took;
        if (rows / batch).is_multiple_of(25) {
            eprintln!("profile: batch {} claim {took:?}", rows / batch);
        }
        if claim.messages.is_empty() {
            break;
        }
        rows += claim.messages.len();
        let settlement = Settlement {
            published: claim.messages.iter().map(|m| m.seq).collect(),
            failed: Vec::new(),
            released: Vec::new(),
        };
        let t = Instant::now();
        store.settle(claim.token, &settlement).await?;
        settle_t += t.elapsed();
    }
    let batches = rows.div_ceil(batch).max(1) as u32;
    eprintln!(
        "profile: {rows} rows, claim {:?}/batch, settle {:?}/batch",
        claim_t / batches,
        settle_t / batches
    );
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}
