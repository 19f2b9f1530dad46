//! `SharedLog::read`: the file read runs outside the log's lock, yet every
//! result is what `Log::read` would give at some instant: appends go on
//! while a read is in flight, and a truncation racing a read is never seen.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use storage::batch;
use storage::fs::faulty::FaultyFs;
use storage::fs::OsFs;
use storage::{FlushPolicy, Log, LogConfig, Offset, ReadResult, SharedLog};

const PATIENCE: Duration = Duration::from_secs(10);

fn config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    }
}

fn value_batch(value: &str) -> Vec<u8> {
    batch::build_batch(&[value.as_bytes()], 0)
}

/// A shared log on `fs` holding `count` one-record batches.
fn shared_on(fs: &FaultyFs, count: usize) -> Arc<SharedLog> {
    let mut log = Log::open(Arc::new(fs.clone()), PathBuf::from("/d/t-0"), config()).unwrap();
    for i in 0..count {
        log.append(&value_batch(&format!("a{i}")), 1, 0).unwrap();
    }
    Arc::new(SharedLog::new(log))
}

/// Starts `read(from, ..)` on another thread with its first file read
/// parked; returns once it is parked.
fn parked_read(
    fs: &FaultyFs,
    log: &Arc<SharedLog>,
    from: Offset,
) -> std::thread::JoinHandle<Result<ReadResult, storage::ReadError>> {
    fs.hold_next_read();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || log.read(from, 1 << 20, i64::MAX))
    };
    assert!(
        fs.wait_read_held(PATIENCE),
        "the read never reached the file"
    );
    reader
}

#[test]
fn an_append_completes_while_a_read_is_in_its_file_read() {
    let fs = FaultyFs::new(1);
    let log = shared_on(&fs, 5);
    let reader = parked_read(&fs, &log, 0);
    let appended = while_parked(&fs, &log, |log| {
        log.append(&value_batch("during"), 1, 0)
            .unwrap()
            .base_offset
    });
    fs.release_held_read();
    let read = reader.join().unwrap().unwrap();
    assert_eq!(appended, 5);
    assert_eq!(read.next_offset, 5, "the read ends where it was planned");
    assert_eq!(read, log.lock().read(0, 1 << 20, 5).unwrap());
}

/// Runs `step` on the log while a read is parked; fails (instead of
/// hanging) if it cannot finish, which means the read holds the log's lock.
fn while_parked<T: Send + 'static>(
    fs: &FaultyFs,
    log: &Arc<SharedLog>,
    step: impl FnOnce(&SharedLog) -> T + Send + 'static,
) -> T {
    let (done, finished) = mpsc::channel();
    let log = log.clone();
    std::thread::spawn(move || done.send(step(&log)).unwrap());
    let result = finished.recv_timeout(PATIENCE);
    if result.is_err() {
        fs.release_held_read();
        panic!("blocked while a read was in its file read: the read holds the log's lock");
    }
    result.unwrap()
}

/// A truncation (and appends after it) between a read's plan and its file
/// read: the read gives what a read after them gives, never bytes of the
/// cut tail, a short read or a torn batch.
#[test]
fn a_truncation_racing_a_read_is_never_seen() {
    // (name, read from, cut at, values appended after the cut)
    type Case = (&'static str, Offset, Offset, &'static [&'static str]);
    let cases: [Case; 4] = [
        (
            "cut below the read, file shorter than planned",
            2,
            3,
            &["b"],
        ),
        (
            "cut below the read, refilled past the plan",
            2,
            3,
            &[
                "a much longer value than any before it, to move every batch boundary",
                "another long one, so the file ends past where it did",
                "and a third one, longer than the tail it replaces",
                "and a fourth",
                "and a fifth, the last",
                "and a sixth",
                "and a seventh",
            ],
        ),
        ("cut above the read's first batch", 2, 6, &["b", "c"]),
        ("restart at another offset", 2, -1, &[]),
    ];
    let mut wrong = Vec::new();
    for (name, from, cut, appended) in cases {
        let fs = FaultyFs::new(2);
        let log = shared_on(&fs, 10);
        let reader = parked_read(&fs, &log, from);
        while_parked(&fs, &log, move |log| {
            let mut log = log.lock();
            if cut >= 0 {
                log.truncate_to(cut).unwrap();
            } else {
                log.truncate_fully_and_start_at(from).unwrap();
            }
            for value in appended {
                log.append(&value_batch(value), 2, 0).unwrap();
            }
        });
        fs.release_held_read();
        let read = format!("{:?}", reader.join().unwrap());
        let now = format!("{:?}", log.lock().read(from, 1 << 20, i64::MAX));
        if read != now {
            wrong.push(format!("{name}: read {read}, a read now gives {now}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "reads that saw the truncation: {wrong:#?}"
    );
}

/// Appenders and readers on real files, segments rolling under them: every
/// batch a read returns is whole, CRC-checked, continues the one before it,
/// and is byte for byte the batch the final log holds at its offset.
#[test]
fn concurrent_reads_see_only_batches_of_the_final_log() {
    const APPENDERS: usize = 2;
    const APPENDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4_096,
        index_interval_bytes: 256,
        ..config()
    };
    let log = Log::open(Arc::new(OsFs), dir.path().join("t-0"), config).unwrap();
    let log = Arc::new(SharedLog::new(log));
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..APPENDS {
                    let values = vec![format!("t{t}-{i}"); 1 + i % 3];
                    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
                    log.append(&batch::build_batch(&refs, 0), 1, 0).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2u64)
        .map(|seed| {
            let log = log.clone();
            std::thread::spawn(move || read_until(&log, seed, APPENDERS * APPENDS))
        })
        .collect();
    appenders.into_iter().for_each(|a| a.join().unwrap());
    let seen: Vec<(Offset, Vec<u8>)> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    let log = log.lock();
    let mut last = BTreeMap::new();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20, i64::MAX).unwrap();
        for (header, range) in batch::split_stored_batches(&read.bytes, 1 << 20).unwrap() {
            last.insert(header.base_offset, read.bytes[range].to_vec());
        }
        offset = read.next_offset;
    }
    assert!(seen.len() > 100, "only {} batches read", seen.len());
    for (base_offset, bytes) in &seen {
        assert_eq!(last.get(base_offset), Some(bytes), "batch at {base_offset}");
    }
}

/// Reads from pseudo-random offsets until the log holds `batches` batches
/// and more than 100 were read; checks each result's shape and returns
/// every batch read.
fn read_until(log: &SharedLog, seed: u64, batches: usize) -> Vec<(Offset, Vec<u8>)> {
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut seen = Vec::new();
    loop {
        let (end, full) = {
            let log = log.lock();
            let end = log.log_end_offset();
            (end, end >= (batches * 2) as Offset)
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let from = (rng % (end as u64 + 1)) as Offset;
        let max_bytes = (rng >> 32) as usize % 2_000;
        let read = log.read(from, max_bytes, i64::MAX).expect("read");
        let parts = batch::split_stored_batches(&read.bytes, 1 << 20).expect("whole batches");
        let mut next = None;
        for (i, (header, range)) in parts.into_iter().enumerate() {
            if i == 0 {
                assert!(header.base_offset <= from && from <= header.last_offset());
            } else {
                assert_eq!(Some(header.base_offset), next, "contiguous");
            }
            next = Some(header.next_offset());
            seen.push((header.base_offset, read.bytes[range].to_vec()));
        }
        assert_eq!(read.next_offset, next.unwrap_or(from));
        // Appenders can finish before a starved reader has read much: it
        // goes on (against the final log) until its share is not vacuous.
        if full && seen.len() > 100 {
            return seen;
        }
    }
}
