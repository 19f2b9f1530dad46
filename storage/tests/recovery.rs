//! Recovery of each kind of torn or corrupt data, on real files.
//!
//! Each case builds a log, damages its files the way a crash or a bad disk
//! would, reopens it, and checks what survives: a clean prefix, nothing
//! corrupt served, and damaged derived files rebuilt.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use storage::fs::OsFs;
use storage::{batch, Log, LogConfig, Offset, ReadError};

const BATCHES: usize = 10;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(Arc::new(OsFs), dir, config()).expect("open")
}

/// A log of `BATCHES` batches of 3 records each (~200 bytes), left as a
/// crash would leave it (no clean close). Returns the batch positions
/// within their segment files.
fn build(dir: &Path) -> Vec<(PathBuf, u64, Offset)> {
    let mut log = open(dir);
    let mut where_ = Vec::new();
    for i in 0..BATCHES {
        let v = vec![i as u8; 40];
        let info = log
            .append(
                &batch::build_batch(&[&v, &v, &v], 1_000 + i as i64),
                1 + (i / 4) as i32,
                0,
            )
            .expect("append");
        let read = log.read(info.base_offset, 1, i64::MAX).expect("read back");
        let (path, range) = read.file_range.expect("range");
        where_.push((path, range.start, info.base_offset));
    }
    log.flush().expect("flush");
    where_
}

fn damage(path: &Path, position: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    f.seek(SeekFrom::Start(position)).expect("seek");
    f.write_all(bytes).expect("write");
}

fn cut(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(len)
        .expect("set_len");
}

fn offsets(log: &Log) -> Vec<Offset> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let read = log.read(at, 1 << 20, i64::MAX).expect("read");
        for (h, _) in batch::split_batches(&read.bytes, 1 << 20).expect("batches") {
            out.push(h.base_offset);
        }
        at = read.next_offset;
    }
    out
}

/// Tail damage: the last batch is cut or corrupt. Recovery drops exactly it.
#[test]
fn torn_or_corrupt_tail_is_truncated() {
    type Damage = fn(&Path, u64, u64);
    let cases: [(&str, Damage); 6] = [
        ("torn header", |p, pos, _| cut(p, pos + 30)),
        ("torn body", |p, _, end| cut(p, end - 1)),
        ("flipped record byte", |p, _, end| {
            damage(p, end - 3, b"\xff")
        }),
        ("bad magic", |p, pos, _| damage(p, pos + 16, &[1])),
        ("negative length", |p, pos, _| {
            damage(p, pos + 8, &(-1i32).to_be_bytes())
        }),
        ("zeroed tail", |p, pos, end| {
            damage(p, pos, &vec![0; (end - pos) as usize])
        }),
    ];
    for (name, hurt) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let batches = build(tmp.path());
        let (path, position, base) = batches.last().unwrap().clone();
        let end = std::fs::metadata(&path).unwrap().len();
        hurt(&path, position, end);
        let log = open(tmp.path());
        assert_eq!(log.log_end_offset(), base, "{name}: log end");
        assert_eq!(
            offsets(&log).len(),
            BATCHES - 1,
            "{name}: surviving batches"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            position,
            "{name}: file cut"
        );
        // The log takes appends again at the cut.
        drop(log);
        let mut log = open(tmp.path());
        let info = log
            .append(&batch::build_batch(&[b"again"], 0), 3, 0)
            .unwrap();
        assert_eq!(info.base_offset, base, "{name}");
    }
}

/// Damage before the tail, in a segment recovery checks (no recovery point):
/// the log is cut there and every later segment is dropped.
#[test]
fn corruption_before_the_tail_cuts_the_log_there() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = build(tmp.path());
    let segments_before = open(tmp.path()).segment_count();
    assert!(segments_before >= 3, "the case needs several segments");
    std::fs::remove_file(tmp.path().join("recovery-point-checkpoint")).unwrap();
    let (path, position, base) = batches[2].clone();
    damage(&path, position + 70, b"\x00\x01\x02");
    let log = open(tmp.path());
    assert_eq!(log.log_end_offset(), base);
    assert_eq!(offsets(&log).len(), 2);
    assert!(log.segment_count() < segments_before);
}

/// Damage inside a segment below the recovery point is not re-checked on
/// open, but a read finds it and returns an error, never the bytes.
#[test]
fn corruption_below_the_recovery_point_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = build(tmp.path());
    let (path, position, base) = batches[1].clone();
    damage(&path, position + 70, b"\x00\x01\x02");
    let log = open(tmp.path());
    match log.read(base, 1 << 20, i64::MAX) {
        Err(ReadError::Corrupt(c)) => {
            assert_eq!(
                (c.path, c.position, c.base_offset),
                (path, position, Some(base))
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // A read of the batch before stops short of the corrupt one.
    let before = log.read(batches[0].2, 1 << 20, i64::MAX).unwrap();
    assert_eq!(before.next_offset, base);
}

/// A missing segment in the middle: the log ends where the gap starts.
#[test]
fn a_gap_between_segments_drops_what_follows() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let mut logs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 3);
    std::fs::remove_file(&logs[1]).unwrap();
    let log = open(tmp.path());
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), offsets(&log).len() as i64 * 3);
    assert!(!logs[2].exists(), "segments after the gap are deleted");
}

/// Derived and auxiliary files: indexes are rebuilt, leftovers removed,
/// malformed checkpoints replaced from the batches themselves.
#[test]
fn derived_files_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let reference = open(tmp.path());
    let (expected, epochs) = (offsets(&reference), reference.epoch_cache().clone());
    drop(reference);
    let index = tmp.path().join(format!("{:020}.index", 0));
    let sizes = std::fs::metadata(&index).unwrap().len();
    assert!(sizes > 0, "the first segment has index entries");
    let cases: [(&str, &str, Option<&[u8]>); 5] = [
        ("missing index", "00000000000000000000.index", None),
        (
            "garbage index",
            "00000000000000000000.index",
            Some(b"\xff\xff\xff\xff\x00\x00\x00\x01abc"),
        ),
        (
            "leftover temp file",
            "leader-epoch-checkpoint.tmp",
            Some(b"half"),
        ),
        (
            "malformed epoch checkpoint",
            "leader-epoch-checkpoint",
            Some(b"0\n5\n1 0\n"),
        ),
        (
            "malformed high watermark",
            "high-watermark-checkpoint",
            Some(b"zero"),
        ),
    ];
    for (name, file, contents) in cases {
        let path = tmp.path().join(file);
        match contents {
            None => std::fs::remove_file(&path).unwrap(),
            Some(bytes) => std::fs::write(&path, bytes).unwrap(),
        }
        let log = open(tmp.path());
        assert_eq!(offsets(&log), expected, "{name}");
        assert_eq!(log.epoch_cache(), &epochs, "{name}");
        assert_eq!(
            std::fs::metadata(&index).unwrap().len(),
            sizes,
            "{name}: index rebuilt"
        );
        assert!(
            !tmp.path().join("leader-epoch-checkpoint.tmp").exists(),
            "{name}"
        );
    }
}

#[test]
fn bad_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 3,
        ..LogConfig::default()
    };
    let err = Log::open(Arc::new(OsFs), tmp.path(), config).unwrap_err();
    assert!(err.to_string().contains("segment.bytes"), "{err}");
}
