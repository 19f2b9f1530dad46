//! The idempotent producer's state in one partition (Kafka's
//! `ProducerStateManager`), pure: per producer id, its epoch and the
//! metadata of its last five batches. The rules decide, for a batch a
//! producer sends, whether it is the next one (append it), a retry of one
//! of the last five (answer with its original offsets, append nothing), or
//! an error with Kafka's code.
//!
//! The state is derived from the batches themselves (each carries
//! `producerId`, `producerEpoch` and `baseSequence`), so a follower builds
//! it from what it copies with [`ProducerState::record`] and a new leader
//! deduplicates a retry of a batch the old leader appended. Durability is
//! the log's: snapshots at segment roll (`snapshot.rs`) plus the batches
//! after them.
//!
//! A worked example, producer 7 in epoch 0, five in flight:
//!
//! ```text
//! batch (epoch, seq)   state before (last seq)  verdict
//! (0, 0..=2)           none                     append at 0..=2
//! (0, 3..=3)           2                        append at 3
//! (0, 0..=2)           3                        duplicate: offsets 0..=2
//! (0, 9..=9)           3                        OUT_OF_ORDER_SEQUENCE_NUMBER
//! (1, 0..=0)           epoch 0                  append (a new epoch starts at 0)
//! (0, 4..=4)           epoch 1                  INVALID_PRODUCER_EPOCH
//! ```

use crate::batch::{is_control, is_transactional, BatchHeader};
use crate::Offset;
use std::collections::{BTreeMap, VecDeque};

mod snapshot;
#[cfg(test)]
mod tests;

pub use snapshot::{decode as decode_snapshot, encode as encode_snapshot, SnapshotError};

/// A producer id, as the controller quorum hands them out.
pub type ProducerId = i64;
/// A producer epoch: a higher one fences the producer id's older sessions.
pub type ProducerEpoch = i16;

/// Batches remembered per producer: Kafka's, and the Java client's
/// `max.in.flight.requests.per.connection` limit for idempotence.
pub const BATCHES_RETAINED: usize = 5;

/// Kafka's `producer.id.expiration.ms` default: one day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 86_400_000;

/// An idempotent producer's batch as its header describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// `producerId`.
    pub producer_id: ProducerId,
    /// `producerEpoch`.
    pub producer_epoch: ProducerEpoch,
    /// `baseSequence`.
    pub first_sequence: i32,
    /// The last record's sequence (wrapping past `i32::MAX` to 0).
    pub last_sequence: i32,
    /// `baseOffset` (as stored; a leader sets it before recording).
    pub first_offset: Offset,
    /// The last record's offset.
    pub last_offset: Offset,
    /// `maxTimestamp`: expiry counts from it, as Kafka's does.
    pub max_timestamp: i64,
}

/// What is remembered of one of a producer's last batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of its first record.
    pub first_sequence: i32,
    /// Sequence of its last record.
    pub last_sequence: i32,
    /// Offset of its first record.
    pub first_offset: Offset,
    /// Offset of its last record.
    pub last_offset: Offset,
    /// Its `maxTimestamp`.
    pub timestamp: i64,
}

/// One producer id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The newest epoch seen.
    pub producer_epoch: ProducerEpoch,
    /// Its last batches in this epoch, oldest first: 1 to
    /// [`BATCHES_RETAINED`].
    pub batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    /// The newest batch.
    pub fn last(&self) -> &BatchMetadata {
        self.batches
            .back()
            .expect("an entry holds at least one batch")
    }
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next batch in sequence (or a new producer or epoch): append it.
    Append,
    /// A retry of one of the last batches: answer with its offsets.
    Duplicate(BatchMetadata),
}

/// Why a producer's batch is refused; each is one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// INVALID_PRODUCER_EPOCH: an older epoch than the producer's newest.
    #[error("producer {producer_id}: epoch {epoch} is older than {current}")]
    InvalidProducerEpoch {
        /// The producer.
        producer_id: ProducerId,
        /// The batch's epoch.
        epoch: ProducerEpoch,
        /// The newest epoch seen.
        current: ProducerEpoch,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: not the next sequence, and not a
    /// retry of a remembered batch (a gap, or a new epoch not at 0).
    #[error("producer {producer_id} epoch {epoch}: sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: ProducerId,
        /// The batch's epoch.
        epoch: ProducerEpoch,
        /// The sequence that would be in order.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// UNKNOWN_PRODUCER_ID: no state for this producer (never seen, or
    /// expired) and a sequence other than 0 (KIP-360: the producer bumps
    /// its epoch and starts again).
    #[error("producer {producer_id} unknown here, and its batch starts at sequence {sequence}")]
    UnknownProducerId {
        /// The producer.
        producer_id: ProducerId,
        /// The batch's first sequence.
        sequence: i32,
    },
}

/// A batch whose producer fields are malformed: INVALID_RECORD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProducerBatch {
    /// `producerId` below -1.
    #[error("invalid producer id {0}")]
    ProducerId(i64),
    /// A producer id with a negative epoch.
    #[error("producer {0} without an epoch")]
    NoEpoch(ProducerId),
    /// A producer id with a negative base sequence.
    #[error("producer {producer_id}: invalid sequence {sequence}")]
    Sequence {
        /// The producer.
        producer_id: ProducerId,
        /// The sequence.
        sequence: i32,
    },
    /// Transactional and control batches need a transaction coordinator.
    #[error("transactional batches are not supported")]
    Transactional,
    /// An idempotent batch shares a Produce partition with other batches
    /// (Kafka allows exactly one batch per partition from v3 on).
    #[error("an idempotent batch must be the only batch for its partition")]
    NotAlone,
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 as Kafka's
/// sequences do.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    debug_assert!(sequence >= 0 && increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

impl ProducerBatch {
    /// The producer batch a header describes, `None` for a batch with no
    /// producer id (not idempotent) or a control batch. Malformed producer
    /// fields are an error.
    pub fn from_header(
        header: &BatchHeader,
    ) -> Result<Option<ProducerBatch>, InvalidProducerBatch> {
        let producer_id = header.producer_id;
        if producer_id == -1 || is_control(header.attributes) {
            return Ok(None);
        }
        if producer_id < -1 {
            return Err(InvalidProducerBatch::ProducerId(producer_id));
        }
        if header.producer_epoch < 0 {
            return Err(InvalidProducerBatch::NoEpoch(producer_id));
        }
        if header.base_sequence < 0 {
            return Err(InvalidProducerBatch::Sequence {
                producer_id,
                sequence: header.base_sequence,
            });
        }
        Ok(Some(ProducerBatch {
            producer_id,
            producer_epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: increment_sequence(header.base_sequence, header.last_offset_delta),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        }))
    }

    /// [`from_header`](Self::from_header) for a batch a client produced:
    /// transactional batches are refused too.
    pub fn from_produced(
        header: &BatchHeader,
    ) -> Result<Option<ProducerBatch>, InvalidProducerBatch> {
        if is_transactional(header.attributes) || is_control(header.attributes) {
            return Err(InvalidProducerBatch::Transactional);
        }
        Self::from_header(header)
    }

    fn metadata(&self) -> BatchMetadata {
        BatchMetadata {
            first_sequence: self.first_sequence,
            last_sequence: self.last_sequence,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            timestamp: self.max_timestamp,
        }
    }
}

/// Every producer's state in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: BTreeMap<ProducerId, ProducerEntry>,
}

impl ProducerState {
    /// No producers.
    pub fn new() -> ProducerState {
        ProducerState::default()
    }

    /// The rules a leader applies to a producer's batch before appending
    /// it (module docs). Changes nothing.
    pub fn check(&self, batch: &ProducerBatch) -> Result<Verdict, SequenceError> {
        let (producer_id, epoch) = (batch.producer_id, batch.producer_epoch);
        let Some(entry) = self.producers.get(&producer_id) else {
            return match batch.first_sequence {
                0 => Ok(Verdict::Append),
                sequence => Err(SequenceError::UnknownProducerId {
                    producer_id,
                    sequence,
                }),
            };
        };
        let current = entry.producer_epoch;
        if epoch < current {
            return Err(SequenceError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current,
            });
        }
        let expected = match epoch > current {
            true => 0,
            false => increment_sequence(entry.last().last_sequence, 1),
        };
        if epoch == current {
            let retry = entry.batches.iter().find(|b| {
                b.first_sequence == batch.first_sequence && b.last_sequence == batch.last_sequence
            });
            if let Some(original) = retry {
                return Ok(Verdict::Duplicate(*original));
            }
        }
        match batch.first_sequence == expected {
            true => Ok(Verdict::Append),
            false => Err(SequenceError::OutOfOrderSequence {
                producer_id,
                epoch,
                expected,
                got: batch.first_sequence,
            }),
        }
    }

    /// Records an appended batch (the leader's, after [`check`](Self::check)
    /// allowed it and offsets were assigned; a follower's or recovery's,
    /// unchecked, as the leader already checked it). A new epoch forgets
    /// the older epoch's batches.
    pub fn record(&mut self, batch: &ProducerBatch) {
        let metadata = batch.metadata();
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_epoch: batch.producer_epoch,
                batches: VecDeque::new(),
            });
        if entry.producer_epoch != batch.producer_epoch {
            entry.producer_epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(metadata);
        if entry.batches.len() > BATCHES_RETAINED {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers whose newest batch is at least `expiration_ms`
    /// old at `now_ms` (Kafka's `producer.id.expiration.ms`); returns how
    /// many.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: u64) -> usize {
        let before = self.producers.len();
        let expiration = i64::try_from(expiration_ms).unwrap_or(i64::MAX);
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last().timestamp) < expiration);
        before - self.producers.len()
    }

    /// One producer's state.
    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer, by id.
    pub fn iter(&self) -> impl Iterator<Item = (ProducerId, &ProducerEntry)> {
        self.producers.iter().map(|(&id, e)| (id, e))
    }

    /// Number of producers.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub(crate) fn insert(&mut self, producer_id: ProducerId, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }
}
