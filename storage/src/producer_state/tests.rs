//! The rules as a table (one row per outcome and error code), the
//! snapshot's round trip and damage, and a proptest against a model of an
//! idempotent producer with five batches in flight.

use super::*;
use proptest::prelude::*;

/// A batch of `count` records from producer `pid` in `epoch` at `seq`,
/// stored at `offset`.
fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> ProducerBatch {
    ProducerBatch {
        producer_id: pid,
        producer_epoch: epoch,
        first_sequence: seq,
        last_sequence: increment_sequence(seq, count - 1),
        first_offset: offset,
        last_offset: offset + i64::from(count) - 1,
        max_timestamp: 1_000 + offset,
    }
}

fn state_of(batches: &[ProducerBatch]) -> ProducerState {
    let mut s = ProducerState::new();
    batches.iter().for_each(|b| s.record(b));
    s
}

#[test]
fn rules_table() {
    let first = batch(7, 0, 0, 3, 0); // seq 0..=2 at 0..=2
    let second = batch(7, 0, 3, 1, 3); // seq 3 at 3
    let history = [first, second];
    let meta = |b: &ProducerBatch| b.metadata();
    type Row = (
        &'static str,
        Vec<ProducerBatch>,
        ProducerBatch,
        Result<Verdict, SequenceError>,
    );
    let rows: Vec<Row> = vec![
        (
            "new producer at 0",
            vec![],
            batch(7, 0, 0, 2, 9),
            Ok(Verdict::Append),
        ),
        (
            "new producer, any epoch, at 0",
            vec![],
            batch(7, 5, 0, 1, 9),
            Ok(Verdict::Append),
        ),
        (
            "unknown producer past 0",
            vec![],
            batch(7, 0, 4, 1, 9),
            Err(SequenceError::UnknownProducerId {
                producer_id: 7,
                sequence: 4,
            }),
        ),
        (
            "next in sequence",
            history.to_vec(),
            batch(7, 0, 4, 2, 9),
            Ok(Verdict::Append),
        ),
        (
            "retry of the last batch",
            history.to_vec(),
            batch(7, 0, 3, 1, 9),
            Ok(Verdict::Duplicate(meta(&second))),
        ),
        (
            "retry of an earlier batch",
            history.to_vec(),
            batch(7, 0, 0, 3, 9),
            Ok(Verdict::Duplicate(meta(&first))),
        ),
        (
            "gap",
            history.to_vec(),
            batch(7, 0, 5, 1, 9),
            Err(SequenceError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 0,
                expected: 4,
                got: 5,
            }),
        ),
        (
            "overlap that is no remembered batch",
            history.to_vec(),
            batch(7, 0, 1, 2, 9),
            Err(SequenceError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 0,
                expected: 4,
                got: 1,
            }),
        ),
        (
            "older epoch",
            vec![batch(7, 2, 0, 1, 0)],
            batch(7, 1, 1, 1, 9),
            Err(SequenceError::InvalidProducerEpoch {
                producer_id: 7,
                epoch: 1,
                current: 2,
            }),
        ),
        (
            "new epoch at 0",
            history.to_vec(),
            batch(7, 1, 0, 1, 9),
            Ok(Verdict::Append),
        ),
        (
            "new epoch not at 0",
            history.to_vec(),
            batch(7, 1, 4, 1, 9),
            Err(SequenceError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 1,
                expected: 0,
                got: 4,
            }),
        ),
        (
            "new epoch's seq 0 is no retry of the old epoch's",
            history.to_vec(),
            batch(7, 1, 0, 3, 9),
            Ok(Verdict::Append),
        ),
        (
            "another producer is independent",
            history.to_vec(),
            batch(8, 0, 0, 1, 9),
            Ok(Verdict::Append),
        ),
        (
            "sequence wraps at i32::MAX",
            vec![batch(7, 0, i32::MAX - 1, 2, 0)],
            batch(7, 0, 0, 1, 9),
            Ok(Verdict::Append),
        ),
        (
            "after the wrap, MAX is no longer next",
            vec![batch(7, 0, i32::MAX - 1, 2, 0)],
            batch(7, 0, 1, 1, 9),
            Err(SequenceError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 0,
                expected: 0,
                got: 1,
            }),
        ),
    ];
    for (name, prior, incoming, expected) in rows {
        assert_eq!(state_of(&prior).check(&incoming), expected, "{name}");
    }
}

#[test]
fn sequences_wrap_as_kafkas() {
    assert_eq!(increment_sequence(0, 4), 4);
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(batch(1, 0, i32::MAX, 2, 0).last_sequence, 0);
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let batches: Vec<ProducerBatch> = (0..7).map(|i| batch(1, 0, i, 1, i64::from(i))).collect();
    let s = state_of(&batches);
    assert_eq!(s.get(1).unwrap().batches.len(), BATCHES_RETAINED);
    assert!(matches!(s.check(&batches[2]), Ok(Verdict::Duplicate(_))));
    assert!(matches!(
        s.check(&batches[1]),
        Err(SequenceError::OutOfOrderSequence { .. })
    ));
}

#[test]
fn a_new_epoch_forgets_the_old_batches() {
    let s = state_of(&[
        batch(1, 0, 0, 1, 0),
        batch(1, 0, 1, 1, 1),
        batch(1, 1, 0, 1, 2),
    ]);
    let entry = s.get(1).unwrap();
    assert_eq!((entry.producer_epoch, entry.batches.len()), (1, 1));
}

#[test]
fn expiry_counts_from_the_newest_batch() {
    let mut s = state_of(&[batch(1, 0, 0, 1, 0), batch(2, 0, 0, 1, 500)]);
    // Timestamps are 1_000 + offset: producer 1 at 1_000, producer 2 at 1_500.
    assert_eq!(s.remove_expired(1_999, 1_000), 0);
    assert_eq!(s.remove_expired(2_000, 1_000), 1);
    assert!(s.get(1).is_none() && s.get(2).is_some());
}

#[test]
fn malformed_producer_fields_are_invalid() {
    let good = crate::batch::build_batch(&[b"a", b"b"], 5);
    let header = |pid, epoch, seq| {
        crate::batch::parse_header(
            &crate::batch::with_producer(&good, pid, epoch, seq),
            1 << 20,
        )
        .unwrap()
    };
    assert_eq!(ProducerBatch::from_header(&header(-1, -1, -1)), Ok(None));
    assert_eq!(
        ProducerBatch::from_header(&header(-2, 0, 0)),
        Err(InvalidProducerBatch::ProducerId(-2))
    );
    assert_eq!(
        ProducerBatch::from_header(&header(4, -1, 0)),
        Err(InvalidProducerBatch::NoEpoch(4))
    );
    assert_eq!(
        ProducerBatch::from_header(&header(4, 0, -3)),
        Err(InvalidProducerBatch::Sequence {
            producer_id: 4,
            sequence: -3
        })
    );
    let b = ProducerBatch::from_header(&header(4, 2, 10))
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.first_sequence, b.last_sequence, b.last_offset),
        (10, 11, 1)
    );
    let mut transactional = header(4, 0, 0);
    transactional.attributes |= 0x10;
    assert_eq!(
        ProducerBatch::from_produced(&transactional),
        Err(InvalidProducerBatch::Transactional)
    );
}

#[test]
fn snapshot_round_trips_and_refuses_damage() {
    let s = state_of(
        &(0..8i32)
            .map(|i| batch(i64::from(i % 3), 1, i, 2, i64::from(i) * 2))
            .collect::<Vec<_>>(),
    );
    let bytes = encode_snapshot(&s);
    assert_eq!(decode_snapshot(&bytes), Ok(s.clone()));
    assert_eq!(
        decode_snapshot(&encode_snapshot(&ProducerState::new())),
        Ok(ProducerState::new())
    );
    for at in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x40;
        assert!(decode_snapshot(&flipped).is_err(), "flip at {at} accepted");
    }
    for len in 0..bytes.len() {
        assert!(
            decode_snapshot(&bytes[..len]).is_err(),
            "cut at {len} accepted"
        );
    }
}

/// What the simulated network and producer do next.
#[derive(Debug, Clone)]
enum Step {
    /// Send the next new batch of this many records (if fewer than five are
    /// in flight).
    Send(i32),
    /// The broker receives this (modulo) pending transmission; its answer
    /// may be lost, leaving the batch in flight.
    Deliver(usize, bool),
    /// Send this (modulo) in-flight batch again.
    Retry(usize),
    /// The producer gives up its in-flight batches and bumps its epoch.
    BumpEpoch,
    /// The broker restarts: state from a snapshot, or from the log alone.
    Restart { from_snapshot: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1..4i32).prop_map(Step::Send),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, lost)| Step::Deliver(i, lost)),
        2 => any::<usize>().prop_map(Step::Retry),
        1 => Just(Step::BumpEpoch),
        1 => any::<bool>().prop_map(|from_snapshot| Step::Restart { from_snapshot }),
    ]
}

/// A producer's batch: (epoch, first sequence, records).
type Sent = (i16, i32, i32);

/// `sent` was answered: retire it and every answered batch after it once
/// nothing older is unanswered.
fn retire(in_flight: &mut Vec<Sent>, answered: &mut Vec<Sent>, sent: Sent) {
    if in_flight.contains(&sent) && !answered.contains(&sent) {
        answered.push(sent);
    }
    while let Some(front) = in_flight.first().copied() {
        if !answered.contains(&front) {
            break;
        }
        in_flight.remove(0);
        answered.retain(|a| *a != front);
    }
}

proptest! {
    /// Through retries, reorderings of up to five in-flight batches, epoch
    /// bumps and restarts: every batch is stored at most once, each epoch's
    /// stored sequences are gap-free from 0, a duplicate is answered with
    /// the original's offsets, and a retry of an in-flight batch that was
    /// stored is always recognised as one.
    #[test]
    fn idempotence_against_a_model(steps in proptest::collection::vec(step(), 1..120)) {
        let mut state = ProducerState::new();
        let mut log: Vec<ProducerBatch> = Vec::new(); // what the log holds
        let (mut epoch, mut next_seq) = (0i16, 0i32);
        // Sent and not yet retired, oldest first. As in the client (and
        // Kafka's, whose answers come in order per connection), a batch is
        // retired only once it and every batch before it are answered, so
        // the window of five counts from the oldest unanswered batch.
        let mut in_flight: Vec<Sent> = Vec::new();
        let mut answered: Vec<Sent> = Vec::new();
        let mut network: Vec<Sent> = Vec::new();
        for s in steps {
            match s {
                Step::Send(n) if in_flight.len() < BATCHES_RETAINED => {
                    in_flight.push((epoch, next_seq, n));
                    network.push((epoch, next_seq, n));
                    next_seq += n;
                }
                Step::Send(_) => {}
                Step::Retry(i) if !in_flight.is_empty() => network.push(in_flight[i % in_flight.len()]),
                Step::Retry(_) => {}
                Step::BumpEpoch => {
                    epoch += 1;
                    next_seq = 0;
                    in_flight.clear();
                    answered.clear();
                }
                Step::Restart { from_snapshot } => {
                    state = match from_snapshot {
                        true => decode_snapshot(&encode_snapshot(&state)).unwrap(),
                        false => state_of(&log),
                    };
                }
                Step::Deliver(i, answer_lost) if !network.is_empty() => {
                    let sent = network.remove(i % network.len());
                    let (e, seq, n) = sent;
                    let offset = log.last().map_or(0, |b| b.last_offset + 1);
                    let b = batch(1, e, seq, n, offset);
                    let stored = log.iter().find(|l| (l.producer_epoch, l.first_sequence) == (e, seq));
                    match state.check(&b) {
                        Ok(Verdict::Append) => {
                            prop_assert!(stored.is_none(), "{sent:?} stored twice");
                            let previous = log.iter().rev().find(|l| l.producer_epoch == e);
                            let expected = previous.map_or(0, |p| p.last_sequence + 1);
                            prop_assert_eq!(seq, expected, "gap in epoch {}", e);
                            state.record(&b);
                            log.push(b);
                            if !answer_lost {
                                retire(&mut in_flight, &mut answered, sent);
                            }
                        }
                        Ok(Verdict::Duplicate(original)) => {
                            let stored = stored.expect("a duplicate of a stored batch");
                            prop_assert_eq!(original.first_offset, stored.first_offset);
                            prop_assert_eq!(original.last_offset, stored.last_offset);
                            if !answer_lost {
                                retire(&mut in_flight, &mut answered, sent);
                            }
                        }
                        Err(e) => {
                            let retry_of_stored = stored.is_some() && in_flight.contains(&sent);
                            prop_assert!(!retry_of_stored, "in-flight {sent:?} stored but refused: {e}");
                        }
                    }
                }
                Step::Deliver(..) => {}
            }
        }
    }
}
