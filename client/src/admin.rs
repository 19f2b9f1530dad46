//! Topic and cluster administration.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! let mut admin = client::Admin::connect("127.0.0.1:9092").await?;
//! admin.create_topic("orders", 3, 1, &[("retention.ms", "86400000")]).await?;
//! for topic in admin.list_topics().await? {
//!     println!("{} has {} partitions", topic.name, topic.partitions.len());
//! }
//! # Ok(()) }
//! ```

use crate::cluster::{topic_name, Cluster, Idempotence, METADATA_VERSION};
use crate::connection::ClientError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id (-1: none).
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
}

/// A described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Topic id.
    pub id: uuid::Uuid,
    /// Partitions in order.
    pub partitions: Vec<PartitionInfo>,
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// The cluster as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// Active controller id.
    pub controller: i32,
    /// Brokers.
    pub brokers: Vec<BrokerInfo>,
}

/// CreatePartitions version (3: flexible).
const CREATE_PARTITIONS_VERSION: i16 = 3;

/// DescribeCluster endpoint types (KIP-919).
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

/// Admin client.
#[derive(Debug)]
pub struct Admin {
    pub(crate) cluster: Cluster,
}

impl Admin {
    /// Connects through `bootstrap` (comma-separated host:port).
    pub async fn connect(bootstrap: &str) -> Result<Admin, ClientError> {
        let mut cluster = Cluster::new(bootstrap);
        cluster.refresh(Some(&[]), false).await?;
        Ok(Admin { cluster })
    }

    /// Creates a topic with `partitions` partitions and topic configs.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<uuid::Uuid, ClientError> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.to_string()))
                    .with_value(Some(StrBytes::from_string(v.to_string())))
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(configs)])
            .with_timeout_ms(30_000);
        let response = self
            .cluster
            .send_any(&request, 7, Idempotence::Write)
            .await?;
        let t = response
            .topics
            .first()
            .ok_or_else(|| ClientError::Protocol("empty CreateTopics response".into()))?;
        ClientError::check(
            t.error_code,
            || format!("create topic {name}"),
            t.error_message.as_ref(),
        )?;
        Ok(t.topic_id)
    }

    /// Grows a topic to `total` partitions (Kafka's
    /// `kafka-topics --alter --partitions`): the new total, not the number
    /// to add. A total not above today's count is refused with
    /// INVALID_PARTITIONS, as in Kafka.
    pub async fn create_partitions(&mut self, name: &str, total: i32) -> Result<(), ClientError> {
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(total)])
            .with_timeout_ms(30_000);
        let response = self
            .cluster
            .send_any(&request, CREATE_PARTITIONS_VERSION, Idempotence::Write)
            .await?;
        let t = response
            .results
            .first()
            .ok_or_else(|| ClientError::Protocol("empty CreatePartitions response".into()))?;
        ClientError::check(
            t.error_code,
            || format!("add partitions to {name}"),
            t.error_message.as_ref(),
        )
    }

    /// The bootstrap list this client was given, comma-separated: for a
    /// producer or consumer reaching the same cluster.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap().join(",")
    }

    /// Deletes a topic.
    pub async fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let request = DeleteTopicsRequest::default()
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(name)))
            ])
            .with_timeout_ms(30_000);
        let response = self
            .cluster
            .send_any(&request, 6, Idempotence::Write)
            .await?;
        let t = response
            .responses
            .first()
            .ok_or_else(|| ClientError::Protocol("empty DeleteTopics response".into()))?;
        ClientError::check(
            t.error_code,
            || format!("delete topic {name}"),
            t.error_message.as_ref(),
        )
    }

    /// Every topic, described.
    pub async fn list_topics(&mut self) -> Result<Vec<TopicInfo>, ClientError> {
        self.describe(None).await
    }

    /// One topic, described.
    pub async fn describe_topic(&mut self, name: &str) -> Result<TopicInfo, ClientError> {
        let mut topics = self.describe(Some(name)).await?;
        topics
            .pop()
            .ok_or_else(|| ClientError::Protocol("empty Metadata response".into()))
    }

    async fn describe(&mut self, name: Option<&str>) -> Result<Vec<TopicInfo>, ClientError> {
        let request = MetadataRequest::default()
            .with_topics(name.map(|n| {
                vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(n))),
                ]
            }))
            .with_allow_auto_topic_creation(false);
        let response = self
            .cluster
            .send_any(&request, METADATA_VERSION, Idempotence::Read)
            .await?;
        let mut topics = Vec::new();
        for t in response.topics {
            let shown = t.name.as_ref().map_or(String::new(), |n| n.0.to_string());
            ClientError::check(t.error_code, || format!("describe topic {shown}"), None)?;
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            topics.push(TopicInfo {
                name: shown,
                id: t.topic_id,
                partitions,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// The cluster id, controller and brokers.
    pub async fn describe_cluster(&mut self) -> Result<ClusterInfo, ClientError> {
        self.describe_endpoints(ENDPOINT_BROKERS).await
    }

    /// The controller quorum's members (KIP-919: DescribeCluster with
    /// endpoint type 2), as `brokers` of the answer; an id of -1 is a
    /// controller the broker knows only by address.
    pub async fn describe_controllers(&mut self) -> Result<ClusterInfo, ClientError> {
        self.describe_endpoints(ENDPOINT_CONTROLLERS).await
    }

    async fn describe_endpoints(&mut self, endpoint_type: i8) -> Result<ClusterInfo, ClientError> {
        let request = DescribeClusterRequest::default().with_endpoint_type(endpoint_type);
        let response = self
            .cluster
            .send_any(&request, 1, Idempotence::Read)
            .await?;
        ClientError::check(
            response.error_code,
            || "describe cluster".into(),
            response.error_message.as_ref(),
        )?;
        Ok(ClusterInfo {
            cluster_id: response.cluster_id.to_string(),
            controller: response.controller_id.0,
            brokers: response
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                })
                .collect(),
        })
    }
}
