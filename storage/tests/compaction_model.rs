//! Compaction against a model: random keyed appends (tombstones and
//! repeated keys included), rolls, high-watermark moves, cleaning passes at
//! random times, and reopens (clean, or a crash after a flush).
//!
//! The model holds every record the log should still have, by offset, and
//! each key's latest `(offset, value)` in a `BTreeMap`. After every pass the
//! whole log must read back exactly as the model says: below the cleanable
//! end only each key's latest record (a tombstone only until its batch's
//! `maxTimestamp + delete.retention.ms < now`) and the keyless records;
//! at and above it every batch byte for byte as before; offsets, log end,
//! high watermark and epoch cache unchanged.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use storage::batch;
use storage::fs::faulty::{CrashMode, FaultyFs};
use storage::{CleanupPolicy, LeaderEpoch, Log, LogConfig, Offset};

const DELETE_RETENTION_MS: i64 = 1_000;

#[derive(Debug, Clone)]
enum Op {
    /// Records as `(key, is_tombstone)`; key `None` is a null key.
    Append {
        records: Vec<(Option<u8>, bool)>,
        new_epoch: bool,
    },
    Roll,
    SetHighWatermark {
        at: u16,
    },
    Clean {
        advance_ms: u16,
    },
    Reopen {
        crash: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        prop_oneof![1 => Just(None), 12 => (0..6u8).prop_map(Some)],
        prop::bool::weighted(0.2),
    );
    prop_oneof![
        10 => (prop::collection::vec(record, 1..5), prop::bool::weighted(0.1))
            .prop_map(|(records, new_epoch)| Op::Append { records, new_epoch }),
        2 => Just(Op::Roll),
        3 => any::<u16>().prop_map(|at| Op::SetHighWatermark { at }),
        3 => (0..2_500u16).prop_map(|advance_ms| Op::Clean { advance_ms }),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
    ]
}

/// A record as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// The `maxTimestamp` of its batch.
    timestamp: i64,
}

#[derive(Default)]
struct Model {
    records: BTreeMap<Offset, Rec>,
    /// Each key's latest record ever appended: `(offset, value)`.
    latest: BTreeMap<Vec<u8>, (Offset, Option<Vec<u8>>)>,
    now_ms: i64,
    epoch: LeaderEpoch,
    values: u64,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        retention_ms: Some(Duration::from_millis(1)),
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: Duration::from_millis(DELETE_RETENTION_MS as u64),
        ..LogConfig::default()
    }
}

fn open(fs: &FaultyFs) -> Log {
    Log::open(
        Arc::new(fs.clone()),
        PathBuf::from("/data/compacted-0"),
        config(),
    )
    .expect("open")
}

/// Every batch from the log start to the log end, raw, checking that
/// offsets stay contiguous.
fn raw_batches(log: &Log, from: Offset) -> Vec<(Offset, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let read = log
            .read(offset, 1 << 16, log.log_end_offset())
            .expect("read");
        assert!(!read.bytes.is_empty(), "empty read at {offset}");
        for (header, range) in batch::split_stored_batches(&read.bytes, 1 << 20).expect("batches") {
            assert_eq!(header.base_offset, offset, "offsets must stay contiguous");
            out.push((header.base_offset, read.bytes[range].to_vec()));
            offset = header.next_offset();
        }
    }
    out
}

/// Every record in the log, by offset.
fn read_records(log: &Log) -> BTreeMap<Offset, Rec> {
    let mut out = BTreeMap::new();
    for (_, bytes) in raw_batches(log, log.log_start_offset()) {
        let header = batch::parse_header(&bytes, 1 << 20).unwrap();
        for r in batch::records(&bytes).expect("records") {
            let rec = Rec {
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                timestamp: header.max_timestamp,
            };
            out.insert(r.offset, rec);
        }
    }
    out
}

fn expired(rec: &Rec, now_ms: i64) -> bool {
    rec.value.is_none() && rec.timestamp + DELETE_RETENTION_MS < now_ms
}

/// The model's cleaning rule, applied to its records below `end`.
fn model_clean(model: &mut Model, end: Offset) {
    let mut latest_below: BTreeMap<Vec<u8>, Offset> = BTreeMap::new();
    for (&offset, rec) in model.records.range(..end) {
        if let Some(key) = &rec.key {
            latest_below.insert(key.clone(), offset);
        }
    }
    let now_ms = model.now_ms;
    model.records.retain(|&offset, rec| {
        let Some(key) = &rec.key else { return true };
        offset >= end || (latest_below[key] == offset && !expired(rec, now_ms))
    });
}

/// The epoch cache the stored batches imply: where each epoch's first
/// batch (kept, rewritten or emptied) starts.
fn epochs_of_batches(log: &Log) -> Vec<(LeaderEpoch, Offset)> {
    let mut out: Vec<(LeaderEpoch, Offset)> = Vec::new();
    for (offset, bytes) in raw_batches(log, log.log_start_offset()) {
        let epoch = batch::parse_header(&bytes, 1 << 20)
            .unwrap()
            .partition_leader_epoch;
        if out.last().is_none_or(|&(e, _)| e != epoch) {
            out.push((epoch, offset));
        }
    }
    out
}

/// The log reads back as the model says, every key's latest value is at
/// its original offset (a tombstone may be gone only once expired), and
/// the batches still carry the epochs the epoch cache names.
fn check(log: &Log, model: &Model) {
    assert_eq!(epochs_of_batches(log), epochs(log), "batch epochs vs cache");
    let stored = read_records(log);
    assert_eq!(stored, model.records, "log contents differ from the model");
    for (key, (offset, value)) in &model.latest {
        let last_in_log = stored
            .iter()
            .rev()
            .find(|(_, r)| r.key.as_ref() == Some(key));
        match (last_in_log, value) {
            (Some((&o, r)), _) => {
                assert_eq!((o, &r.value), (*offset, value), "key {key:?}: latest value");
            }
            (None, None) => {
                assert!(
                    *offset < log.cleanable_end_offset(),
                    "key {key:?}: tombstone at {offset} gone but not cleanable"
                );
            }
            (None, Some(_)) => panic!("key {key:?}: latest value at {offset} lost"),
        }
    }
}

fn epochs(log: &Log) -> Vec<(LeaderEpoch, Offset)> {
    log.epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

fn append(log: &mut Log, model: &mut Model, records: &[(Option<u8>, bool)], new_epoch: bool) {
    if new_epoch {
        model.epoch += 1;
    }
    type Owned = (Option<Vec<u8>>, Option<Vec<u8>>);
    let owned: Vec<Owned> = records
        .iter()
        .map(|&(key, tombstone)| {
            model.values += 1;
            let value = (!tombstone).then(|| format!("v{}", model.values).into_bytes());
            (key.map(|k| vec![b'k', k]), value)
        })
        .collect();
    let refs: Vec<batch::KeyValue> = owned
        .iter()
        .map(|(k, v)| (k.as_deref(), v.as_deref()))
        .collect();
    let bytes = batch::build_keyed_batch(&refs, model.now_ms);
    let info = log
        .append(&bytes, model.epoch, model.now_ms)
        .expect("append");
    for (i, (key, value)) in owned.into_iter().enumerate() {
        let offset = info.base_offset + i as i64;
        if let Some(k) = &key {
            model.latest.insert(k.clone(), (offset, value.clone()));
        }
        let rec = Rec {
            key,
            value,
            timestamp: model.now_ms,
        };
        model.records.insert(offset, rec);
    }
}

fn clean(log: &mut Log, model: &mut Model, advance_ms: u16) {
    model.now_ms += i64::from(advance_ms);
    let end = log.cleanable_end_offset();
    assert!(
        end <= log.high_watermark(),
        "cleanable end above the high watermark"
    );
    let untouched = raw_batches(log, end);
    let before = (
        log.log_start_offset(),
        log.log_end_offset(),
        log.high_watermark(),
        epochs(log),
    );
    let stats = log.clean(model.now_ms).expect("clean");
    assert_eq!(stats.cleanable_end_offset, end);
    model_clean(model, end);
    check(log, model);
    assert_eq!(
        raw_batches(log, end),
        untouched,
        "batches at or above {end} changed"
    );
    let after = (
        log.log_start_offset(),
        log.log_end_offset(),
        log.high_watermark(),
        epochs(log),
    );
    assert_eq!(after, before, "offsets, high watermark or epochs changed");
}

fn run(ops: &[Op]) {
    let fs = FaultyFs::new(7);
    let mut log = open(&fs);
    let mut model = Model {
        now_ms: 1_000_000,
        epoch: 1,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Append { records, new_epoch } => append(&mut log, &mut model, records, *new_epoch),
            Op::Roll => log.roll().expect("roll"),
            Op::SetHighWatermark { at } => {
                let (low, high) = (log.high_watermark(), log.log_end_offset());
                let hw = low + (i64::from(*at) * (high - low + 1)) / (i64::from(u16::MAX) + 1);
                log.set_high_watermark(hw);
                log.checkpoint_high_watermark().expect("checkpoint");
            }
            Op::Clean { advance_ms } => clean(&mut log, &mut model, *advance_ms),
            Op::Reopen { crash } => {
                let before = (log.log_end_offset(), log.high_watermark(), epochs(&log));
                if *crash {
                    log.flush().expect("flush");
                    drop(log);
                    fs.crash(CrashMode::TearUnsynced);
                } else {
                    log.close().expect("close");
                }
                log = open(&fs);
                check(&log, &model);
                let after = (log.log_end_offset(), log.high_watermark(), epochs(&log));
                assert_eq!(after, before, "reopen changed the log end, HW or epochs");
            }
        }
        // Retention must not delete anything from a compact-only log.
        assert_eq!(
            log.apply_retention(model.now_ms + 1_000_000)
                .expect("retention"),
            0
        );
    }
    clean(&mut log, &mut model, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn compaction_matches_model(ops in prop::collection::vec(op(), 1..70)) {
        run(&ops);
    }
}

/// A fixed story: the pass that must remove a tombstone only after
/// `delete.retention.ms`, and everything cleanable once the HW allows it.
#[test]
fn tombstone_outlives_delete_retention_then_goes() {
    let mut ops = vec![
        Op::Append {
            records: vec![(Some(1), false), (Some(2), false)],
            new_epoch: false,
        },
        Op::Append {
            records: vec![(Some(1), true)],
            new_epoch: false,
        },
        Op::Roll,
        Op::Append {
            records: vec![(Some(3), false)],
            new_epoch: false,
        },
        Op::SetHighWatermark { at: u16::MAX },
        Op::Clean { advance_ms: 1_000 },
    ];
    run(&ops);
    ops.push(Op::Clean { advance_ms: 1 });
    ops.push(Op::Reopen { crash: true });
    run(&ops);
}

/// A follower copying a compacted leader (thinned and empty batches, same
/// offsets) accepts every batch and ends byte-identical.
#[test]
fn a_follower_copies_a_compacted_log() {
    let fs = FaultyFs::new(9);
    let mut leader = open(&fs);
    let mut model = Model {
        now_ms: 1_000_000,
        epoch: 1,
        ..Model::default()
    };
    for i in 0..30u8 {
        append(
            &mut leader,
            &mut model,
            &[(Some(i % 3), i % 7 == 0), (Some(i % 2), false)],
            i % 10 == 0,
        );
    }
    leader.roll().unwrap();
    leader.set_high_watermark(leader.log_end_offset());
    clean(&mut leader, &mut model, 5_000);
    let follower_fs = FaultyFs::new(10);
    let mut follower = open(&follower_fs);
    let batches = raw_batches(&leader, 0);
    assert!(
        batches.iter().any(|(_, b)| b.len() == batch::HEADER_LEN),
        "has empty batches"
    );
    for (_, bytes) in &batches {
        follower
            .append_replicated(bytes, 0)
            .expect("replicated append");
    }
    assert_eq!(raw_batches(&follower, 0), batches);
    assert_eq!(epochs(&follower), epochs(&leader));
}
