//! Table tests of the log's rules: rolling, retention, truncation and the
//! epoch cache as seen through the log, and bad input to `append`.

use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use storage::batch;
use storage::fs::faulty::FaultyFs;
use storage::{AppendError, Log, LogConfig, ReadError, TruncateError};

fn open_with(config: LogConfig) -> (FaultyFs, Log) {
    let fs = FaultyFs::new(1);
    let log = Log::open(Arc::new(fs.clone()), PathBuf::from("/d/t-0"), config).unwrap();
    (fs, log)
}

/// A one-record batch of about 100 bytes.
fn small() -> Vec<u8> {
    batch::build_batch(&[&[b'v'; 30]], 0)
}

#[test]
fn roll_rules() {
    let size = small().len() as u32;
    // (name, config, appends as (now_ms, count), expected segments)
    type Case = (&'static str, LogConfig, &'static [(i64, usize)], usize);
    let cases: [Case; 4] = [
        (
            "fits",
            LogConfig {
                segment_bytes: size * 3,
                ..LogConfig::default()
            },
            &[(0, 3)],
            1,
        ),
        (
            "by size",
            LogConfig {
                segment_bytes: size * 3,
                ..LogConfig::default()
            },
            &[(0, 7)],
            3,
        ),
        (
            "by age",
            LogConfig {
                segment_ms: Some(Duration::from_millis(100)),
                ..LogConfig::default()
            },
            &[(0, 2), (99, 1), (100, 1), (150, 1), (201, 1)],
            3,
        ),
        (
            "never by age when unset",
            LogConfig {
                segment_ms: None,
                ..LogConfig::default()
            },
            &[(0, 1), (i64::MAX / 2, 1)],
            1,
        ),
    ];
    for (name, config, appends, segments) in cases {
        let (_, mut log) = open_with(config);
        for &(now, count) in appends {
            for _ in 0..count {
                log.append(&small(), 1, now).unwrap();
            }
        }
        assert_eq!(log.segment_count(), segments, "{name}");
    }
}

#[test]
fn a_batch_larger_than_a_segment_is_refused() {
    let (_, mut log) = open_with(LogConfig {
        segment_bytes: 200,
        ..LogConfig::default()
    });
    let big = batch::build_batch(&[&[0; 300]], 0);
    assert!(matches!(
        log.append(&big, 1, 0),
        Err(AppendError::InvalidBatch { .. })
    ));
    let two = [small(), small(), small()].concat();
    assert!(matches!(
        log.append(&two, 1, 0),
        Err(AppendError::TooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn retention_rules() {
    let size = small().len() as u64;
    // Four segments of two batches (timestamps 0..=7 s), the last active.
    let build = |retention_bytes, retention_ms, hw| {
        let config = LogConfig {
            segment_bytes: (size * 2) as u32,
            retention_bytes,
            retention_ms,
            ..LogConfig::default()
        };
        let (_, mut log) = open_with(config);
        for i in 0..8 {
            log.append(&batch::build_batch(&[&[b'v'; 30]], i * 1_000), 1, 0)
                .unwrap();
        }
        log.set_high_watermark(hw);
        log
    };
    let secs = |s| Some(Duration::from_secs(s));
    // (name, retention.bytes, retention.ms, hw, now_ms, expected log start)
    let cases = [
        ("nothing expires", None, None, 8, 10_000, 0),
        (
            "by size keeps at least retention.bytes",
            Some(size * 5),
            None,
            8,
            0,
            2,
        ),
        (
            "by size never deletes the active segment",
            Some(0),
            None,
            8,
            0,
            6,
        ),
        (
            "by age: newest timestamp older than retention",
            None,
            secs(5),
            8,
            9_500,
            4,
        ),
        (
            "by age: exactly at the limit is kept",
            None,
            secs(5),
            8,
            6_000,
            0,
        ),
        ("never above the high watermark", Some(0), None, 3, 0, 2),
    ];
    for (name, bytes, ms, hw, now, start) in cases {
        let mut log = build(bytes, ms, hw);
        log.apply_retention(now).unwrap();
        assert_eq!(log.log_start_offset(), start, "{name}");
        assert!(
            matches!(log.read(0, 100, 8), Err(ReadError::OffsetOutOfRange { .. })) || start == 0
        );
        assert_eq!(
            log.epoch_cache().entries()[0].start_offset,
            start,
            "{name}: epoch cache follows"
        );
    }
}

#[test]
fn truncation_moves_epochs_and_high_watermark_down() {
    let (fs, mut log) = open_with(LogConfig::default());
    for epoch in [1, 1, 2, 2, 3] {
        log.append(&small(), epoch, 0).unwrap();
    }
    log.set_high_watermark(5);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 2)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 5)));
    log.truncate_to(3).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.high_watermark(), 3);
    assert_eq!(
        log.end_offset_for_epoch(3),
        None,
        "epoch 3 is gone: newer than any known"
    );
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 3)));
    assert!(matches!(
        log.truncate_to(-1),
        Err(TruncateError::BelowLogStart { .. })
    ));
    // An older epoch than the log's latest is refused; the same one is fine.
    assert!(matches!(
        log.append(&small(), 1, 0),
        Err(AppendError::EpochRegression(_))
    ));
    log.append(&small(), 2, 0).unwrap();
    // The truncation is durable: a crash brings none of it back.
    drop(log);
    fs.crash(storage::fs::faulty::CrashMode::LoseUnsynced);
    let log = Log::open(Arc::new(fs), PathBuf::from("/d/t-0"), LogConfig::default()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        3,
        "the unsynced append is lost, the truncation kept"
    );
    assert_eq!(log.end_offset_for_epoch(3), None);
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 3)));
}

#[test]
fn reads_respect_max_offset_and_max_bytes() {
    let (_, mut log) = open_with(LogConfig::default());
    for _ in 0..5 {
        log.append(&batch::build_batch(&[b"a", b"b"], 0), 1, 0)
            .unwrap();
    }
    let read = log.read(0, 1, 10).unwrap();
    assert_eq!(
        read.next_offset, 2,
        "the first batch is whole even above max_bytes"
    );
    let read = log.read(3, 1 << 20, 6).unwrap();
    assert_eq!(
        read.next_offset, 6,
        "starts at the batch holding offset 3, stops at the high watermark"
    );
    assert!(log.read(6, 1 << 20, 6).unwrap().bytes.is_empty());
    assert!(
        log.read(6, 1 << 20, 7).unwrap().bytes.is_empty(),
        "a batch straddling max_offset is withheld"
    );
    assert!(matches!(
        log.read(11, 1, 10),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert!(
        log.read(10, 1, 10).unwrap().bytes.is_empty(),
        "at the log end: empty"
    );
}

#[test]
fn find_by_timestamp_gives_the_first_batch_at_or_after() {
    let (_, mut log) = open_with(LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    });
    for ts in [100, 200, 200, 300, 250, 400] {
        log.append(&batch::build_batch(&[&[b'v'; 30]], ts), 1, 0)
            .unwrap();
    }
    assert!(log.segment_count() > 1);
    let first_offset = |ts, max| {
        log.find_by_timestamp(ts, max)
            .unwrap()
            .map(|r| batch::parse_header(&r.bytes, 1 << 20).unwrap().base_offset)
    };
    let cases = [
        (0, 6, Some(0)),
        (100, 6, Some(0)),
        (150, 6, Some(1)),
        (260, 6, Some(3)),
        (350, 6, Some(5)),
        (401, 6, None),
        (350, 5, None),
    ];
    for (ts, max, expected) in cases {
        assert_eq!(
            first_offset(ts, max),
            expected,
            "timestamp {ts}, max offset {max}"
        );
    }
}

proptest! {
    /// Random bytes, and valid batches with random bytes changed, never panic
    /// the log; whatever is refused leaves it unchanged.
    #[test]
    fn bad_input_is_an_error_not_a_panic(
        noise in prop::collection::vec(any::<u8>(), 0..300),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (_, mut log) = open_with(LogConfig::default());
        log.append(&small(), 1, 0).unwrap();
        let _ = log.append(&noise, 1, 0);
        let mut mutated = batch::build_batch(&[b"key", b"value"], 7);
        for (at, byte) in flips {
            let i = at.index(mutated.len());
            mutated[i] = byte;
        }
        let before = log.log_end_offset();
        match log.append(&mutated, 1, 0) {
            Ok(info) => prop_assert_eq!(info.base_offset, before),
            Err(AppendError::Storage(e)) => prop_assert!(false, "storage failed: {}", e),
            Err(_) => prop_assert_eq!(log.log_end_offset(), before),
        }
        let all = log.read(0, 1 << 20, log.log_end_offset()).unwrap();
        prop_assert_eq!(all.next_offset, log.log_end_offset());
    }
}

/// A follower copying the leader's batches ends with the same bytes, the
/// same offsets and the same epoch cache; batches that skip offsets, go
/// back in epoch or fail their checksum are refused and change nothing.
#[test]
fn replicated_appends_keep_the_leaders_offsets_and_epochs() {
    let (_lfs, mut leader) = open_with(LogConfig::default());
    leader.append(&small(), 1, 0).unwrap();
    leader.append(&small(), 1, 0).unwrap();
    leader.append(&small(), 3, 0).unwrap();
    let end = leader.log_end_offset();
    let copied = leader.read(0, 1 << 20, end).unwrap().bytes;

    let (_ffs, mut follower) = open_with(LogConfig::default());
    let info = follower.append_replicated(&copied, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 2));
    assert_eq!(follower.read(0, 1 << 20, end).unwrap().bytes, copied);
    assert_eq!(
        follower.epoch_cache().entries(),
        leader.epoch_cache().entries()
    );
    assert_eq!(follower.end_offset_for_epoch(1), Some((1, 2)));

    let mut next = small();
    batch::stamp(&mut next, 3, 3);
    let mut gap = small();
    batch::stamp(&mut gap, 5, 3);
    let mut older = small();
    batch::stamp(&mut older, 3, 2);
    let mut corrupt = next.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let before = follower.read(0, 1 << 20, 3).unwrap().bytes;
    assert!(matches!(
        follower.append_replicated(&gap, 0),
        Err(AppendError::OffsetMismatch {
            expected: 3,
            got: 5
        })
    ));
    assert!(matches!(
        follower.append_replicated(&older, 0),
        Err(AppendError::EpochRegression(_))
    ));
    assert!(matches!(
        follower.append_replicated(&corrupt, 0),
        Err(AppendError::InvalidBatch { .. })
    ));
    assert_eq!(follower.log_end_offset(), 3);
    assert_eq!(follower.read(0, 1 << 20, 3).unwrap().bytes, before);
    follower.append_replicated(&next, 0).unwrap();
    assert_eq!(follower.log_end_offset(), 4);
}

/// A follower fallen behind its leader's log start restarts its log there
/// (Kafka's `truncateFullyAndStartAt`): from any offset, below, inside or
/// above the old log, it ends empty at that offset, takes the leader's
/// batches from it, refuses reads below it, and reopens the same.
#[test]
fn full_truncation_restarts_the_log_at_any_offset() {
    use storage::fs::faulty::CrashMode;
    use storage::fs::FileSystem;
    let dir = PathBuf::from("/d/t-0");
    // Three segments of three one-record batches (0..9), epochs 1 and 3, an
    // idempotent producer, snapshots from the rolls.
    let build = || {
        let (fs, mut log) = open_with(LogConfig {
            segment_bytes: small().len() as u32 * 3,
            ..LogConfig::default()
        });
        for i in 0..9 {
            let epoch = if i < 5 { 1 } else { 3 };
            let idempotent = batch::with_producer(&small(), 4, 0, i);
            log.append(&idempotent, epoch, 0).unwrap();
        }
        log.set_high_watermark(7);
        log.flush().unwrap();
        (fs, log)
    };
    // (name, offset)
    let cases = [
        ("at zero", 0),
        ("inside a segment", 4),
        ("at a segment's base", 6),
        ("at the log end", 9),
        ("above the log end", 25),
    ];
    for (name, offset) in cases {
        let (fs, mut log) = build();
        assert!(log.segment_count() > 2 && !log.producer_state().is_empty());
        log.truncate_fully_and_start_at(offset).unwrap();
        let offsets = |log: &Log| {
            let (start, end) = (log.log_start_offset(), log.log_end_offset());
            (start, end, log.high_watermark(), log.flushed_offset())
        };
        assert_eq!(offsets(&log), (offset, offset, offset, offset), "{name}");
        assert!(log.epoch_cache().entries().is_empty(), "{name}");
        assert!(log.producer_state().is_empty(), "{name}");
        let mut files = fs.list_dir(&dir).unwrap();
        files.retain(|n| n.ends_with(".log") || n.ends_with(".snapshot"));
        assert_eq!(files, [format!("{offset:020}.log")], "{name}");
        assert!(log
            .read(offset, 1 << 20, i64::MAX)
            .unwrap()
            .bytes
            .is_empty());
        if offset > 0 {
            assert!(
                matches!(
                    log.read(offset - 1, 1 << 20, i64::MAX),
                    Err(ReadError::OffsetOutOfRange { .. })
                ),
                "{name}: below the new start"
            );
            assert!(matches!(
                log.truncate_to(offset - 1),
                Err(TruncateError::BelowLogStart { .. })
            ));
        }
        // The crash is survived before any further write...
        drop(log);
        fs.crash(CrashMode::TearUnsynced);
        let mut log = Log::open(Arc::new(fs.clone()), dir.clone(), LogConfig::default()).unwrap();
        assert_eq!(offsets(&log), (offset, offset, offset, offset), "{name}");
        assert!(log.epoch_cache().entries().is_empty(), "{name}");
        // ...and the leader's batches follow at the offset, in an epoch
        // older than the old log's latest (the cache was emptied).
        let mut copied = small();
        batch::stamp(&mut copied, offset, 2);
        log.append_replicated(&copied, 0).unwrap();
        log.flush().unwrap();
        assert_eq!(log.read(offset, 1 << 20, i64::MAX).unwrap().bytes, copied);
        drop(log);
        fs.crash(CrashMode::LoseUnsynced);
        let log = Log::open(Arc::new(fs), dir.clone(), LogConfig::default()).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (offset, offset + 1),
            "{name}: reopened"
        );
        assert_eq!(log.end_offset_for_epoch(2), Some((2, offset + 1)), "{name}");
    }
    let (_, mut log) = build();
    assert!(matches!(
        log.truncate_fully_and_start_at(-1),
        Err(TruncateError::BelowLogStart { .. })
    ));
    assert_eq!(log.log_end_offset(), 9, "a refused restart changes nothing");
}

/// The high-watermark checkpoint is written when the high watermark moved
/// since it was last written (or read at open; no file reads as the log
/// start), and only then: an idle broker syncs nothing for it.
#[test]
fn an_unchanged_high_watermark_is_not_checkpointed_again() {
    use storage::fs::FileSystem;
    let (fs, mut log) = open_with(LogConfig::default());
    for _ in 0..3 {
        log.append(&small(), 1, 0).unwrap();
    }
    let file = PathBuf::from("/d/t-0").join("high-watermark-checkpoint");
    log.checkpoint_high_watermark().unwrap();
    assert!(
        !fs.exists(&file),
        "a new log's high watermark is its log start"
    );
    log.set_high_watermark(2);
    log.checkpoint_high_watermark().unwrap();
    assert!(fs.exists(&file), "written");
    // Removed behind the log's back, to see whether it is written again.
    fs.remove_file(&file).unwrap();
    log.checkpoint_high_watermark().unwrap();
    assert!(!fs.exists(&file), "unchanged: not written again");
    log.set_high_watermark(3);
    log.checkpoint_high_watermark().unwrap();
    assert!(fs.exists(&file), "moved: written");
    drop(log);
    let mut log = Log::open(
        Arc::new(fs.clone()),
        PathBuf::from("/d/t-0"),
        LogConfig::default(),
    )
    .unwrap();
    assert_eq!(log.high_watermark(), 3, "read back at open");
    fs.remove_file(&file).unwrap();
    log.checkpoint_high_watermark().unwrap();
    assert!(!fs.exists(&file), "as read at open: not written again");
}
