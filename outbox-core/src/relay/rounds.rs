//! Splitting a claimed batch into publish rounds that never hold two messages of one key.

use std::collections::HashMap;

use crate::message::Envelope;

/// Reorders `messages` so that round `r` holds the `r`-th message of every key in sequence
/// order, and returns the end offset of each round. Unkeyed messages all go to the first round.
///
/// A publisher may then send a whole round at once without breaking per-key order, and a key
/// with many claimed messages (a hot key) costs one round per message instead of a new claim.
///
/// The messages are sorted by sequence first: stores promise sequence order, but a claim is a
/// query whose row order the database does not guarantee without an `ORDER BY` (or at all, for
/// `RETURNING`), and per-key order must not hang on a query plan.
pub(crate) fn plan(mut messages: Vec<Envelope>) -> (Vec<Envelope>, Vec<usize>) {
    messages.sort_by_key(|m| m.seq);
    let mut depth_of_key: HashMap<&str, usize> = HashMap::new();
    let mut round_of = Vec::with_capacity(messages.len());
    let mut rounds = 1;
    for msg in &messages {
        let round = match msg.partition_key.as_deref() {
            None => 0,
            Some(key) => {
                let depth = depth_of_key.entry(key).or_insert(0);
                let round = *depth;
                *depth += 1;
                round
            }
        };
        rounds = rounds.max(round + 1);
        round_of.push(round);
    }
    drop(depth_of_key);
    if rounds == 1 {
        let len = messages.len();
        return (messages, vec![len]);
    }
    let mut buckets: Vec<Vec<Envelope>> = (0..rounds).map(|_| Vec::new()).collect();
    for (msg, round) in messages.into_iter().zip(round_of) {
        buckets[round].push(msg);
    }
    let mut ends = Vec::with_capacity(rounds);
    let mut ordered = Vec::with_capacity(buckets.iter().map(Vec::len).sum());
    for bucket in buckets {
        ordered.extend(bucket);
        ends.push(ordered.len());
    }
    (ordered, ends)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::Message;

    fn env(seq: i64, key: Option<&str>) -> Envelope {
        let mut msg = Message::bytes("e", "x").unwrap();
        if let Some(key) = key {
            msg = msg.key(key).unwrap();
        }
        Envelope::from_message(seq, &msg, SystemTime::now(), 0)
    }

    #[test]
    fn claims_out_of_sequence_order_are_published_in_key_order() {
        let (msgs, ends) = plan(vec![
            env(7, Some("a")),
            env(3, Some("b")),
            env(5, Some("a")),
            env(1, None),
        ]);
        assert_eq!(ends, vec![3, 4]);
        assert_eq!(
            msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 3, 5, 7],
            "the older message of key a must be in the earlier round"
        );
    }

    #[test]
    fn distinct_keys_make_one_round() {
        let (msgs, ends) = plan(vec![env(1, Some("a")), env(2, None), env(3, Some("b"))]);
        assert_eq!(ends, vec![3]);
        assert_eq!(
            msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn repeated_keys_spread_over_rounds_in_order() {
        let input = vec![
            env(1, Some("a")),
            env(2, Some("a")),
            env(3, None),
            env(4, Some("b")),
            env(5, Some("a")),
            env(6, None),
        ];
        let (msgs, ends) = plan(input);
        assert_eq!(ends, vec![4, 5, 6]);
        let seqs: Vec<_> = msgs.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![1, 3, 4, 6, 2, 5]);
        for window in 0..ends.len() {
            let start = if window == 0 { 0 } else { ends[window - 1] };
            let mut keys: Vec<_> = msgs[start..ends[window]]
                .iter()
                .filter_map(|m| m.partition_key.clone())
                .collect();
            let before = keys.len();
            keys.dedup();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), before, "a round holds one key twice");
        }
    }
}
