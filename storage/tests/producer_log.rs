//! The producer state through the log: a leader's appends (retries
//! answered with the original offsets, bad input refused with the log
//! unchanged), a follower's copy, truncation, retention, and recovery from
//! a snapshot and from the log alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storage::batch;
use storage::fs::faulty::{CrashMode, FaultyFs};
use storage::fs::OsFs;
use storage::producer_state::{InvalidProducerBatch, SequenceError};
use storage::{AppendError, Log, LogConfig};

/// Small segments, so a handful of appends roll (and snapshot) often.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        ..LogConfig::default()
    }
}

fn faulty(config: LogConfig) -> (FaultyFs, Log) {
    let fs = FaultyFs::new(1);
    let log = Log::open(Arc::new(fs.clone()), PathBuf::from("/d/t-0"), config).unwrap();
    (fs, log)
}

/// A batch of `count` records from producer `pid`, epoch `epoch`, at `seq`.
fn idempotent(pid: i64, epoch: i16, seq: i32, count: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("{pid}-{epoch}-{seq}-{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    batch::with_producer(&batch::build_batch(&refs, 1_000), pid, epoch, seq)
}

/// Appends producer 1's batches of two records, sequences from 0.
fn append_run(log: &mut Log, batches: i32) {
    for i in 0..batches {
        let info = log.append(&idempotent(1, 0, 2 * i, 2), 1, 0).unwrap();
        assert!(!info.duplicate);
    }
}

#[test]
fn a_retry_is_answered_with_its_original_offsets_and_not_stored_again() {
    let (_fs, mut log) = faulty(LogConfig::default());
    let first = log.append(&idempotent(1, 0, 0, 3), 1, 0).unwrap();
    let second = log.append(&idempotent(1, 0, 3, 2), 1, 0).unwrap();
    assert_eq!((second.base_offset, second.last_offset), (3, 4));
    let end = log.log_end_offset();
    for (retry, original) in [
        (idempotent(1, 0, 0, 3), first),
        (idempotent(1, 0, 3, 2), second),
    ] {
        let again = log.append(&retry, 1, 0).unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.base_offset, again.last_offset),
            (original.base_offset, original.last_offset)
        );
    }
    assert_eq!(log.log_end_offset(), end, "a retry wrote nothing");
    // A retry in a later leader epoch (after a failover) is still one.
    assert!(log.append(&idempotent(1, 0, 3, 2), 2, 0).unwrap().duplicate);
}

/// Each kind of bad input gets its error, and neither the log nor the
/// producer state changes.
#[test]
fn bad_producer_batches_are_refused_and_change_nothing() {
    let (_fs, mut log) = faulty(LogConfig::default());
    log.append(&idempotent(1, 0, 0, 2), 1, 0).unwrap();
    let mut mixed = idempotent(1, 0, 2, 1);
    mixed.extend(batch::build_batch(&[b"plain"], 0));
    let mut transactional = idempotent(1, 0, 2, 1);
    transactional[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    let transactional = batch::with_producer(&transactional, 1, 0, 2); // fresh crc
    type Expect = fn(&AppendError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "producer id without an epoch",
            idempotent(1, -1, 2, 1),
            |e| {
                matches!(
                    e,
                    AppendError::InvalidProducerBatch(InvalidProducerBatch::NoEpoch(1))
                )
            },
        ),
        ("negative sequence", idempotent(1, 0, -5, 1), |e| {
            matches!(
                e,
                AppendError::InvalidProducerBatch(InvalidProducerBatch::Sequence { .. })
            )
        }),
        ("negative producer id", idempotent(-7, 0, 0, 1), |e| {
            matches!(
                e,
                AppendError::InvalidProducerBatch(InvalidProducerBatch::ProducerId(-7))
            )
        }),
        ("a plain batch mixed in", mixed, |e| {
            matches!(
                e,
                AppendError::InvalidProducerBatch(InvalidProducerBatch::NotAlone)
            )
        }),
        ("transactional", transactional, |e| {
            matches!(
                e,
                AppendError::InvalidProducerBatch(InvalidProducerBatch::Transactional)
            )
        }),
        ("gap", idempotent(1, 1, 5, 1), |e| {
            matches!(
                e,
                AppendError::Sequence(SequenceError::OutOfOrderSequence {
                    expected: 1,
                    got: 5,
                    ..
                })
            )
        }),
        ("older epoch", idempotent(1, 0, 2, 1), |e| {
            matches!(
                e,
                AppendError::Sequence(SequenceError::InvalidProducerEpoch {
                    epoch: 0,
                    current: 1,
                    ..
                })
            )
        }),
        ("unknown producer past 0", idempotent(9, 0, 3, 1), |e| {
            matches!(
                e,
                AppendError::Sequence(SequenceError::UnknownProducerId {
                    producer_id: 9,
                    sequence: 3
                })
            )
        }),
    ];
    log.append(&idempotent(1, 1, 0, 1), 1, 0).unwrap(); // epoch 1 now
    let (end, state) = (log.log_end_offset(), log.producer_state().clone());
    for (name, bytes, expected) in cases {
        match log.append(&bytes, 1, 0) {
            Err(e) => assert!(expected(&e), "{name}: unexpected error {e:?}"),
            Ok(info) => panic!("{name}: accepted at {}", info.base_offset),
        }
        assert_eq!(log.log_end_offset(), end, "{name}: log changed");
        assert_eq!(
            log.producer_state(),
            &state,
            "{name}: producer state changed"
        );
    }
    // A producer id no one issued, at sequence 0: accepted, as Kafka does.
    assert!(
        !log.append(&idempotent(12345, 0, 0, 1), 1, 0)
            .unwrap()
            .duplicate
    );
}

#[test]
fn recovery_rebuilds_the_state_from_a_snapshot_and_from_the_log_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let open = || Log::open(Arc::new(OsFs), &path, config()).unwrap();
    let mut log = open();
    append_run(&mut log, 12);
    assert!(log.segment_count() > 2, "the test needs rolls (snapshots)");
    let state = log.producer_state().clone();
    log.flush().unwrap(); // pays the syncs the rolls owe: their snapshots
    drop(log); // a crash: no clean-close snapshot
    let snapshots = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "snapshot"))
            .collect()
    };
    assert!(!snapshots(&path).is_empty());
    assert_eq!(
        open().producer_state(),
        &state,
        "from the newest snapshot plus the tail"
    );
    // A damaged newest snapshot is skipped (and removed), an older one used.
    let mut all = snapshots(&path);
    all.sort();
    let newest = all.last().unwrap().clone();
    std::fs::write(&newest, b"garbage").unwrap();
    assert_eq!(open().producer_state(), &state, "past a damaged snapshot");
    assert!(!newest.exists());
    for s in snapshots(&path) {
        std::fs::remove_file(s).unwrap();
    }
    let log = open();
    assert_eq!(log.producer_state(), &state, "from the log alone");
    log.close().unwrap();
    assert!(!snapshots(&path).is_empty(), "a clean close snapshots");
    let reopened = open();
    assert_eq!(reopened.producer_state(), &state);
    // The retries are still recognised after all of it.
    let mut reopened = reopened;
    assert!(
        reopened
            .append(&idempotent(1, 0, 22, 2), 1, 0)
            .unwrap()
            .duplicate
    );
}

/// Lost unsynced bytes (and the snapshots written since) never leave a
/// state that claims batches the log no longer holds.
#[test]
fn a_crash_losing_the_tail_loses_its_producer_state_too() {
    let (fs, mut log) = faulty(config());
    append_run(&mut log, 6);
    log.flush().unwrap();
    let durable = log.producer_state().clone();
    log.append(&idempotent(1, 0, 12, 2), 1, 0).unwrap();
    drop(log);
    fs.crash(CrashMode::LoseUnsynced);
    let mut log = Log::open(Arc::new(fs.clone()), PathBuf::from("/d/t-0"), config()).unwrap();
    assert_eq!(log.producer_state(), &durable);
    // The lost batch is not a duplicate: it is stored again, in order.
    assert!(
        !log.append(&idempotent(1, 0, 12, 2), 1, 0)
            .unwrap()
            .duplicate
    );
}

#[test]
fn a_follower_builds_the_leaders_state_and_truncation_keeps_it_right() {
    let (_fs, mut leader) = faulty(config());
    let (_fs2, mut follower) = faulty(config());
    append_run(&mut leader, 5);
    leader.append(&idempotent(2, 3, 0, 1), 1, 0).unwrap();
    append_run_from(&mut leader, 5, 10);
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let read = leader
            .read(offset, 1 << 20, leader.log_end_offset())
            .unwrap();
        follower.append_replicated(&read.bytes, 0).unwrap();
        offset = read.next_offset;
    }
    assert_eq!(follower.producer_state(), leader.producer_state());
    // Cut both back to offset 6: the state equals a log that only ever held
    // those records.
    let (_fs3, mut prefix) = faulty(config());
    append_run(&mut prefix, 3);
    follower.truncate_to(6).unwrap();
    assert_eq!(follower.producer_state(), prefix.producer_state());
    assert!(follower.producer_state().get(2).is_none());
    assert!(
        follower.append(&idempotent(1, 0, 6, 2), 2, 0).is_ok(),
        "the next sequence after the cut"
    );
}

fn append_run_from(log: &mut Log, from: i32, to: i32) {
    for i in from..to {
        log.append(&idempotent(1, 0, 2 * i, 2), 1, 0).unwrap();
    }
}

#[test]
fn retention_keeps_producers_whose_batches_it_deleted() {
    let retained = LogConfig {
        retention_ms: Some(Duration::from_millis(1)),
        ..config()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = Log::open(Arc::new(OsFs), &path, retained.clone()).unwrap();
    log.append(&idempotent(5, 0, 0, 1), 1, 0).unwrap();
    append_run(&mut log, 10);
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    assert!(log.apply_retention(10_000).unwrap() > 0);
    assert!(log.log_start_offset() > 0);
    assert!(
        log.producer_state().get(5).is_some(),
        "kept until it expires"
    );
    drop(log);
    let mut log = Log::open(Arc::new(OsFs), &path, retained).unwrap();
    assert!(
        log.producer_state().get(5).is_some(),
        "and through a restart"
    );
    assert!(log.append(&idempotent(5, 0, 0, 1), 1, 0).unwrap().duplicate);
    assert_eq!(
        log.remove_expired_producers(1_000 + 86_400_000, 86_400_000),
        2
    );
}
