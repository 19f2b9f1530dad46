//! A crash at every mutating step of `truncate_fully_and_start_at`, and at
//! every step of the recovery that finishes it.
//!
//! For N = 0, 1, 2, ... the same log is built on a fresh `FaultyFs`, the Nth
//! mutating file operation of the full truncation fails (and every later
//! one), the machine crashes (unsynced bytes lost, or torn), and the log is
//! reopened, first with the Mth operation of that open failing too (another
//! crash) for M = 0, 1, 2, ... The log must then be exactly the old one or
//! the new empty one at the offset: never a hole, never old records above
//! the offset. The loops end at the first N (and M) that complete.

use std::path::PathBuf;
use std::sync::Arc;
use storage::batch;
use storage::epoch_cache::EpochEntry;
use storage::fs::faulty::{CrashMode, FaultyFs};
use storage::fs::FileSystem;
use storage::{Log, LogConfig, Offset, TruncateError};

fn dir() -> PathBuf {
    PathBuf::from("/data/t-0")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn open(fs: &FaultyFs) -> Result<Log, storage::OpenError> {
    Log::open(Arc::new(fs.clone()), dir(), config())
}

/// What must survive: offsets, epochs and every batch's bytes.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    start: Offset,
    end: Offset,
    epochs: Vec<EpochEntry>,
    bytes: Vec<u8>,
    snapshots: usize,
}

fn shape(fs: &FaultyFs, log: &Log) -> Shape {
    let mut bytes = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20, i64::MAX).expect("read");
        bytes.extend_from_slice(&read.bytes);
        offset = read.next_offset;
    }
    let names = fs.list_dir(&dir()).unwrap();
    Shape {
        start: log.log_start_offset(),
        end: log.log_end_offset(),
        epochs: log.epoch_cache().entries().to_vec(),
        bytes,
        snapshots: names.iter().filter(|n| n.ends_with(".snapshot")).count(),
    }
}

/// The same durable log every time: several segments, two epochs, an
/// idempotent producer (so rolls wrote snapshots).
fn build(fs: &FaultyFs) -> Log {
    let mut log = open(fs).expect("open");
    for i in 0..12 {
        let epoch = if i < 6 { 1 } else { 2 };
        let records = batch::build_batch(&[format!("value-{i}").as_bytes()], 0);
        log.append(&batch::with_producer(&records, 3, 0, i), epoch, 0)
            .expect("append");
    }
    log.set_high_watermark(10);
    log.checkpoint_high_watermark().expect("hw");
    log.flush().expect("flush");
    log
}

fn new_shape(offset: Offset) -> Shape {
    Shape {
        start: offset,
        end: offset,
        epochs: Vec::new(),
        bytes: Vec::new(),
        snapshots: 0,
    }
}

/// The recovered log is the old one or the new one, with no intent record
/// left; returns whether it is the new one.
fn old_or_new(fs: &FaultyFs, log: &Log, old: &Shape, offset: Offset, step: &str) -> bool {
    let got = shape(fs, log);
    assert!(
        !fs.exists(&dir().join("truncate-fully-checkpoint")),
        "{step}: intent record left"
    );
    assert!(
        got == *old || got == new_shape(offset),
        "{step}: neither the old log nor the new one: {got:?}"
    );
    got != *old
}

#[test]
fn a_crash_at_any_step_leaves_the_old_log_or_the_new_one() {
    for offset in [5, 40] {
        let fs = FaultyFs::new(1);
        let old = shape(&fs, &build(&fs));
        assert!(old.snapshots > 0 && old.epochs.len() == 2, "{old:?}");
        let (mut steps, mut new_after_crash) = (0, 0);
        for n in 0.. {
            assert!(n < 1_000, "the truncation never completed");
            let mut completed = true;
            for mode in [CrashMode::LoseUnsynced, CrashMode::TearUnsynced] {
                let fs = FaultyFs::new(n);
                let mut log = build(&fs);
                fs.fail_after(n);
                let result = log.truncate_fully_and_start_at(offset);
                if result.is_ok() && !fs.tripped() {
                    continue;
                }
                completed = false;
                assert!(
                    matches!(result, Err(TruncateError::Storage(_))),
                    "step {n}: {result:?}"
                );
                drop(log);
                fs.crash(mode);
                let step = format!("offset {offset}, step {n}, {mode:?}");
                let log = open(&fs).expect("open");
                new_after_crash += usize::from(old_or_new(&fs, &log, &old, offset, &step));
                drop(log);
                crash_while_recovering(n, offset, mode, &old);
            }
            if completed {
                break;
            }
            steps += 1;
        }
        assert!(steps > 10, "only {steps} mutating steps");
        assert!(new_after_crash > 0, "no crash came after the intent record");
    }
}

/// Builds the log, crashes the truncation at step `n`, then crashes the
/// recovery at every step `m` in turn: each reopen is old or new, and the
/// last one takes the leader's batches at the offset.
fn crash_while_recovering(n: u64, offset: Offset, mode: CrashMode, old: &Shape) {
    for m in 0.. {
        assert!(m < 1_000, "recovery never completed");
        let fs = FaultyFs::new(n * 1_000 + m);
        let mut log = build(&fs);
        fs.fail_after(n);
        let _ = log.truncate_fully_and_start_at(offset);
        drop(log);
        fs.crash(mode);
        fs.fail_after(m);
        let opened = open(&fs);
        let done = opened.is_ok() && !fs.tripped();
        drop(opened);
        fs.crash(mode);
        let step = format!("offset {offset}, step {n}, recovery step {m}, {mode:?}");
        let mut log = open(&fs).expect("open after a crashed recovery");
        if old_or_new(&fs, &log, old, offset, &step) {
            let mut copied = batch::build_batch(&[b"from the leader"], 0);
            batch::stamp(&mut copied, offset, 1);
            log.append_replicated(&copied, 0).expect(&step);
            assert_eq!(log.log_end_offset(), offset + 1, "{step}");
        }
        if done {
            return;
        }
    }
}
