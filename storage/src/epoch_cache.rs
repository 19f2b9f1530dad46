//! The leader-epoch cache: which leader epoch started at which offset.
//!
//! Stored as `leader-epoch-checkpoint` (Kafka's file, Kafka's format) and
//! used to answer OffsetForLeaderEpoch, which a returning replica asks before
//! it truncates its divergent tail (KIP-101, KIP-279). Pure data structure;
//! the log writes the checkpoint.

use crate::checkpoint::{self, MalformedCheckpoint};
use crate::{LeaderEpoch, Offset};

/// One epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: LeaderEpoch,
    /// First offset written in that epoch.
    pub start_offset: Offset,
}

/// An append tried to go back to an older leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("leader epoch {requested} is older than the log's latest epoch {latest}")]
pub struct EpochRegression {
    /// The epoch asked for.
    pub requested: LeaderEpoch,
    /// The log's latest epoch.
    pub latest: LeaderEpoch,
}

/// Epoch entries with strictly increasing epochs and start offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// All entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether the
    /// cache changed. The same epoch again is a no-op; an older one is an
    /// error. Entries of epochs that wrote nothing (start at or after
    /// `start_offset`) are replaced, as Kafka does.
    pub fn assign(
        &mut self,
        epoch: LeaderEpoch,
        start_offset: Offset,
    ) -> Result<bool, EpochRegression> {
        if let Some(latest) = self.latest_epoch() {
            if epoch == latest {
                return Ok(false);
            }
            if epoch < latest {
                return Err(EpochRegression {
                    requested: epoch,
                    latest,
                });
            }
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.check_invariants();
        Ok(true)
    }

    /// Drops the entries of epochs starting at or after `end_offset` (the log
    /// was truncated to end there). Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Drops epochs that ended before `start_offset` (the log's start moved
    /// there) and moves the start of the epoch covering it up to it.
    /// Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: Offset) -> bool {
        let below = self
            .entries
            .iter()
            .take_while(|e| e.start_offset < start_offset)
            .count();
        if below == 0 {
            return false;
        }
        let next_starts_there = self
            .entries
            .get(below)
            .is_some_and(|e| e.start_offset == start_offset);
        if next_starts_there {
            self.entries.drain(..below);
        } else {
            self.entries.drain(..below - 1);
            self.entries[0].start_offset = start_offset;
        }
        self.check_invariants();
        true
    }

    /// OffsetForLeaderEpoch, as Kafka answers it: the largest epoch `<=
    /// requested` and the offset where it ended (the start of the next epoch,
    /// or `log_end_offset` for the latest). `None` when the cache is empty or
    /// `requested` is newer than every epoch (Kafka's UNDEFINED answer).
    ///
    /// With entries `[(1, 0), (3, 50)]` and log end 80: epoch 1 gives
    /// `(1, 50)`, epoch 2 gives `(1, 50)`, epoch 3 gives `(3, 80)`, epoch 0
    /// gives `(0, 0)` (older than everything: it ended where the log starts)
    /// and epoch 4 gives `None`.
    pub fn end_offset_for(
        &self,
        requested: LeaderEpoch,
        log_end_offset: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.entries.last()?;
        if requested == latest.epoch {
            return Some((requested, log_end_offset));
        }
        let higher = self.entries.iter().position(|e| e.epoch > requested)?;
        let end = self.entries[higher].start_offset;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].epoch, end)),
            None => Some((requested, end)),
        }
    }

    /// The checkpoint file's contents.
    pub fn to_checkpoint(&self) -> Vec<u8> {
        let rows: Vec<Vec<i64>> = self
            .entries
            .iter()
            .map(|e| vec![i64::from(e.epoch), e.start_offset])
            .collect();
        checkpoint::render(&rows)
    }

    /// Reads a checkpoint file, rejecting one that breaks the ordering.
    pub fn from_checkpoint(bytes: &[u8]) -> Result<Self, MalformedCheckpoint> {
        let mut entries: Vec<EpochEntry> = Vec::new();
        for row in checkpoint::parse(bytes, 2)? {
            let epoch = LeaderEpoch::try_from(row[0])
                .map_err(|_| MalformedCheckpoint("epoch out of range".into()))?;
            let entry = EpochEntry {
                epoch,
                start_offset: row[1],
            };
            let ordered = entries
                .last()
                .is_none_or(|p| p.epoch < entry.epoch && p.start_offset < entry.start_offset);
            if !ordered || entry.epoch < 0 || entry.start_offset < 0 {
                return Err(MalformedCheckpoint("entries out of order".into()));
            }
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    fn check_invariants(&self) {
        debug_assert!(self
            .entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            c.assign(epoch, start).unwrap();
        }
        c
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn end_offset_for_epoch_table() {
        let c = cache(&[(1, 0), (3, 50)]);
        let cases = [
            (0, Some((0, 0))),
            (1, Some((1, 50))),
            (2, Some((1, 50))),
            (3, Some((3, 80))),
            (4, None),
        ];
        for (requested, expected) in cases {
            assert_eq!(
                c.end_offset_for(requested, 80),
                expected,
                "epoch {requested}"
            );
        }
        assert_eq!(LeaderEpochCache::default().end_offset_for(1, 10), None);
    }

    #[test]
    fn assign_rules() {
        let mut c = cache(&[(1, 0)]);
        assert_eq!(c.assign(1, 10), Ok(false), "same epoch: no-op");
        assert_eq!(
            c.assign(0, 10),
            Err(EpochRegression {
                requested: 0,
                latest: 1
            })
        );
        assert_eq!(c.assign(2, 10), Ok(true));
        // Epoch 2 wrote nothing before epoch 3 started at the same offset.
        assert_eq!(c.assign(3, 10), Ok(true));
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10)]);
    }

    #[test]
    fn truncation_from_end_table() {
        let base = [(1, 0), (2, 10), (4, 20)];
        let cases: [(i64, &[(i32, i64)]); 5] = [
            (30, &[(1, 0), (2, 10), (4, 20)]),
            (21, &[(1, 0), (2, 10), (4, 20)]),
            (20, &[(1, 0), (2, 10)]),
            (11, &[(1, 0), (2, 10)]),
            (0, &[]),
        ];
        for (end, expected) in cases {
            let mut c = cache(&base);
            c.truncate_from_end(end);
            assert_eq!(pairs(&c), expected, "truncate to {end}");
        }
    }

    #[test]
    fn truncation_from_start_table() {
        let base = [(1, 0), (2, 10), (4, 20)];
        let cases: [(i64, &[(i32, i64)]); 4] = [
            (0, &[(1, 0), (2, 10), (4, 20)]),
            (5, &[(1, 5), (2, 10), (4, 20)]),
            (10, &[(2, 10), (4, 20)]),
            (25, &[(4, 25)]),
        ];
        for (start, expected) in cases {
            let mut c = cache(&base);
            c.truncate_from_start(start);
            assert_eq!(pairs(&c), expected, "start at {start}");
        }
    }

    #[test]
    fn checkpoint_round_trip_and_rejects_disorder() {
        let c = cache(&[(1, 0), (5, 100)]);
        assert_eq!(
            LeaderEpochCache::from_checkpoint(&c.to_checkpoint()).unwrap(),
            c
        );
        assert!(LeaderEpochCache::from_checkpoint(b"0\n2\n5 100\n1 0\n").is_err());
        assert!(LeaderEpochCache::from_checkpoint(b"0\n2\n1 100\n2 100\n").is_err());
    }
}
