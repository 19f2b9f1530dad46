//! The idempotent producers a topic's partition leaders know
//! (DescribeProducers, KIP-664): for each producer id its epoch, last
//! sequence and the timestamp of its last batch.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! let mut admin = client::Admin::connect("127.0.0.1:9092").await?;
//! for p in admin.describe_producers("orders").await? {
//!     println!("{}-{}: {:?}", p.topic, p.partition, p.producers);
//! }
//! # Ok(()) }
//! ```

use crate::admin::Admin;
use crate::cluster::topic_name;
use crate::connection::ClientError;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::DescribeProducersRequest;
use kafka_protocol::ResponseError;

const DESCRIBE_PRODUCERS_VERSION: i16 = 0;

/// One producer as a partition leader knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Producer id.
    pub producer_id: i64,
    /// Its newest epoch.
    pub producer_epoch: i32,
    /// Sequence of its last record.
    pub last_sequence: i32,
    /// `maxTimestamp` of its last batch.
    pub last_timestamp: i64,
}

/// A partition's producers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProducers {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Its leader, asked.
    pub leader: i32,
    /// The producers, by id.
    pub producers: Vec<ProducerInfo>,
}

impl Admin {
    /// Every partition's producers, each asked of its leader.
    pub async fn describe_producers(
        &mut self,
        topic: &str,
    ) -> Result<Vec<PartitionProducers>, ClientError> {
        let described = self.describe_topic(topic).await?;
        self.cluster.refresh(Some(&[topic]), false).await?;
        let mut out = Vec::new();
        for p in &described.partitions {
            if p.leader < 0 {
                return Err(ClientError::Kafka {
                    context: format!("{topic}-{}", p.partition),
                    error: ResponseError::LeaderNotAvailable,
                });
            }
            let request =
                DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(vec![p.partition])]);
            let conn = self.cluster.connection(p.leader).await?;
            let response = conn.send(&request, DESCRIBE_PRODUCERS_VERSION).await?;
            let answer = response
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| ClientError::Protocol("empty DescribeProducers answer".into()))?;
            ClientError::check(
                answer.error_code,
                || format!("describe producers of {topic}-{}", p.partition),
                answer.error_message.as_ref(),
            )?;
            let producers = answer
                .active_producers
                .iter()
                .map(|a| ProducerInfo {
                    producer_id: a.producer_id.0,
                    producer_epoch: a.producer_epoch,
                    last_sequence: a.last_sequence,
                    last_timestamp: a.last_timestamp,
                })
                .collect();
            out.push(PartitionProducers {
                topic: topic.to_string(),
                partition: p.partition,
                leader: p.leader,
                producers,
            });
        }
        Ok(out)
    }
}
