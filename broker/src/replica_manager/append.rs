//! The write half: Kafka's `ReplicaManager.appendRecords`, for every
//! writer alike (the produce handler and the group coordinator; the
//! transaction coordinator to come).
//!
//! Two phases, so a caller that must keep its log order (a connection
//! pipelining produces, a coordinator under its shard's lock) appends now
//! and waits later: [`append_records`] validates and appends each entry at
//! once, in order, and returns a future that waits for the flush policy
//! (pipelined appends share fdatasyncs) and, for acks=all, for the high
//! watermark to pass the records with enough ISR members.

use crate::acting::check_epoch;
use crate::partition::Partition;
use crate::replica_wait::Replicated;
use crate::state::Broker;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use storage::batch::{self, BatchError};
use storage::producer_state::SequenceError;
use storage::{AppendError, AppendInfo};

/// One partition's records to append.
#[derive(Debug, Clone)]
pub struct AppendEntry {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub index: i32,
    /// The record batches (`None`: a request that carried none).
    pub records: Option<Bytes>,
    /// The leader epoch the append must happen in (a coordinator serves
    /// only in the epoch it loaded in), or `None` for the current one.
    pub required_epoch: Option<i32>,
}

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The offset of its first record.
    pub base_offset: i64,
    /// The partition's log start offset once it was committed.
    pub log_start_offset: i64,
}

/// Each entry's topic, partition and outcome, in the order given.
pub type AppendResults = Vec<(String, i32, Result<AppendOutcome, ResponseError>)>;

/// An append waiting for its commit: the replica, what was appended, the
/// epoch it was led in, and how many ISR members acks=all needs.
type Appended = Result<(Arc<Partition>, AppendInfo, i32, usize), ResponseError>;

/// Appends every entry now, in order (acks must be -1, 0 or 1: the
/// caller refuses others); the returned future resolves once each is
/// committed as `acks` asks, or failed.
pub fn append_records(
    broker: &Arc<Broker>,
    acks: i16,
    timeout: Duration,
    entries: Vec<AppendEntry>,
) -> impl Future<Output = AppendResults> + Send + 'static {
    let appended: Vec<(String, i32, Appended)> = entries
        .into_iter()
        .map(|e| {
            let result = append(broker, &e, acks);
            (e.topic, e.index, result)
        })
        .collect();
    let broker = broker.clone();
    async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut results = Vec::with_capacity(appended.len());
        for (topic, index, result) in appended {
            let committed = match result {
                Ok(appended) => commit(&broker, &topic, index, appended, acks, deadline).await,
                Err(e) => Err(e),
            };
            results.push((topic, index, committed));
        }
        results
    }
}

/// Phase two of one entry: the flush policy, then for acks=all the wait
/// for replication.
async fn commit(
    broker: &Broker,
    topic: &str,
    index: i32,
    (partition, info, epoch, min_isr): (Arc<Partition>, AppendInfo, i32, usize),
    acks: i16,
    deadline: tokio::time::Instant,
) -> Result<AppendOutcome, ResponseError> {
    partition
        .commit(info, broker.wall_ms())
        .await
        .map_err(|e| {
            tracing::error!(topic, partition = index, error = %e, "commit failed");
            ResponseError::KafkaStorageError
        })?;
    if acks == -1 {
        let wait = Replicated {
            topic,
            index,
            epoch,
            min_isr,
        };
        wait.until(broker, &partition, info.last_offset, deadline)
            .await?;
    }
    Ok(AppendOutcome {
        base_offset: info.base_offset,
        log_start_offset: partition.offsets().0,
    })
}

/// `min.insync.replicas` of a partition: its topic's setting, else the
/// broker's, at most its replica count.
pub fn min_isr(broker: &Broker, topic: &str, index: i32) -> usize {
    let image = broker.image();
    let configs = image
        .topics
        .get(topic)
        .map(|t| t.configs.clone())
        .unwrap_or_default();
    let replicas = image
        .partition(topic, index)
        .map_or(1, |p| p.replicas.len());
    crate::partition::min_insync_replicas(&configs, broker.config.min_insync_replicas, replicas)
}

/// Validates and appends one entry (not yet committed). acks=all with
/// fewer ISR members than `min.insync.replicas` is refused before anything
/// is written.
fn append(broker: &Broker, entry: &AppendEntry, acks: i16) -> Appended {
    let (topic, index) = (entry.topic.as_str(), entry.index);
    let min_isr = min_isr(broker, topic, index);
    broker.serve(topic, index, -1, |led| {
        if entry.required_epoch.is_some_and(|e| e != led.leader_epoch) {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        if acks == -1 && led.partition.isr_len(led.leader_epoch) < min_isr {
            return Err(ResponseError::NotEnoughReplicas);
        }
        let records = entry
            .records
            .as_ref()
            .ok_or(ResponseError::CorruptMessage)?;
        check_tokens(records, led.leader_epoch)?;
        let info = led
            .partition
            .append(records, led.leader_epoch, broker.wall_ms())
            .map_err(|e| {
                tracing::debug!(topic, partition = index, error = %e, "append refused");
                append_error_code(&e)
            })?;
        Ok((led.partition.clone(), info, led.leader_epoch, min_isr))
    })
}

/// The producer's `partitionLeaderEpoch` in each batch is a fencing token
/// (claim 3). Unparseable batches are left for the log to refuse.
fn check_tokens(records: &[u8], leader_epoch: i32) -> Result<(), ResponseError> {
    let mut position = 0;
    while let Ok(header) = batch::parse_header(&records[position..], usize::MAX >> 1) {
        check_epoch(header.partition_leader_epoch, leader_epoch)?;
        position += header.size;
        if position >= records.len() {
            break;
        }
    }
    Ok(())
}

/// The producer rules' refusals, one Kafka code each.
fn sequence_error_code(e: &SequenceError) -> ResponseError {
    match e {
        SequenceError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        SequenceError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        SequenceError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
    }
}

/// The log's refusals, one Kafka code each.
fn append_error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::InvalidBatch {
            source: BatchError::UnsupportedMagic(_),
            ..
        } => ResponseError::UnsupportedForMessageFormat,
        AppendError::InvalidBatch {
            source: BatchError::InvalidLength { length, max, .. },
            ..
        } if *length > *max as i64 => ResponseError::MessageTooLarge,
        AppendError::InvalidBatch { .. } | AppendError::Empty => ResponseError::CorruptMessage,
        AppendError::TooLarge { .. } => ResponseError::RecordListTooLarge,
        AppendError::InvalidProducerBatch(_) => ResponseError::InvalidRecord,
        AppendError::Sequence(e) => sequence_error_code(e),
        AppendError::EpochRegression(_)
        | AppendError::OffsetMismatch { .. }
        | AppendError::Storage(_) => ResponseError::KafkaStorageError,
    }
}

#[cfg(test)]
mod tests {
    use super::append_error_code;
    use kafka_protocol::ResponseError;
    use storage::batch::BatchError;
    use storage::AppendError;

    fn invalid(source: BatchError) -> AppendError {
        AppendError::InvalidBatch {
            position: 0,
            source,
        }
    }

    #[test]
    fn each_refusal_of_the_log_has_kafkas_code() {
        let length = |length| BatchError::InvalidLength {
            length,
            min: 61,
            max: 1 << 20,
        };
        let cases = [
            (
                "v0/v1 message set",
                invalid(BatchError::UnsupportedMagic(1)),
                ResponseError::UnsupportedForMessageFormat,
            ),
            (
                "a batch above message.max.bytes",
                invalid(length((1 << 20) + 1)),
                ResponseError::MessageTooLarge,
            ),
            (
                "a negative batch length",
                invalid(length(-1)),
                ResponseError::CorruptMessage,
            ),
            (
                "no batches",
                AppendError::Empty,
                ResponseError::CorruptMessage,
            ),
            (
                "more than a segment",
                AppendError::TooLarge { size: 2, max: 1 },
                ResponseError::RecordListTooLarge,
            ),
            (
                "a replicated batch off the log end",
                AppendError::OffsetMismatch {
                    expected: 5,
                    got: 7,
                },
                ResponseError::KafkaStorageError,
            ),
        ];
        for (name, error, code) in cases {
            assert_eq!(append_error_code(&error), code, "{name}");
        }
    }
}
