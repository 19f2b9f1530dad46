use super::*;
use proptest::prelude::*;

const LAG: u64 = 10_000;

fn leader(isr: &[BrokerId]) -> LeaderState {
    LeaderState::new(0, 1, vec![1, 2, 3], isr.to_vec(), 0, 0, LAG)
}

#[test]
fn high_watermark_table() {
    let ends = BTreeMap::from([(2, 5), (3, 7)]);
    // (leader end, isr, expected)
    let cases: [(Offset, &[BrokerId], Offset); 5] = [
        (10, &[1, 2, 3], 5),
        (10, &[1, 3], 7),
        (10, &[1], 10),
        (4, &[1, 2, 3], 4),     // the leader's own (durable) end bounds it
        (10, &[1, 2, 3, 4], 0), // a member never heard from has nothing
    ];
    for (leader_end, isr, expected) in cases {
        assert_eq!(
            high_watermark(1, leader_end, isr, &ends),
            expected,
            "{isr:?}"
        );
    }
}

/// Step by step: followers fetch, the high watermark follows the slowest
/// ISR member, a silent member is proposed out after the lag limit, the
/// HW waits for it until the shrink commits, and it rejoins once caught up.
#[test]
fn shrink_and_expand_story() {
    let mut s = leader(&[1, 2, 3]);
    // Leader has 10 records; 2 fetches at 10 (caught up), 3 at 4.
    s.on_fetch(100, 2, 10, 10);
    s.on_fetch(100, 3, 4, 10);
    assert_eq!(s.advance(10), Some(4));
    assert_eq!(s.isr_change(100, |_| true), None, "nobody lags yet");
    // 3 falls silent; 2 keeps up. Past the lag limit, 3 is proposed out.
    s.on_fetch(LAG, 2, 10, 10);
    assert_eq!(
        s.isr_change(LAG, |_| true),
        None,
        "3 last caught up at 0: not yet"
    );
    assert_eq!(s.isr_change(LAG + 1, |_| true), Some(vec![1, 2]));
    s.on_proposed(vec![1, 2]);
    assert_eq!(
        s.isr_change(LAG + 200, |_| true),
        None,
        "one change at a time"
    );
    assert_eq!(
        s.advance(10),
        None,
        "until the shrink commits, 3 still counts"
    );
    s.on_committed(vec![1, 2]);
    assert_eq!(s.advance(10), Some(10));
    // 3 comes back and catches up to the HW: proposed back in.
    s.on_fetch(LAG + 300, 3, 10, 10);
    assert_eq!(
        s.isr_change(LAG + 300, |b| b != 3),
        None,
        "not while fenced"
    );
    assert_eq!(s.isr_change(LAG + 300, |_| true), Some(vec![1, 2, 3]));
    s.on_proposed(vec![1, 2, 3]);
    assert_eq!(
        s.maximal_isr(),
        vec![1, 2, 3],
        "an expansion counts at once"
    );
    s.on_committed(vec![1, 2, 3]);
    assert_eq!(s.isr(), &[1, 2, 3]);
}

#[test]
fn refused_change_can_be_proposed_again() {
    let mut s = leader(&[1, 2, 3]);
    let change = s
        .isr_change(LAG + 1, |_| true)
        .expect("both followers silent");
    assert_eq!(change, vec![1]);
    s.on_proposed(change.clone());
    s.on_refused();
    assert_eq!(s.isr_change(LAG + 2, |_| true), Some(change));
}

#[test]
fn a_follower_behind_the_epoch_start_does_not_join() {
    let mut s = LeaderState::new(0, 1, vec![1, 2], vec![1], 8, 0, LAG);
    s.on_fetch(1, 2, 5, 10);
    assert_eq!(s.advance(10), Some(10), "ISR is the leader alone");
    assert_eq!(
        s.isr_change(1, |_| true),
        None,
        "at 5, below the HW and the epoch start 8"
    );
    s.on_fetch(2, 2, 10, 10);
    assert_eq!(s.isr_change(2, |_| true), Some(vec![1, 2]));
}

#[test]
fn kip_101_truncating_by_epoch_keeps_a_committed_record() {
    // Leader A and follower B both have offsets 0 and 1 (epoch 1); B's HW
    // is still 1 when it restarts. Plain HW truncation would cut offset 1,
    // and if A then died, B would lead without a committed record. By
    // epoch: the leader says epoch 1 ends at 2, B keeps both.
    let own = |e: i32| (e <= 1).then_some((1, 2));
    assert_eq!(truncation(2, 1, Some((1, 2)), own), 2);
}

#[test]
fn kip_279_divergent_tail_is_cut_at_the_last_common_epoch() {
    // Follower: epoch 1 at [0, 3), epoch 2 at [3, 6) (written as a leader
    // nobody followed). The new leader never had epoch 2: asked about 2 it
    // answers epoch 1, ending at 4 in its log. The follower holds epoch 1
    // only to 3, so it keeps [0, 3) and drops its whole epoch-2 tail.
    let own = |e: i32| match e {
        1 => Some((1, 3)),
        2 => Some((2, 6)),
        _ => None,
    };
    assert_eq!(truncation(6, 2, Some((1, 4)), own), 3);
    // Same epoch on both: keep what the leader's epoch holds, at most ours.
    assert_eq!(truncation(6, 2, Some((2, 5)), own), 5);
    assert_eq!(truncation(6, 2, Some((2, 9)), own), 6);
    // The leader knows no epoch at all: keep only the committed prefix.
    assert_eq!(truncation(6, 2, None, own), 2);
}

proptest! {
    /// Whatever fetches, proposals and commits happen in whatever order, the
    /// high watermark never goes down and never passes the leader's end.
    #[test]
    fn high_watermark_never_decreases(
        steps in prop::collection::vec((0u8..4, 2i32..4, 0i64..50, 0u64..30_000), 1..60)
    ) {
        let mut s = leader(&[1, 2, 3]);
        let (mut leader_end, mut now, mut last_hw) = (0, 0, 0);
        for (kind, follower, offset, dt) in steps {
            now += dt;
            leader_end = leader_end.max(offset);
            match kind {
                0 => s.on_fetch(now, follower, offset.min(leader_end), leader_end),
                1 => if let Some(isr) = s.isr_change(now, |_| true) { s.on_proposed(isr) },
                2 => if let Some(isr) = s.maximal_isr().get(..) { s.on_committed(isr.to_vec()) },
                _ => s.on_refused(),
            }
            s.advance(leader_end);
            prop_assert!(s.high_watermark() >= last_hw);
            prop_assert!(s.high_watermark() <= leader_end);
            prop_assert!(s.isr().contains(&1), "the leader never leaves its ISR");
            last_hw = s.high_watermark();
        }
    }
}
