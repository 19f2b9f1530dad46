//! The idempotent producer's client half, pure: per partition, the
//! sequence numbers each batch carries and what to do when the broker
//! refuses one (as the Java client does since KIP-360).
//!
//! A batch gets its sequence the first time it is sent in the current
//! epoch and keeps it through every retry, so the broker recognises a
//! retry of a batch it stored and answers with the original offsets.
//! Batches are (re)sent in order, so sequences are gap-free per epoch.
//! When the broker says it lacks the producer's state or the batch before
//! this one (UNKNOWN_PRODUCER_ID, OUT_OF_ORDER_SEQUENCE_NUMBER) for the
//! oldest unacknowledged batch, nothing after it can have been stored
//! either (the broker appends only in sequence), so the partition bumps
//! its epoch and numbers that batch and every later one again from 0.

use kafka_protocol::ResponseError;

/// The id and epoch InitProducerId gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// `producerId`.
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
}

/// The producer fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSequence {
    /// `producerId`.
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
}

/// One partition's sequence numbers.
#[derive(Debug, Clone)]
pub struct Sequencer {
    identity: ProducerIdentity,
    next_sequence: i32,
}

/// What the producer does after a refused batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Retry as any refusal (refresh metadata, back off).
    Retry,
    /// Bump the epoch, renumber, and retry.
    BumpEpoch,
    /// Stop: another producer session owns this id, or the error is final.
    Fail,
}

/// Kafka's sequence arithmetic: past `i32::MAX` comes 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

impl Sequencer {
    /// Numbers from 0 for `identity`.
    pub fn new(identity: ProducerIdentity) -> Sequencer {
        Sequencer {
            identity,
            next_sequence: 0,
        }
    }

    /// The current identity.
    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    /// The sequence for a batch of `records` about to be sent: the one it
    /// already has in the current epoch, else the next ones.
    pub fn assign(&mut self, current: Option<BatchSequence>, records: i32) -> BatchSequence {
        let id = self.identity;
        if let Some(seq) = current
            .filter(|s| (s.producer_id, s.producer_epoch) == (id.producer_id, id.producer_epoch))
        {
            return seq;
        }
        let base_sequence = self.next_sequence;
        self.next_sequence = increment_sequence(base_sequence, records);
        BatchSequence {
            producer_id: id.producer_id,
            producer_epoch: id.producer_epoch,
            base_sequence,
        }
    }

    /// Bumps the epoch locally (KIP-360) and starts again at 0; `false`
    /// when the epoch is exhausted and a new producer id is needed (then
    /// [`restart`](Self::restart) with it).
    pub fn bump_epoch(&mut self) -> bool {
        if self.identity.producer_epoch >= i16::MAX - 1 {
            return false;
        }
        self.identity.producer_epoch += 1;
        self.next_sequence = 0;
        true
    }

    /// Starts again at 0 with a new identity.
    pub fn restart(&mut self, identity: ProducerIdentity) {
        *self = Sequencer::new(identity);
    }
}

/// The reaction to `error` for the oldest unacknowledged batch.
pub fn react(error: ResponseError, retriable: bool) -> Reaction {
    match error {
        ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId => {
            Reaction::BumpEpoch
        }
        ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced => Reaction::Fail,
        _ if retriable => Reaction::Retry,
        _ => Reaction::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ProducerIdentity = ProducerIdentity {
        producer_id: 9,
        producer_epoch: 0,
    };

    #[test]
    fn a_batch_keeps_its_sequence_through_retries() {
        let mut s = Sequencer::new(ID);
        let first = s.assign(None, 3);
        let second = s.assign(None, 2);
        assert_eq!((first.base_sequence, second.base_sequence), (0, 3));
        assert_eq!(s.assign(Some(first), 3), first, "a retry keeps its number");
        assert_eq!(s.assign(None, 1).base_sequence, 5);
    }

    #[test]
    fn a_bump_renumbers_from_zero_in_send_order() {
        let mut s = Sequencer::new(ID);
        let (a, b) = (s.assign(None, 2), s.assign(None, 2));
        assert!(s.bump_epoch());
        let (a2, b2) = (s.assign(Some(a), 2), s.assign(Some(b), 2));
        assert_eq!((a2.producer_epoch, a2.base_sequence), (1, 0));
        assert_eq!((b2.producer_epoch, b2.base_sequence), (1, 2));
    }

    #[test]
    fn an_exhausted_epoch_needs_a_new_id() {
        let mut s = Sequencer::new(ProducerIdentity {
            producer_id: 9,
            producer_epoch: i16::MAX - 1,
        });
        assert!(!s.bump_epoch());
        s.restart(ProducerIdentity {
            producer_id: 10,
            producer_epoch: 0,
        });
        assert_eq!(s.assign(None, 1).producer_id, 10);
    }

    #[test]
    fn sequences_wrap_past_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 4), 2);
    }

    #[test]
    fn reactions_table() {
        let rows = [
            (
                ResponseError::OutOfOrderSequenceNumber,
                false,
                Reaction::BumpEpoch,
            ),
            (ResponseError::UnknownProducerId, false, Reaction::BumpEpoch),
            (ResponseError::InvalidProducerEpoch, false, Reaction::Fail),
            (ResponseError::ProducerFenced, false, Reaction::Fail),
            (ResponseError::NotLeaderOrFollower, true, Reaction::Retry),
            (ResponseError::MessageTooLarge, false, Reaction::Fail),
        ];
        for (error, retriable, expected) in rows {
            assert_eq!(react(error, retriable), expected, "{error:?}");
        }
    }
}
