//! Table tests of what the cleaner keeps, on one segment's batches.

use super::*;
use crate::batch::{
    build_empty_batch, build_keyed_batch, parse_header, split_stored_batches, stamp,
};

const NOW: i64 = 1_000_000;
const RETENTION: i64 = 1_000;
/// A timestamp whose tombstones are past `delete.retention.ms` at `NOW`.
const OLD: i64 = NOW - RETENTION - 1;
/// A timestamp whose tombstones are not (`ts + retention == now` keeps).
const FRESH: i64 = NOW - RETENTION;

type Rec = (Option<&'static str>, Option<&'static str>);

/// One input batch.
#[derive(Clone, Copy)]
enum In {
    /// `(epoch, maxTimestamp, records)`.
    Batch(i32, i64, &'static [Rec]),
    /// An empty batch of `(epoch, offsets spanned)`, as a previous pass
    /// leaves.
    Empty(i32, i64),
    /// A gzip-flagged batch (opaque to the cleaner) of `(epoch, records)`.
    Compressed(i32, &'static [Rec]),
}

/// One output batch: `(base, last, epoch, records as (offset, key, value))`.
type Out = (
    Offset,
    Offset,
    i32,
    Vec<(Offset, Option<String>, Option<String>)>,
);

fn encode(input: &[In]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut offset = 0;
    for i in input {
        let as_bytes = |r: &[Rec]| -> Vec<batch::KeyValue> {
            r.iter()
                .map(|(k, v)| (k.map(str::as_bytes), v.map(str::as_bytes)))
                .collect()
        };
        let (mut b, epoch) = match *i {
            In::Batch(epoch, ts, records) => (build_keyed_batch(&as_bytes(records), ts), epoch),
            In::Empty(epoch, span) => (build_empty_batch(0, span - 1, epoch), epoch),
            In::Compressed(epoch, records) => {
                let mut b = build_keyed_batch(&as_bytes(records), 0);
                b[22] |= 1; // gzip, as far as the attributes say
                let body = b[HEADER_LEN..].to_vec();
                (batch::rebuild(&b, &body, records.len() as i32), epoch)
            }
        };
        stamp(&mut b, offset, epoch);
        offset = parse_header(&b, 1 << 20).unwrap().next_offset();
        bytes.extend(b);
    }
    bytes
}

/// Builds the map over `segment` then `later` (batches of later segments),
/// cleans `segment`, and returns the output batches and whether it changed.
fn clean(segment: &[In], later: &[In]) -> (Vec<Out>, bool) {
    let all = encode(&[segment, later].concat());
    let parts = split_stored_batches(&all, 1 << 20).unwrap();
    let mut map = OffsetMap::new();
    for (h, r) in &parts {
        map.observe(&all[r.clone()], h);
    }
    let rules = CleanRules {
        now_ms: NOW,
        delete_retention_ms: RETENTION,
    };
    let mut cleaner = SegmentCleaner::new(&map, rules);
    let mut out = Vec::new();
    for (h, r) in &parts[..segment.len()] {
        cleaner.push(&all[r.clone()], h, &mut out);
    }
    cleaner.finish(&mut out);
    let mut batches = Vec::new();
    for (h, r) in split_stored_batches(&out, 1 << 20).expect("valid output") {
        let one = &out[r];
        let records = if batch::compression(batch::attributes(one)) != 0 {
            vec![(-1, Some("opaque".to_string()), None)]
        } else {
            let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
            crate::record::records(one)
                .unwrap()
                .into_iter()
                .map(|r| (r.offset, s(r.key), s(r.value)))
                .collect()
        };
        batches.push((
            h.base_offset,
            h.last_offset(),
            h.partition_leader_epoch,
            records,
        ));
    }
    (batches, cleaner.changed())
}

fn rec(
    offset: Offset,
    key: Option<&str>,
    value: Option<&str>,
) -> (Offset, Option<String>, Option<String>) {
    (offset, key.map(String::from), value.map(String::from))
}

#[test]
fn what_a_segment_keeps() {
    use In::*;
    let opaque = || vec![(-1, Some("opaque".to_string()), None)];
    // (name, segment, later segments, expected output, changed)
    type Case = (&'static str, Vec<In>, Vec<In>, Vec<Out>, bool);
    let cases: Vec<Case> = vec![
        (
            "latest per key kept, superseded removed, lastOffsetDelta kept",
            vec![
                Batch(1, 0, &[(Some("a"), Some("1")), (Some("b"), Some("1"))]),
                Batch(1, 0, &[(Some("a"), Some("2"))]),
            ],
            vec![],
            vec![
                (0, 1, 1, vec![rec(1, Some("b"), Some("1"))]),
                (2, 2, 1, vec![rec(2, Some("a"), Some("2"))]),
            ],
            true,
        ),
        (
            "a record in the middle goes, the batch keeps its range",
            vec![Batch(
                1,
                0,
                &[
                    (Some("a"), Some("1")),
                    (Some("b"), Some("1")),
                    (Some("a"), Some("2")),
                ],
            )],
            vec![],
            vec![(
                0,
                2,
                1,
                vec![rec(1, Some("b"), Some("1")), rec(2, Some("a"), Some("2"))],
            )],
            true,
        ),
        (
            "a batch losing every record becomes an empty batch",
            vec![
                Batch(1, 0, &[(Some("a"), Some("1"))]),
                Batch(1, 0, &[(Some("a"), Some("2"))]),
            ],
            vec![],
            vec![
                (0, 0, 1, vec![]),
                (1, 1, 1, vec![rec(1, Some("a"), Some("2"))]),
            ],
            true,
        ),
        (
            "a run of emptied batches in one epoch becomes one empty batch",
            vec![
                Batch(1, 0, &[(Some("a"), Some("1"))]),
                Batch(1, 0, &[(Some("a"), Some("2")), (Some("a"), Some("3"))]),
                Batch(1, 0, &[(Some("a"), Some("4"))]),
            ],
            vec![],
            vec![
                (0, 2, 1, vec![]),
                (3, 3, 1, vec![rec(3, Some("a"), Some("4"))]),
            ],
            true,
        ),
        (
            "runs split where the leader epoch changes",
            vec![
                Batch(1, 0, &[(Some("a"), Some("1"))]),
                Batch(2, 0, &[(Some("a"), Some("2"))]),
                Batch(2, 0, &[(Some("a"), Some("3"))]),
            ],
            vec![],
            vec![
                (0, 0, 1, vec![]),
                (1, 1, 2, vec![]),
                (2, 2, 2, vec![rec(2, Some("a"), Some("3"))]),
            ],
            true,
        ),
        (
            "superseded by a later segment",
            vec![Batch(
                1,
                0,
                &[(Some("a"), Some("1")), (Some("b"), Some("1"))],
            )],
            vec![Batch(1, 0, &[(Some("a"), Some("2"))])],
            vec![(0, 1, 1, vec![rec(1, Some("b"), Some("1"))])],
            true,
        ),
        (
            "a tombstone stays until delete.retention.ms has passed",
            vec![
                Batch(1, 0, &[(Some("a"), Some("1"))]),
                Batch(1, FRESH, &[(Some("a"), None)]),
            ],
            vec![],
            vec![(0, 0, 1, vec![]), (1, 1, 1, vec![rec(1, Some("a"), None)])],
            true,
        ),
        (
            "an expired tombstone goes, with what it deleted",
            vec![
                Batch(1, 0, &[(Some("a"), Some("1"))]),
                Batch(1, OLD, &[(Some("a"), None)]),
                Batch(1, 0, &[(Some("b"), Some("1"))]),
            ],
            vec![],
            vec![
                (0, 1, 1, vec![]),
                (2, 2, 1, vec![rec(2, Some("b"), Some("1"))]),
            ],
            true,
        ),
        (
            "a superseded tombstone goes even when fresh",
            vec![
                Batch(1, NOW, &[(Some("a"), None)]),
                Batch(1, 0, &[(Some("a"), Some("2"))]),
            ],
            vec![],
            vec![
                (0, 0, 1, vec![]),
                (1, 1, 1, vec![rec(1, Some("a"), Some("2"))]),
            ],
            true,
        ),
        (
            "records without a key are kept",
            vec![Batch(1, 0, &[(None, Some("x")), (None, Some("x"))])],
            vec![],
            vec![(
                0,
                1,
                1,
                vec![rec(0, None, Some("x")), rec(1, None, Some("x"))],
            )],
            false,
        ),
        (
            "an opaque batch is kept whole and keeps an expired tombstone above it",
            vec![
                Batch(1, 0, &[(Some("a"), Some("1"))]),
                Compressed(1, &[(Some("a"), Some("0"))]),
                Batch(1, OLD, &[(Some("a"), None)]),
            ],
            vec![],
            vec![
                (0, 0, 1, vec![]),
                (1, 1, 1, opaque()),
                (2, 2, 1, vec![rec(2, Some("a"), None)]),
            ],
            true,
        ),
        (
            "an opaque batch above a tombstone does not keep it",
            vec![
                Batch(1, OLD, &[(Some("a"), None)]),
                Compressed(1, &[(Some("b"), Some("0"))]),
            ],
            vec![],
            vec![(0, 0, 1, vec![]), (1, 1, 1, opaque())],
            true,
        ),
        (
            "an empty batch from an earlier pass merges into a new run",
            vec![
                Empty(1, 2),
                Batch(1, 0, &[(Some("a"), Some("1"))]),
                Batch(1, 0, &[(Some("a"), Some("2"))]),
            ],
            vec![],
            vec![
                (0, 2, 1, vec![]),
                (3, 3, 1, vec![rec(3, Some("a"), Some("2"))]),
            ],
            true,
        ),
        (
            "a cleaned segment cleans to itself",
            vec![
                Empty(1, 2),
                Batch(1, 0, &[(Some("a"), Some("2"))]),
                Empty(2, 1),
                Batch(2, 0, &[(Some("b"), Some("1"))]),
            ],
            vec![],
            vec![
                (0, 1, 1, vec![]),
                (2, 2, 1, vec![rec(2, Some("a"), Some("2"))]),
                (3, 3, 2, vec![]),
                (4, 4, 2, vec![rec(4, Some("b"), Some("1"))]),
            ],
            false,
        ),
        (
            "the segment's last batch survives as an empty one, keeping its end",
            vec![
                Batch(1, 0, &[(Some("b"), Some("1"))]),
                Batch(1, 0, &[(Some("a"), Some("1"))]),
            ],
            vec![Batch(1, 0, &[(Some("a"), Some("2"))])],
            vec![
                (0, 0, 1, vec![rec(0, Some("b"), Some("1"))]),
                (1, 1, 1, vec![]),
            ],
            true,
        ),
    ];
    for (name, segment, later, expected, changed) in cases {
        let (got, got_changed) = clean(&segment, &later);
        assert_eq!(got, expected, "{name}");
        assert_eq!(got_changed, changed, "{name}: changed");
    }
}

#[test]
fn tombstone_expiry_is_strict() {
    let rules = CleanRules {
        now_ms: 100,
        delete_retention_ms: 10,
    };
    assert!(!rules.tombstone_expired(90), "90 + 10 == 100 is not past");
    assert!(rules.tombstone_expired(89));
    assert!(!rules.tombstone_expired(i64::MAX), "no overflow");
}
