//! A partition this broker holds a replica of: its log and its high
//! watermark. Whether it leads, and in which epoch, is in the metadata image
//! (`crate::image`), never here. Until replication (issue 6) the high
//! watermark is what the leader's flush policy has made durable (`always`)
//! or its log end (otherwise); replication will compute it from the ISR.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use storage::{
    AppendError, AppendInfo, FlushPolicy, LeaderEpoch, Log, LogConfig, Offset, SharedLog,
};

use uuid::Uuid;

/// The file naming the topic id a partition directory belongs to (Kafka's
/// `partition.metadata`), so a directory left by a deleted topic is never
/// served as a new topic of the same name.
pub const PARTITION_METADATA: &str = "partition.metadata";

/// One partition replica.
#[derive(Debug)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// Topic id.
    pub topic_id: Uuid,
    /// The log, shared with blocking tasks.
    pub log: Arc<SharedLog>,
    flush: FlushPolicy,
}

/// Topic configs Baton understands, and how each sets the log config.
pub const TOPIC_CONFIGS: [&str; 7] = [
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "index.interval.bytes",
];

/// Applies topic-level overrides to the broker's log defaults; an unknown
/// name or bad value is an error message for INVALID_CONFIG.
pub fn log_config_for(
    defaults: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut c = defaults.clone();
    for (name, value) in configs {
        let int = || {
            value
                .parse::<i64>()
                .map_err(|_| format!("{name}={value}: not an integer"))
        };
        let positive_u32 = || {
            int()
                .and_then(|v| u32::try_from(v).map_err(|_| format!("{name}={value}: out of range")))
        };
        match name.as_str() {
            "cleanup.policy" if value == "delete" => {}
            "cleanup.policy" => {
                return Err(format!("cleanup.policy={value}: only delete is supported"))
            }
            "retention.ms" => {
                c.retention_ms = u64::try_from(int()?).ok().map(Duration::from_millis)
            }
            "retention.bytes" => c.retention_bytes = u64::try_from(int()?).ok(),
            "segment.bytes" => c.segment_bytes = positive_u32()?,
            "segment.ms" => c.segment_ms = Some(Duration::from_millis(positive_u32()?.into())),
            "max.message.bytes" => c.max_batch_bytes = positive_u32()?,
            "index.interval.bytes" => c.index_interval_bytes = positive_u32()?,
            _ => return Err(format!("unknown or unsupported topic config {name}")),
        }
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

impl Partition {
    /// Opens (recovering) the partition's log in `dir`. A directory that
    /// belongs to another topic id (a deleted topic's) is removed first.
    pub fn open(
        dir: std::path::PathBuf,
        topic: &str,
        index: i32,
        topic_id: Uuid,
        config: LogConfig,
    ) -> anyhow::Result<Partition> {
        let flush = config.flush;
        claim_dir(&dir, topic_id)?;
        let mut log = Log::open(Arc::new(storage::fs::OsFs), dir, config)?;
        // Without replication, committed records are the durable ones.
        let hw = log.flushed_offset().max(log.high_watermark());
        log.set_high_watermark(hw);
        Ok(Partition {
            topic: topic.to_string(),
            index,
            topic_id,
            log: Arc::new(SharedLog::new(log)),
            flush,
        })
    }

    /// Starts `leader_epoch` at the log end, as a new leader does before its
    /// first append (so OffsetForLeaderEpoch answers for it at once). An
    /// epoch the log already has changes nothing.
    pub fn become_leader(&self, leader_epoch: LeaderEpoch) -> Result<(), AppendError> {
        let mut log = self.log.lock();
        if log.latest_epoch().is_none_or(|e| e < leader_epoch) {
            log.assign_leader_epoch(leader_epoch)?;
        }
        Ok(())
    }

    /// Appends as leader in `leader_epoch` without waiting for the flush
    /// policy: calls made in order land in order. The write goes to the page
    /// cache (the sync is what blocks), so it runs on the calling task, as
    /// Kafka's request handler threads append. Follow with
    /// [`commit`](Self::commit).
    pub fn append(
        &self,
        batches: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.log.append_unsynced(batches, leader_epoch, now_ms)
    }

    /// Waits until the flush policy is met for `info`, then advances the
    /// high watermark. Pipelined appends share fdatasyncs (group commit); one
    /// that an earlier sync already covered returns without a thread hop.
    pub async fn commit(&self, info: AppendInfo, now_ms: i64) -> Result<(), storage::Failure> {
        if !self.log.is_committed(&info) {
            let log = self.log.clone();
            tokio::task::spawn_blocking(move || log.commit(&info, now_ms))
                .await
                .map_err(|e| storage::Failure::Offline(e.to_string()))??;
        }
        self.advance_high_watermark();
        Ok(())
    }

    /// Moves the high watermark up to what is committed on this single
    /// broker: durable records under `always`, every record otherwise.
    /// Returns whether it moved.
    pub fn advance_high_watermark(&self) -> bool {
        let mut log = self.log.lock();
        let committed = match self.flush {
            FlushPolicy::Always => log.flushed_offset(),
            _ => log.log_end_offset(),
        };
        let moved = committed > log.high_watermark();
        if moved {
            log.set_high_watermark(committed);
        }
        moved
    }

    /// (log start, high watermark, log end).
    pub fn offsets(&self) -> (Offset, Offset, Offset) {
        let log = self.log.lock();
        (
            log.log_start_offset(),
            log.high_watermark(),
            log.log_end_offset(),
        )
    }
}

/// Makes `dir` the directory of `topic_id`: a directory recording another
/// id is a deleted topic's leftovers and is removed; a new or unmarked one
/// gets the id written (atomically) before any log file.
fn claim_dir(dir: &std::path::Path, topic_id: Uuid) -> anyhow::Result<()> {
    let path = dir.join(PARTITION_METADATA);
    let expected = format!("version: 0\ntopic_id: {topic_id}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == expected => return Ok(()),
        Ok(found) => {
            tracing::warn!(dir = %dir.display(), %found, %topic_id,
                "partition directory of a deleted topic: removing it");
            std::fs::remove_dir_all(dir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::create_dir_all(dir)?;
    storage::fs::write_atomically(&storage::fs::OsFs, &path, expected.as_bytes())?;
    Ok(())
}
