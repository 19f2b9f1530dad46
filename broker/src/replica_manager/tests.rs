//! The replica manager on a whole `Broker` (no network, no controller): its
//! partitions on `FaultyFs`, time from a `ManualClock`, leadership from an
//! image the test applies.

use super::{append_records, fetch, AppendEntry, FetchParams, FetchTopic};
use crate::clock::ManualClock;
use crate::config::Settings;
use crate::image::MetadataImage;
use crate::state::Broker;
use controller::broker_session::BrokerSession;
use controller::metadata::{BrokerRegistration, ClusterMetadata, PartitionState, Topic};
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use storage::fs::faulty::FaultyFs;

pub(crate) const TOPIC: &str = "t";
/// The epoch broker 1 leads the partition in.
pub(crate) const EPOCH: i32 = 5;

/// Broker 1 leading `t-0` in [`EPOCH`] with `replicas` and `isr`, the
/// lease off (no controller here), `min.insync.replicas` 2.
pub(crate) fn broker_leading(
    replicas: Vec<i32>,
    isr: Vec<i32>,
) -> (Arc<Broker>, tempfile::TempDir) {
    let clock = Arc::new(ManualClock::at(1_000, 1_700_000_000_000));
    broker_leading_on(clock, replicas, isr)
}

/// As [`broker_leading`], on `clock`.
pub(crate) fn broker_leading_on(
    clock: Arc<ManualClock>,
    replicas: Vec<i32>,
    isr: Vec<i32>,
) -> (Arc<Broker>, tempfile::TempDir) {
    let (broker, dir) = open_broker(1, clock);
    broker
        .apply_image(image(replicas, isr, &[]))
        .expect("apply image");
    (broker, dir)
}

/// Broker `node_id` on `clock` and `FaultyFs`, with no image yet.
pub(crate) fn open_broker(
    node_id: i32,
    clock: Arc<dyn crate::clock::Clock>,
) -> (Arc<Broker>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Settings {
        data_dir: Some(dir.path().to_path_buf()),
        node_id: Some(node_id),
        leader_lease_enable: Some(false),
        min_insync_replicas: Some(2),
        ..Settings::default()
    }
    .resolve()
    .expect("config");
    let session = BrokerSession::new(node_id, "127.0.0.1:0".into(), vec![], config.lease);
    let broker =
        Broker::open_with(config, session, clock, Arc::new(FaultyFs::new(7))).expect("broker");
    (broker, dir)
}

/// An image where broker 1 leads `t-0` in [`EPOCH`] with `replicas` and
/// `isr`, and `brokers` (id, endpoint) are registered.
pub(crate) fn image(replicas: Vec<i32>, isr: Vec<i32>, brokers: &[(i32, String)]) -> MetadataImage {
    let mut metadata = ClusterMetadata::default();
    let partition = PartitionState {
        isr,
        leader_epoch: EPOCH,
        ..PartitionState::new(replicas)
    };
    metadata.topics.insert(
        TOPIC.to_string(),
        Topic {
            id: uuid::Uuid::new_v4(),
            partitions: vec![partition],
            configs: Default::default(),
        },
    );
    for (id, endpoint) in brokers {
        let registration = BrokerRegistration {
            id: *id,
            epoch: 1,
            endpoint: endpoint.clone(),
            fenced: false,
            incarnation: 1,
        };
        metadata.brokers.insert(*id, registration);
    }
    MetadataImage::new(1, metadata)
}

pub(crate) fn entry(required_epoch: Option<i32>) -> AppendEntry {
    AppendEntry {
        topic: TOPIC.to_string(),
        index: 0,
        records: Some(storage::batch::build_batch(&[b"v"], 0).into()),
        required_epoch,
    }
}

fn log_end(broker: &Broker) -> i64 {
    broker.partition(TOPIC, 0).expect("replica").offsets().2
}

#[tokio::test]
async fn an_entry_is_appended_only_in_the_epoch_it_requires() {
    let (broker, _dir) = broker_leading(vec![1], vec![1]);
    let cases = [
        (
            "an older epoch (a coordinator that lost it)",
            Some(EPOCH - 1),
            Err(ResponseError::NotLeaderOrFollower),
            0,
        ),
        (
            "a newer one",
            Some(EPOCH + 1),
            Err(ResponseError::NotLeaderOrFollower),
            0,
        ),
        ("the current one", Some(EPOCH), Ok(0), 1),
        ("none required", None, Ok(1), 2),
    ];
    for (name, required, expected, end) in cases {
        let results =
            append_records(&broker, 1, Duration::from_secs(1), vec![entry(required)]).await;
        let outcome = results[0].2.map(|o| o.base_offset);
        assert_eq!(outcome, expected, "{name}");
        assert_eq!(log_end(&broker), end, "{name}: the log end");
    }
}

#[tokio::test]
async fn acks_all_below_min_insync_replicas_writes_nothing() {
    let (broker, _dir) = broker_leading(vec![1, 2, 3], vec![1]);
    let results = append_records(&broker, -1, Duration::from_secs(1), vec![entry(None)]).await;
    assert_eq!(results[0].2, Err(ResponseError::NotEnoughReplicas));
    assert_eq!(log_end(&broker), 0, "refused before anything is written");
    let results = append_records(&broker, 1, Duration::from_secs(1), vec![entry(None)]).await;
    assert!(results[0].2.is_ok(), "acks=1 does not ask for the ISR");
}

fn fetch_params(replica_id: i32) -> FetchParams {
    FetchParams {
        replica_id,
        max_wait: Duration::ZERO,
        min_bytes: 1,
        max_bytes: 1 << 20,
        version: 12,
        topics: vec![FetchTopic {
            topic: TOPIC.to_string(),
            partitions: vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_current_leader_epoch(EPOCH)
                .with_partition_max_bytes(1 << 20)],
        }],
    }
}

#[tokio::test]
async fn a_consumer_reads_to_the_high_watermark_and_a_follower_to_the_log_end() {
    let (broker, _dir) = broker_leading(vec![1, 2], vec![1, 2]);
    let results = append_records(&broker, 1, Duration::from_secs(1), vec![entry(None)]).await;
    assert!(results[0].2.is_ok());
    // Follower 2 has fetched nothing yet: the high watermark stays at 0.
    let consumer = fetch(&broker, fetch_params(-1)).await;
    let answer = &consumer[0].1[0];
    assert_eq!((answer.error_code, answer.high_watermark), (0, 0));
    assert_eq!(
        answer.records.as_ref().map(|r| r.len()),
        Some(0),
        "nothing past the HW"
    );
    let follower = fetch(&broker, fetch_params(2)).await;
    let answer = &follower[0].1[0];
    assert_eq!(answer.error_code, 0);
    assert!(
        answer.records.as_ref().is_some_and(|r| !r.is_empty()),
        "the follower reads the unreplicated batch"
    );
    let stale = FetchParams {
        topics: vec![FetchTopic {
            partitions: vec![fetch_params(-1).topics[0].partitions[0]
                .clone()
                .with_current_leader_epoch(EPOCH - 1)],
            ..fetch_params(-1).topics[0].clone()
        }],
        ..fetch_params(-1)
    };
    let refused = fetch(&broker, stale).await;
    assert_eq!(
        refused[0].1[0].error_code,
        ResponseError::FencedLeaderEpoch.code(),
        "a fetch in an older epoch is fenced (claim 3)"
    );
}
