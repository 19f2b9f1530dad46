//! One module per group of Kafka APIs. Handlers take decoded requests and
//! return responses; every per-partition failure is a Kafka error code.

pub mod admin;
pub mod fetch;
pub mod group_admin;
pub mod group_members;
pub mod group_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producers;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub use crate::acting::check_epoch;
pub use crate::dispatch::api_versions_body as api_versions;

/// A protocol string.
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A protocol topic name.
pub fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Errors after which a client should look for the partition's leader.
pub fn is_leadership_error(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch
    )
}

/// Where a partition's leadership is, from the image (KIP-951).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader, -1 if none.
    pub leader: i32,
    /// Its epoch.
    pub leader_epoch: i32,
    /// The leader's (host, port), if it is a live broker.
    pub endpoint: Option<(String, i32)>,
}

/// The leader hint for a partition the image knows.
pub fn leader_hint(broker: &crate::state::Broker, topic: &str, index: i32) -> Option<LeaderHint> {
    let image = broker.image();
    let p = image.partition(topic, index)?;
    let leader = p.leader.unwrap_or(-1);
    let endpoint = image
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .and_then(|b| {
            let (host, port) = b.endpoint.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        });
    Some(LeaderHint {
        leader,
        leader_epoch: p.leader_epoch,
        endpoint,
    })
}

/// The code of a result: 0 for success.
pub fn code<T>(result: &Result<T, ResponseError>) -> i16 {
    result.as_ref().err().map_or(0, |e| e.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_check_table() {
        let cases = [
            (-1, 3, Ok(())),
            (0, 3, Ok(())),
            (1, 3, Err(ResponseError::FencedLeaderEpoch)),
            (2, 3, Err(ResponseError::FencedLeaderEpoch)),
            (3, 3, Ok(())),
            (4, 3, Err(ResponseError::UnknownLeaderEpoch)),
        ];
        for (sent, current, expected) in cases {
            assert_eq!(
                check_epoch(sent, current),
                expected,
                "sent {sent}, current {current}"
            );
        }
    }
}
