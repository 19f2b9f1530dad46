//! The replication rules of one partition, as pure code: no I/O, no clock,
//! no async (Cargo keeps it so: this crate has no dependencies). Time is a
//! parameter in milliseconds of the caller's monotonic clock.
//!
//! - [`high_watermark`]: the largest offset every member of the ISR has.
//! - [`LeaderState`]: what a leader knows of its followers; it turns their
//!   fetches and the passage of time into a high watermark that never goes
//!   down and into ISR changes to propose to the controller.
//! - [`truncation`]: where a follower cuts its log after asking the leader
//!   where its last epoch ends (KIP-101, KIP-279).
//! - [`fetch_session`]: KIP-227 incremental fetch sessions, the leader's
//!   cache and the follower's builder.

use std::collections::BTreeMap;

pub mod fetch_session;

/// A broker's node id.
pub type BrokerId = i32;
/// A log offset.
pub type Offset = i64;

/// The high watermark: the smallest log end offset among the ISR members
/// (the leader included), so every record below it is on every one of them.
/// Members whose log end is unknown count as 0.
///
/// Worked example: leader 1 at log end 10, ISR [1, 2, 3], followers 2 at 8
/// and 3 at 9: the high watermark is 8. Drop 2 from the ISR: it is 9.
///
/// ```
/// use std::collections::BTreeMap;
/// let ends = BTreeMap::from([(2, 8), (3, 9)]);
/// assert_eq!(replication::high_watermark(1, 10, &[1, 2, 3], &ends), 8);
/// assert_eq!(replication::high_watermark(1, 10, &[1, 3], &ends), 9);
/// ```
pub fn high_watermark(
    leader: BrokerId,
    leader_end: Offset,
    isr: &[BrokerId],
    follower_ends: &BTreeMap<BrokerId, Offset>,
) -> Offset {
    isr.iter()
        .map(|b| match *b == leader {
            true => leader_end,
            false => follower_ends.get(b).copied().unwrap_or(0),
        })
        .min()
        .unwrap_or(leader_end)
        .min(leader_end)
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// The follower's log end (the offset of its last fetch).
    end: Offset,
    /// The leader's log end when that fetch arrived.
    leader_end_at_fetch: Offset,
    /// When that fetch arrived.
    fetched_at_ms: u64,
    /// The last time the follower had everything the leader had.
    caught_up_at_ms: u64,
}

/// A leader's view of one partition's replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    leader: BrokerId,
    replicas: Vec<BrokerId>,
    /// The ISR the controller committed.
    isr: Vec<BrokerId>,
    /// An ISR change sent to the controller and not yet committed or refused.
    pending: Option<Vec<BrokerId>>,
    /// The offset this leader's epoch started at: a follower joins the ISR
    /// only once it has reached it.
    epoch_start: Offset,
    followers: BTreeMap<BrokerId, Progress>,
    high_watermark: Offset,
    lag_max_ms: u64,
}

impl LeaderState {
    /// A leader starting its epoch at `now_ms`: every follower gets a full
    /// `lag_max_ms` to show up before it may be dropped from the ISR.
    pub fn new(
        now_ms: u64,
        leader: BrokerId,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        epoch_start: Offset,
        high_watermark: Offset,
        lag_max_ms: u64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|&&b| b != leader)
            .map(|&b| {
                let progress = Progress {
                    end: 0,
                    leader_end_at_fetch: 0,
                    fetched_at_ms: now_ms,
                    caught_up_at_ms: now_ms,
                };
                (b, progress)
            })
            .collect();
        LeaderState {
            leader,
            replicas,
            isr,
            pending: None,
            epoch_start,
            followers,
            high_watermark,
            lag_max_ms,
        }
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }

    /// The current high watermark.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The ISR the high watermark must wait for: the committed one plus any
    /// member a pending change adds. A shrink counts only once committed
    /// (until then the controller may still elect the dropped member, so it
    /// must have every committed record); an expansion counts at once
    /// (waiting for one more member is only slower). Kafka's "maximal ISR".
    pub fn maximal_isr(&self) -> Vec<BrokerId> {
        let mut isr = self.isr.clone();
        for b in self.pending.iter().flatten() {
            if !isr.contains(b) {
                isr.push(*b);
            }
        }
        isr
    }

    /// A fetch from `follower` at `fetch_offset` (its log end) arrived at
    /// `now_ms`, when the leader's log end was `leader_end`. Kafka's rule
    /// for "caught up": it has all the leader had now, or all the leader had
    /// at its previous fetch (then it was caught up as of that fetch).
    pub fn on_fetch(
        &mut self,
        now_ms: u64,
        follower: BrokerId,
        fetch_offset: Offset,
        leader_end: Offset,
    ) {
        let Some(p) = self.followers.get_mut(&follower) else {
            return; // not a replica: nothing to track
        };
        if fetch_offset >= leader_end {
            p.caught_up_at_ms = now_ms;
        } else if fetch_offset >= p.leader_end_at_fetch {
            p.caught_up_at_ms = p.caught_up_at_ms.max(p.fetched_at_ms);
        }
        p.end = fetch_offset;
        p.leader_end_at_fetch = leader_end;
        p.fetched_at_ms = now_ms;
    }

    /// Recomputes the high watermark from `leader_end` (the leader's own
    /// durable log end) and the followers; it never goes down. Returns the
    /// new value if it moved.
    pub fn advance(&mut self, leader_end: Offset) -> Option<Offset> {
        let ends: BTreeMap<BrokerId, Offset> =
            self.followers.iter().map(|(b, p)| (*b, p.end)).collect();
        let hw = high_watermark(self.leader, leader_end, &self.maximal_isr(), &ends);
        if hw > self.high_watermark {
            self.high_watermark = hw;
            return Some(hw);
        }
        None
    }

    /// The ISR to propose at `now_ms`, if it should change and no change is
    /// pending: members (never the leader) not caught up within
    /// `lag_max_ms` leave; replicas that reached both the high watermark
    /// and this epoch's start join, if `may_join` (the controller adds only
    /// unfenced brokers, KIP-841).
    pub fn isr_change(
        &self,
        now_ms: u64,
        may_join: impl Fn(BrokerId) -> bool,
    ) -> Option<Vec<BrokerId>> {
        if self.pending.is_some() {
            return None;
        }
        let lagging = |b: &BrokerId| {
            self.followers
                .get(b)
                .is_some_and(|p| now_ms.saturating_sub(p.caught_up_at_ms) > self.lag_max_ms)
        };
        let caught_up = |b: &BrokerId| {
            may_join(*b)
                && self.followers.get(b).is_some_and(|p| {
                    p.end >= self.high_watermark && p.end >= self.epoch_start && !lagging(b)
                })
        };
        let next: Vec<BrokerId> = self
            .replicas
            .iter()
            .copied()
            .filter(|b| *b == self.leader || (self.isr.contains(b) && !lagging(b)) || caught_up(b))
            .collect();
        let mut current = self.isr.clone();
        current.sort_unstable();
        let mut sorted = next.clone();
        sorted.sort_unstable();
        (sorted != current).then_some(next)
    }

    /// The change was sent to the controller.
    pub fn on_proposed(&mut self, isr: Vec<BrokerId>) {
        self.pending = Some(isr);
    }

    /// The controller refused the pending change (stale): forget it.
    pub fn on_refused(&mut self) {
        self.pending = None;
    }

    /// The metadata shows `isr` committed.
    pub fn on_committed(&mut self, isr: Vec<BrokerId>) {
        self.pending = None;
        self.isr = isr;
    }
}

/// Where a follower cuts its log, from the leader's answer to
/// OffsetForLeaderEpoch for the follower's latest epoch.
///
/// The leader answers with the largest epoch it has that is not above the
/// one asked for (`leader_epoch`) and the offset where that epoch ends in
/// its log (`leader_end`). If the leader knows that epoch, the follower
/// keeps what the leader's epoch holds. If the leader only has an older
/// one, the follower keeps at most what its own log holds of that older
/// epoch (`own_end_of` gives where an epoch ends in the follower's log).
/// Never above the follower's log end. `None` from the leader (no epoch at
/// all) keeps only what is known committed: `high_watermark`.
///
/// KIP-101: the plain "truncate to the high watermark" loses a committed
/// record when the leader and a follower restart in turn; cutting by epoch
/// keeps it. KIP-279: a follower whose epochs the leader never had finds
/// the last common epoch instead of keeping divergent records.
pub fn truncation(
    follower_end: Offset,
    high_watermark: Offset,
    leader_answer: Option<(i32, Offset)>,
    own_end_of: impl Fn(i32) -> Option<(i32, Offset)>,
) -> Offset {
    let cut = match leader_answer {
        None => high_watermark,
        Some((epoch, leader_end)) => match own_end_of(epoch) {
            Some((own_epoch, own_end)) if own_epoch == epoch => leader_end.min(own_end),
            Some((_, own_end)) => leader_end.min(own_end),
            None => high_watermark.min(leader_end),
        },
    };
    cut.min(follower_end)
}

#[cfg(test)]
mod tests;
