//! Per-partition log settings, named after Kafka's topic configs.

use std::time::Duration;

/// When appended bytes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append is synced before it is acknowledged; concurrent appends
    /// share one fdatasync (group commit). Baton's default.
    Always,
    /// At most this long after an append, the log is synced.
    Interval(Duration),
    /// Only on segment roll and clean close: durability comes from
    /// replication (Kafka's default).
    Never,
}

/// `cleanup.policy`: what happens to old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// `delete` (Kafka's default): whole segments go by `retention.ms` and
    /// `retention.bytes`.
    #[default]
    Delete,
    /// `compact`: the cleaner keeps the latest record per key
    /// ([`crate::Log::clean`]); retention deletes nothing.
    Compact,
    /// `compact,delete`: both.
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether retention deletes old segments.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// Whether the cleaner compacts the log.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// Parses Kafka's `cleanup.policy` value: `delete`, `compact`, or both
    /// as a comma-separated list in either order (`compact,delete`).
    pub fn parse(value: &str) -> Result<CleanupPolicy, ConfigError> {
        let (mut compact, mut delete) = (false, false);
        for item in value.split(',').map(str::trim) {
            match item {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => {
                    return Err(ConfigError {
                        name: "cleanup.policy",
                        value: value.to_string(),
                        why: "expected delete, compact or compact,delete",
                    })
                }
            }
        }
        Ok(match (compact, delete) {
            (true, true) => CleanupPolicy::CompactDelete,
            (true, false) => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        })
    }

    /// The value as Kafka spells it (DescribeConfigs).
    pub fn as_kafka_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// Settings of one partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: a segment is rolled before it would exceed this.
    pub segment_bytes: u32,
    /// `segment.ms`: a segment is rolled once its first batch is this old.
    pub segment_ms: Option<Duration>,
    /// `retention.bytes`: oldest segments are deleted while the log is larger.
    pub retention_bytes: Option<u64>,
    /// `retention.ms`: segments whose newest timestamp is older are deleted.
    pub retention_ms: Option<Duration>,
    /// `index.interval.bytes`: log bytes between offset index entries.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_batch_bytes: u32,
    /// `flush`: see [`FlushPolicy`].
    pub flush: FlushPolicy,
    /// `cleanup.policy`: see [`CleanupPolicy`].
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone (a record with a null
    /// value) survives compaction, counted from its batch's `maxTimestamp`,
    /// so that a consumer reading from the start sees the deletion.
    pub delete_retention_ms: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for LogConfig {
    /// Kafka's defaults, except that every append is synced.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * DAY),
            retention_bytes: None,
            retention_ms: Some(7 * DAY),
            index_interval_bytes: 4096,
            max_batch_bytes: 1_048_588,
            flush: FlushPolicy::Always,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DAY,
        }
    }
}

/// A setting out of its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log config: {name} = {value}: {why}")]
pub struct ConfigError {
    /// The setting's Kafka name.
    pub name: &'static str,
    /// The value given.
    pub value: String,
    /// What is allowed.
    pub why: &'static str,
}

impl LogConfig {
    /// Smallest `segment.bytes` accepted: room for one minimal batch.
    pub const SEGMENT_BYTES_MIN: u32 = crate::batch::HEADER_LEN as u32;

    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, value: String, why| Err(ConfigError { name, value, why });
        if self.segment_bytes < Self::SEGMENT_BYTES_MIN || self.segment_bytes > i32::MAX as u32 {
            return bad(
                "segment.bytes",
                self.segment_bytes.to_string(),
                "must be between 61 and 2147483647",
            );
        }
        if self.max_batch_bytes < Self::SEGMENT_BYTES_MIN || self.max_batch_bytes > i32::MAX as u32
        {
            return bad(
                "max.message.bytes",
                self.max_batch_bytes.to_string(),
                "must be between 61 and 2147483647",
            );
        }
        if let FlushPolicy::Interval(d) = self.flush {
            if d.is_zero() {
                return bad("flush.ms", "0".into(), "use flush = always instead of 0");
            }
        }
        if self.segment_ms.is_some_and(|d| d.is_zero()) {
            return bad("segment.ms", "0".into(), "must be positive");
        }
        if self.delete_retention_ms.as_millis() > i64::MAX as u128 {
            return bad(
                "delete.retention.ms",
                self.delete_retention_ms.as_millis().to_string(),
                "must be at most 9223372036854775807",
            );
        }
        Ok(())
    }

    /// The largest batch a segment of this config can hold.
    pub(crate) fn batch_size_max(&self) -> usize {
        self.max_batch_bytes.min(self.segment_bytes) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        LogConfig::default().validate().unwrap();
        let cases = [
            (
                LogConfig {
                    segment_bytes: 10,
                    ..LogConfig::default()
                },
                "segment.bytes",
            ),
            (
                LogConfig {
                    segment_bytes: u32::MAX,
                    ..LogConfig::default()
                },
                "segment.bytes",
            ),
            (
                LogConfig {
                    max_batch_bytes: 0,
                    ..LogConfig::default()
                },
                "max.message.bytes",
            ),
            (
                LogConfig {
                    flush: FlushPolicy::Interval(Duration::ZERO),
                    ..LogConfig::default()
                },
                "flush.ms",
            ),
            (
                LogConfig {
                    segment_ms: Some(Duration::ZERO),
                    ..LogConfig::default()
                },
                "segment.ms",
            ),
            (
                LogConfig {
                    delete_retention_ms: Duration::MAX,
                    ..LogConfig::default()
                },
                "delete.retention.ms",
            ),
        ];
        for (config, name) in cases {
            assert_eq!(config.validate().unwrap_err().name, name);
        }
    }

    #[test]
    fn cleanup_policy_parses_kafka_values() {
        let cases = [
            ("delete", Some(CleanupPolicy::Delete)),
            ("compact", Some(CleanupPolicy::Compact)),
            ("compact,delete", Some(CleanupPolicy::CompactDelete)),
            ("delete, compact", Some(CleanupPolicy::CompactDelete)),
            ("", None),
            ("compact,", None),
            ("Compact", None),
            ("retain", None),
        ];
        for (value, expected) in cases {
            let parsed = CleanupPolicy::parse(value);
            assert_eq!(parsed.as_ref().ok().copied(), expected, "{value:?}");
            if let Err(e) = parsed {
                assert_eq!(e.name, "cleanup.policy");
            }
        }
        for p in [
            CleanupPolicy::Delete,
            CleanupPolicy::Compact,
            CleanupPolicy::CompactDelete,
        ] {
            assert_eq!(CleanupPolicy::parse(p.as_kafka_str()), Ok(p));
        }
    }
}
