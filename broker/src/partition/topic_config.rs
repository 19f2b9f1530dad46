//! Topic-level configs: which ones Baton understands, how they set a
//! partition's `LogConfig`, and `min.insync.replicas`.

use std::collections::BTreeMap;
use std::time::Duration;
use storage::LogConfig;

/// Topic configs Baton understands, and how each sets the log config
/// (`min.insync.replicas` sets none: see [`min_insync_replicas`]).
pub const TOPIC_CONFIGS: [&str; 9] = [
    "cleanup.policy",
    "delete.retention.ms",
    "min.insync.replicas",
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
            "cleanup.policy" => {
                c.cleanup_policy =
                    storage::CleanupPolicy::parse(value).map_err(|e| e.to_string())?
            }
            "delete.retention.ms" => {
                c.delete_retention_ms = u64::try_from(int()?)
                    .map(Duration::from_millis)
                    .map_err(|_| format!("{name}={value}: must be 0 or more"))?
            }
            "retention.ms" => {
                c.retention_ms = u64::try_from(int()?).ok().map(Duration::from_millis)
            }
            "retention.bytes" => c.retention_bytes = u64::try_from(int()?).ok(),
            "segment.bytes" => c.segment_bytes = positive_u32()?,
            "segment.ms" => c.segment_ms = Some(Duration::from_millis(positive_u32()?.into())),
            "max.message.bytes" => c.max_batch_bytes = positive_u32()?,
            "index.interval.bytes" => c.index_interval_bytes = positive_u32()?,
            "min.insync.replicas" if int()? >= 1 => {}
            "min.insync.replicas" => return Err(format!("{name}={value}: must be at least 1")),
            _ => return Err(format!("unknown or unsupported topic config {name}")),
        }
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// `min.insync.replicas` of a topic (its config, else the broker's
/// default), at most its replication factor, so a topic with fewer replicas
/// than the default still takes acks=all writes (on all its replicas).
pub fn min_insync_replicas(
    configs: &BTreeMap<String, String>,
    default: usize,
    replicas: usize,
) -> usize {
    let configured = configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default);
    configured.clamp(1, replicas.max(1))
}
