//! The log against a plain `Vec` model, through random appends, rolls,
//! group commits, truncations, retention, injected I/O failures, crashes
//! and reopens.
//!
//! After every reopen the log must equal a prefix of the model that contains
//! every append the log reported as synced (`flushed_offset`), offsets must be
//! contiguous, the epoch cache must match the batches, and
//! `log_start_offset <= high_watermark <= log_end_offset`.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use storage::batch;
use storage::fs::faulty::{CrashMode, FaultyFs};
use storage::{LeaderEpoch, Log, LogConfig, Offset, SharedLog};

#[derive(Debug, Clone)]
enum Op {
    Append {
        batches: u8,
        records: u8,
        value_len: u16,
        new_epoch: bool,
    },
    Flush,
    /// A group commit through `SharedLog::wait_durable`: syncs outside the
    /// lock, paying what rolls owe.
    GroupCommit,
    Roll,
    TruncateTo {
        at: u16,
    },
    Retention {
        advance_ms: u32,
    },
    SetHighWatermark {
        at: u16,
    },
    FailAfter {
        ops: u8,
    },
    Crash {
        tear: bool,
    },
    CleanReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1..3u8, 1..5u8, 0..300u16, prop::bool::weighted(0.15)).prop_map(
            |(batches, records, value_len, new_epoch)| Op::Append { batches, records, value_len, new_epoch }),
        2 => Just(Op::Flush),
        2 => Just(Op::GroupCommit),
        1 => Just(Op::Roll),
        1 => any::<u16>().prop_map(|at| Op::TruncateTo { at }),
        1 => (0..20_000u32).prop_map(|advance_ms| Op::Retention { advance_ms }),
        2 => any::<u16>().prop_map(|at| Op::SetHighWatermark { at }),
        1 => (0..12u8).prop_map(|ops| Op::FailAfter { ops }),
        2 => any::<bool>().prop_map(|tear| Op::Crash { tear }),
        1 => Just(Op::CleanReopen),
    ]
}

/// One batch as the model knows it: its offsets, epoch and stored bytes.
#[derive(Debug, Clone)]
struct Entry {
    base_offset: Offset,
    next_offset: Offset,
    epoch: LeaderEpoch,
    bytes: Vec<u8>,
}

struct Model {
    entries: Vec<Entry>,
    /// Entries below this offset were reported synced: they must survive.
    synced_end: Offset,
    /// The log start is at least this (retention only moves it forward).
    start_floor: Offset,
    epoch: LeaderEpoch,
    now_ms: i64,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        retention_bytes: Some(3_000),
        retention_ms: Some(std::time::Duration::from_secs(60)),
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

fn open(fs: &FaultyFs) -> Log {
    Log::open(Arc::new(fs.clone()), dir(), config()).expect("open must recover, not fail")
}

/// Reads every batch from the log start to the log end, checking contiguity.
fn read_all(log: &Log) -> Vec<(Offset, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log
            .read(offset, 1 << 16, log.log_end_offset())
            .expect("read");
        assert!(
            !read.bytes.is_empty(),
            "empty read at {offset} below the log end"
        );
        for (header, range) in batch::split_batches(&read.bytes, 1 << 20).expect("valid batches") {
            assert_eq!(header.base_offset, offset, "offsets must be contiguous");
            out.push((header.base_offset, read.bytes[range].to_vec()));
            offset = header.next_offset();
        }
        assert_eq!(read.next_offset, offset);
    }
    out
}

/// The epoch cache the model's surviving batches imply.
fn expected_epochs(entries: &[Entry], start: Offset) -> Vec<(LeaderEpoch, Offset)> {
    let mut out: Vec<(LeaderEpoch, Offset)> = Vec::new();
    for e in entries {
        if out.last().is_none_or(|&(epoch, _)| epoch != e.epoch) {
            out.push((e.epoch, e.base_offset.max(start)));
        }
    }
    out
}

/// The checks after a reopen; then the model forgets what the log lost.
fn check_recovered(log: &Log, model: &mut Model) {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    assert!(
        start >= model.start_floor,
        "log start went back: {start} < {}",
        model.start_floor
    );
    assert!(
        end >= model.synced_end,
        "synced data lost: end {end} < synced {}",
        model.synced_end
    );
    assert!(start <= log.high_watermark() && log.high_watermark() <= end);
    let stored = read_all(log);
    let expected: Vec<&Entry> = model
        .entries
        .iter()
        .filter(|e| e.base_offset >= start)
        .collect();
    assert!(
        stored.len() <= expected.len(),
        "log holds batches the model never had"
    );
    for ((offset, bytes), entry) in stored.iter().zip(&expected) {
        assert_eq!(*offset, entry.base_offset);
        assert_eq!(bytes, &entry.bytes, "batch at {offset} differs");
    }
    model
        .entries
        .retain(|e| e.base_offset >= start && e.next_offset <= end);
    model.start_floor = start;
    model.synced_end = end;
    let cache: Vec<_> = log
        .epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    let expected = expected_epochs(&model.entries, start);
    if expected.is_empty() {
        // An empty log (retention took every batch) may keep the epoch that
        // covered its start, moved to the start, as Kafka's cache does; the
        // model no longer has the batches that would name it.
        let at_start = cache.len() == 1 && cache[0].1 == start && cache[0].0 <= model.epoch;
        assert!(
            cache.is_empty() || at_start,
            "epoch cache of an empty log {start}..{end}: {cache:?}"
        );
    } else {
        assert_eq!(cache, expected, "epoch cache (log {start}..{end})");
    }
}

fn pick(at: u16, low: Offset, high: Offset) -> Offset {
    low + (i64::from(at) * (high - low + 1)) / (i64::from(u16::MAX) + 1)
}

/// Applies one operation; `Err` means storage failed and a crash must follow.
fn apply(log: &mut Log, model: &mut Model, fs: &FaultyFs, op: &Op) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match *op {
        Op::Append {
            batches,
            records,
            value_len,
            new_epoch,
        } => {
            if new_epoch {
                model.epoch += 1;
            }
            let mut bytes = Vec::new();
            let mut offset = log.log_end_offset();
            let mut planned = Vec::new();
            for b in 0..batches {
                let value = vec![b.wrapping_add(records); value_len as usize];
                let values: Vec<&[u8]> = (0..records).map(|_| value.as_slice()).collect();
                let mut one = batch::build_batch(&values, model.now_ms);
                batch::stamp(&mut one, offset, model.epoch);
                let next = offset + i64::from(records);
                planned.push(Entry {
                    base_offset: offset,
                    next_offset: next,
                    epoch: model.epoch,
                    bytes: one.clone(),
                });
                offset = next;
                bytes.extend(one);
            }
            // The model holds the batches before the call: a failed append
            // may still have put them on disk.
            model.entries.extend(planned);
            let info = log
                .append(&bytes, model.epoch, model.now_ms)
                .map_err(|x| e(&x))?;
            assert_eq!(info.last_offset + 1, offset);
        }
        Op::Flush => {
            log.flush().map_err(|x| e(&x))?;
        }
        Op::Roll => log.roll().map_err(|x| e(&x))?,
        Op::TruncateTo { at } => {
            let target = pick(at, log.log_start_offset(), log.log_end_offset());
            let cut = model
                .entries
                .iter()
                .find(|x| x.next_offset > target)
                .map_or(target, |x| x.base_offset);
            model.synced_end = model.synced_end.min(cut);
            let result = log.truncate_to(target);
            if result.is_ok() {
                model.entries.retain(|x| x.base_offset < cut);
                assert_eq!(log.log_end_offset(), cut);
            }
            result.map_err(|x| e(&x))?;
        }
        Op::Retention { advance_ms } => {
            model.now_ms += i64::from(advance_ms);
            let before = log.log_start_offset();
            log.apply_retention(model.now_ms).map_err(|x| e(&x))?;
            assert!(log.log_start_offset() >= before);
            assert!(log.log_start_offset() <= log.high_watermark());
            model.start_floor = log.log_start_offset();
        }
        Op::SetHighWatermark { at } => {
            let hw = pick(at, log.high_watermark(), log.log_end_offset());
            log.set_high_watermark(hw);
            log.checkpoint_high_watermark().map_err(|x| e(&x))?;
        }
        Op::FailAfter { ops } => fs.fail_after(u64::from(ops)),
        Op::Crash { .. } | Op::CleanReopen | Op::GroupCommit => {
            unreachable!("handled by the driver")
        }
    }
    model.synced_end = model.synced_end.max(log.flushed_offset());
    Ok(())
}

fn run(ops: &[Op], seed: u64) {
    let fs = FaultyFs::new(seed);
    let mut log = open(&fs);
    let mut model = Model {
        entries: Vec::new(),
        synced_end: 0,
        start_floor: 0,
        epoch: 1,
        now_ms: 1_000_000,
    };
    for op in ops {
        let crash = match op {
            Op::Crash { tear } => Some(*tear),
            Op::CleanReopen => {
                let hw = log.high_watermark();
                let closed = log.close();
                if closed.is_err() {
                    fs.crash(CrashMode::LoseUnsynced);
                }
                log = open(&fs);
                check_recovered(&log, &mut model);
                if closed.is_ok() {
                    assert_eq!(
                        log.high_watermark(),
                        hw,
                        "a clean close keeps the high watermark"
                    );
                }
                None
            }
            Op::GroupCommit => {
                let shared = SharedLog::new(log);
                let end = shared.lock().log_end_offset();
                let result = shared.wait_durable(end, model.now_ms);
                log = shared.into_inner();
                model.synced_end = model.synced_end.max(log.flushed_offset());
                result.err().map(|_| false)
            }
            op => apply(&mut log, &mut model, &fs, op).err().map(|_| false),
        };
        if let Some(tear) = crash {
            drop(log);
            fs.crash(if tear {
                CrashMode::TearUnsynced
            } else {
                CrashMode::LoseUnsynced
            });
            log = open(&fs);
            check_recovered(&log, &mut model);
        }
    }
    drop(log);
    fs.crash(CrashMode::TearUnsynced);
    let log = open(&fs);
    check_recovered(&log, &mut model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model_through_crashes(ops in prop::collection::vec(op(), 1..80), seed in any::<u64>()) {
        run(&ops, seed);
    }
}

#[test]
fn dir_path_is_absolute_for_the_fake_fs() {
    assert!(Path::new(&dir()).is_absolute());
}
