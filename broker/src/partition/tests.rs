//! A follower's durable end on `FaultyFs`: what a replica reports to its
//! leader as durable (`crate::durable_end`) is exactly what survives a
//! crash, and its high watermark never passes it.

use super::*;
use storage::batch::build_batch;
use storage::fs::faulty::{CrashMode, FaultyFs};

fn open(fs: &Arc<FaultyFs>, flush: FlushPolicy) -> Partition {
    let config = LogConfig {
        flush,
        ..LogConfig::default()
    };
    let dir = std::path::PathBuf::from("/data/t-0");
    Partition::open(fs.clone(), dir, "t", 0, Uuid::nil(), config).expect("open")
}

/// A leader's log of `n` one-record batches in epoch 1, as the batches a
/// follower fetches (their offsets and epochs set).
fn leader_batches(n: i64) -> Vec<Vec<u8>> {
    let leader = open(&Arc::new(FaultyFs::new(1)), FlushPolicy::Never);
    leader.become_leader(1).expect("epoch");
    for _ in 0..n {
        leader
            .append(&build_batch(&[b"value"], 0), 1, 0)
            .expect("append");
    }
    // KIP-74: a read of 1 byte returns the first batch whole.
    (0..n)
        .map(|offset| leader.read(offset, 1, Offset::MAX).expect("read").bytes)
        .collect()
}

#[test]
fn a_followers_durable_end_is_what_survives_a_crash() {
    for mode in [CrashMode::LoseUnsynced, CrashMode::TearUnsynced] {
        let fs = Arc::new(FaultyFs::new(7));
        let follower = open(&fs, FlushPolicy::Always);
        let batches = leader_batches(3);
        follower.append_as_follower(&batches[0], 0).expect("append");
        follower.make_durable(1, 0).expect("sync");
        for batch in &batches[1..] {
            follower.append_as_follower(batch, 0).expect("append");
        }
        // Written to 3, durable to 1: it reports 1 and its HW stops there.
        assert_eq!(follower.follower_position(), (0, 3, 1), "{mode:?}");
        follower.follow_high_watermark(3);
        assert_eq!(follower.offsets().1, 1, "{mode:?}");
        fs.crash(mode);
        let recovered = open(&fs, FlushPolicy::Always);
        assert_eq!(recovered.log_end_offset(), 1, "{mode:?}");
    }
}

#[test]
fn a_sync_makes_everything_written_durable() {
    let fs = Arc::new(FaultyFs::new(7));
    let follower = open(&fs, FlushPolicy::Always);
    for batch in leader_batches(3) {
        follower.append_as_follower(&batch, 0).expect("append");
    }
    follower.make_durable(3, 0).expect("sync");
    assert_eq!(follower.follower_position(), (0, 3, 3));
    follower.follow_high_watermark(2);
    assert_eq!(
        follower.offsets().1,
        2,
        "the leader's HW, below the durable end"
    );
    fs.crash(CrashMode::LoseUnsynced);
    assert_eq!(open(&fs, FlushPolicy::Always).log_end_offset(), 3);
}

#[test]
fn without_always_the_durable_end_is_the_log_end() {
    for flush in [
        FlushPolicy::Never,
        FlushPolicy::Interval(std::time::Duration::from_secs(60)),
    ] {
        let follower = open(&Arc::new(FaultyFs::new(7)), flush);
        for batch in leader_batches(2) {
            follower.append_as_follower(&batch, 0).expect("append");
        }
        assert_eq!(follower.follower_position(), (0, 2, 2), "{flush:?}");
        follower.follow_high_watermark(2);
        assert_eq!(follower.offsets().1, 2, "{flush:?}");
    }
}
