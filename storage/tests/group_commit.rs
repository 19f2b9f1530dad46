//! Group commit under `FlushPolicy::Always`: concurrent appends share
//! fdatasyncs, and none is acknowledged before its bytes are synced.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use storage::batch;
use storage::fs::faulty::{CrashMode, FaultyFs};
use storage::{FlushPolicy, Log, LogConfig, SharedLog};

const THREADS: usize = 8;
const APPENDS: usize = 50;

fn open(fs: &FaultyFs, flush: FlushPolicy) -> Log {
    open_with(fs, flush, LogConfig::default().segment_bytes)
}

fn open_with(fs: &FaultyFs, flush: FlushPolicy, segment_bytes: u32) -> Log {
    let config = LogConfig {
        flush,
        segment_bytes,
        ..LogConfig::default()
    };
    Log::open(Arc::new(fs.clone()), PathBuf::from("/data/t-0"), config).unwrap()
}

/// Appends from `THREADS` threads; returns every acknowledged (offset, value).
fn hammer(log: &Arc<SharedLog>) -> Vec<(i64, Vec<u8>)> {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..APPENDS {
                    let value = format!("t{t}-{i}").into_bytes();
                    match log.append(&batch::build_batch(&[&value], 0), 1, 0) {
                        Ok(info) => acked.push((info.base_offset, value)),
                        Err(_) => break, // the disk failed: nothing more is acked
                    }
                }
                acked
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn concurrent_appends_share_syncs() {
    let fs = FaultyFs::new(7);
    fs.set_sync_delay(Duration::from_millis(2));
    let log = Arc::new(SharedLog::new(open(&fs, FlushPolicy::Always)));
    let before = fs.sync_count();
    let acked = hammer(&log);
    let syncs = fs.sync_count() - before;
    assert_eq!(acked.len(), THREADS * APPENDS);
    assert!(
        syncs < (THREADS * APPENDS) as u64 / 2,
        "{syncs} syncs for {} appends: group commit is not grouping",
        THREADS * APPENDS
    );
}

/// Every acknowledged append is on disk after a crash, also when the disk
/// starts failing part-way through, and with segments rolling under the
/// appends (the group commit pays the syncs the rolls owe).
#[test]
fn acknowledged_appends_survive_a_crash() {
    let cases = [None, Some(40), Some(200)]
        .into_iter()
        .flat_map(|fail_after| [(fail_after, 1 << 30), (fail_after, 2_000)]);
    for (fail_after, segment_bytes) in cases {
        let fs = FaultyFs::new(11);
        // Appends land while a sync is in flight, as on a real disk.
        fs.set_sync_delay(Duration::from_millis(1));
        let log = open_with(&fs, FlushPolicy::Always, segment_bytes);
        let log = Arc::new(SharedLog::new(log));
        if let Some(n) = fail_after {
            fs.fail_after(n);
        }
        let acked = hammer(&log);
        assert!(!acked.is_empty());
        drop(log);
        fs.crash(CrashMode::TearUnsynced);
        let log = open_with(&fs, FlushPolicy::Always, segment_bytes);
        if segment_bytes < 1 << 20 && fail_after.is_none() {
            assert!(log.segment_count() > 10, "the case needs rolls");
        }
        for (offset, value) in &acked {
            let read = log.read(*offset, 1, i64::MAX).unwrap();
            let (header, range) = batch::split_batches(&read.bytes, 1 << 20)
                .unwrap()
                .remove(0);
            assert_eq!(
                header.base_offset, *offset,
                "{fail_after:?} {segment_bytes}"
            );
            let bytes = &read.bytes[range];
            assert!(
                bytes.ends_with(&[value.as_slice(), &[0]].concat()),
                "value at {offset}, segment.bytes {segment_bytes}"
            );
        }
    }
}

/// With `Never`, appends are not synced (durability comes from replication);
/// with `Interval`, the first append after the interval syncs.
#[test]
fn other_flush_policies() {
    let fs = FaultyFs::new(3);
    let log = SharedLog::new(open(&fs, FlushPolicy::Never));
    log.lock().assign_leader_epoch(1).unwrap(); // its checkpoint syncs
    let before = fs.sync_count();
    log.append(&batch::build_batch(&[b"x"], 0), 1, 0).unwrap();
    assert_eq!(fs.sync_count(), before);
    assert_eq!(log.lock().flushed_offset(), 0);
    drop(log);

    let fs = FaultyFs::new(3);
    let log = SharedLog::new(open(&fs, FlushPolicy::Interval(Duration::from_millis(100))));
    log.append(&batch::build_batch(&[b"a"], 0), 1, 1_000)
        .unwrap();
    assert_eq!(
        log.lock().flushed_offset(),
        1,
        "first append syncs: no sync yet"
    );
    log.append(&batch::build_batch(&[b"b"], 0), 1, 1_050)
        .unwrap();
    assert_eq!(
        log.lock().flushed_offset(),
        1,
        "within the interval: not synced"
    );
    log.flush_if_due(1_100).unwrap();
    assert_eq!(log.lock().flushed_offset(), 2, "interval passed: synced");
}

/// A roll syncs nothing under the log's lock: the sealed segment, the new
/// one's directory entry, the producer snapshot and the recovery point wait
/// for the next group commit, and until then nothing claims them durable.
#[test]
fn a_roll_leaves_its_syncs_to_the_group_commit() {
    let fs = FaultyFs::new(5);
    let log = SharedLog::new(open(&fs, FlushPolicy::Always));
    let dir = PathBuf::from("/data/t-0");
    let recovery_point = || fs.contents(&dir.join("recovery-point-checkpoint"));
    log.append(&batch::build_batch(&[b"a", b"b"], 0), 1, 0)
        .unwrap();
    log.append_unsynced(&batch::build_batch(&[b"c"], 0), 1, 0)
        .unwrap();
    let (syncs, point) = (fs.sync_count(), recovery_point());
    log.lock().roll().unwrap();
    assert_eq!(fs.sync_count(), syncs, "the roll synced under the lock");
    assert_eq!(
        recovery_point(),
        point,
        "the recovery point claims unsynced bytes"
    );
    assert_eq!(log.lock().flushed_offset(), 2, "offset 2 is not synced yet");
    let snapshot = dir.join(storage::snapshot_file_name(3));
    assert!(fs.contents(&snapshot).is_none());

    log.wait_durable(3, 0).unwrap();
    assert_eq!(log.lock().flushed_offset(), 3);
    assert_eq!(recovery_point(), Some(b"0\n1\n3\n".to_vec()));
    assert!(fs.contents(&snapshot).is_some(), "the roll's snapshot");
    // All of it was made durable: a crash keeps the sealed segment.
    drop(log);
    fs.crash(CrashMode::LoseUnsynced);
    let log = open(&fs, FlushPolicy::Always);
    assert_eq!((log.segment_count(), log.log_end_offset()), (2, 3));
}
