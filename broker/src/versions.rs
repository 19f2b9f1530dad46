//! The API versions this broker implements, exactly what ApiVersions
//! advertises. Each range stops before a version whose semantics are not
//! implemented: Fetch 13+ and Produce 12+ address topics by id,
//! ListOffsets 7+ adds the max-timestamp query, Metadata 13 a top-level
//! error, OffsetCommit 9+ and OffsetFetch 8+ the new group protocol, JoinGroup 8+
//! a reason and KIP-848 migration, DescribeGroups 6+ GROUP_ID_NOT_FOUND for
//! unknown groups, ListGroups 5+ a type filter.

use kafka_protocol::messages::ApiKey;

/// (API, lowest version, highest version), all tested at both ends.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeProducers, 0, 0),
];

/// The advertised range of `api`, if any.
pub fn range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, min, max)| (min, max))
}

/// Whether `version` of `api` is advertised.
pub fn supports(api: ApiKey, version: i16) -> bool {
    range(api).is_some_and(|(min, max)| (min..=max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_version_is_one_the_codec_knows() {
        for &(api, min, max) in SUPPORTED {
            let codec = api.valid_versions();
            assert!(
                min <= max && codec.min <= min && max <= codec.max,
                "{api:?}"
            );
        }
    }
}
