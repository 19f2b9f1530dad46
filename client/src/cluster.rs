//! What the client knows of the cluster: brokers, and each partition's
//! leader and leader epoch, refreshed through Metadata; plus one connection
//! per broker.

use crate::connection::{ClientError, Connection};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Metadata version the client speaks (has leader epochs and topic ids).
pub const METADATA_VERSION: i16 = 12;

/// One partition's leadership as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    /// Broker id of the leader.
    pub broker: i32,
    /// Its leader epoch.
    pub epoch: i32,
}

/// Brokers, leaders and connections.
#[derive(Debug)]
pub struct Cluster {
    bootstrap: Vec<String>,
    brokers: HashMap<i32, String>,
    leaders: HashMap<(String, i32), Leader>,
    partition_counts: HashMap<String, i32>,
    connections: HashMap<i32, Connection>,
    /// Addresses whose connection failed, and until when not to connect to
    /// them again (Kafka's reconnect backoff): a dead broker is skipped
    /// while metadata is refreshed until it names the new leader.
    unreachable: HashMap<String, Instant>,
}

/// How long an address that failed is skipped.
pub const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl Cluster {
    /// A cluster reached through `bootstrap` (comma-separated host:port).
    pub fn new(bootstrap: &str) -> Cluster {
        Cluster {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            partition_counts: HashMap::new(),
            connections: HashMap::new(),
            unreachable: HashMap::new(),
        }
    }

    /// Sends a Metadata request for `topics` (all topics if `None`) to any
    /// reachable broker and records what it says.
    pub async fn refresh(
        &mut self,
        topics: Option<&[&str]>,
        auto_create: bool,
    ) -> Result<MetadataResponse, ClientError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let mut last = None;
        // Open connections first: asking a broker we already talk to costs
        // no connect, and a dead one's connect can take a while.
        let connected: Vec<i32> = self.connections.keys().copied().collect();
        for broker in connected {
            let conn = self.connections.get_mut(&broker).expect("listed above");
            match conn.send(&request, METADATA_VERSION).await {
                Ok(response) => {
                    self.record(&response);
                    return Ok(response);
                }
                Err(e) => {
                    self.drop_connection(broker);
                    last = Some(e);
                }
            }
        }
        let mut candidates: Vec<String> = self.brokers.values().cloned().collect();
        candidates.extend(self.bootstrap.iter().cloned());
        // Addresses that failed lately go last, not never: they may be all
        // there is.
        candidates.sort_by_key(|addr| self.is_unreachable(addr));
        for addr in candidates {
            let attempt = async {
                let mut conn = Connection::connect(&addr).await?;
                conn.send(&request, METADATA_VERSION).await
            };
            match attempt.await {
                Ok(response) => {
                    self.record(&response);
                    return Ok(response);
                }
                Err(e) => {
                    self.mark_unreachable(&addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no bootstrap servers given".into())))
    }

    /// Remembers that `addr` failed just now.
    pub fn mark_unreachable(&mut self, addr: &str) {
        self.unreachable
            .insert(addr.to_string(), Instant::now() + RECONNECT_BACKOFF);
    }

    /// Refuses `addr` at once while it is in its reconnect backoff, with a
    /// retriable I/O error: the caller refreshes metadata instead.
    pub fn check_reachable(&self, addr: &str) -> Result<(), ClientError> {
        if self.is_unreachable(addr) {
            return Err(ClientError::Io {
                addr: addr.to_string(),
                source: std::io::Error::other("in reconnect backoff after a failure"),
            });
        }
        Ok(())
    }

    /// Whether `addr` failed within the reconnect backoff.
    pub fn is_unreachable(&self, addr: &str) -> bool {
        self.unreachable
            .get(addr)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn record(&mut self, response: &MetadataResponse) {
        for b in &response.brokers {
            let addr = format!("{}:{}", b.host, b.port);
            if self.brokers.get(&b.node_id.0) != Some(&addr) {
                self.connections.remove(&b.node_id.0);
                self.brokers.insert(b.node_id.0, addr);
            }
        }
        for t in &response.topics {
            let Some(name) = &t.name else { continue };
            if t.error_code != 0 {
                continue;
            }
            self.partition_counts
                .insert(name.0.to_string(), t.partitions.len() as i32);
            for p in &t.partitions {
                let leader = Leader {
                    broker: p.leader_id.0,
                    epoch: p.leader_epoch,
                };
                self.leaders
                    .insert((name.0.to_string(), p.partition_index), leader);
            }
        }
    }

    /// The bootstrap servers this cluster was reached through.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// Every broker id seen in Metadata, sorted.
    pub fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.brokers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The advertised address of `broker`.
    pub fn broker_addr(&self, broker: i32) -> Option<String> {
        self.brokers.get(&broker).cloned()
    }

    /// The partition's leader as last seen.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<Leader> {
        self.leaders.get(&(topic.to_string(), partition)).copied()
    }

    /// The topic's partition count as last seen.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.partition_counts.get(topic).copied()
    }

    /// Records a KIP-951 hint: `leader` now leads the partition, at `addr`
    /// if given. Returns false (nothing changed) if the hint is older than
    /// what is known or the leader's address is unknown.
    pub fn follow_hint(
        &mut self,
        topic: &str,
        partition: i32,
        leader: Leader,
        addr: Option<String>,
    ) -> bool {
        let key = (topic.to_string(), partition);
        if self
            .leaders
            .get(&key)
            .is_some_and(|l| l.epoch >= leader.epoch)
        {
            return false;
        }
        if let Some(addr) = addr {
            if self.brokers.get(&leader.broker) != Some(&addr) {
                self.connections.remove(&leader.broker);
                self.brokers.insert(leader.broker, addr);
            }
        }
        if !self.brokers.contains_key(&leader.broker) {
            return false;
        }
        self.leaders.insert(key, leader);
        true
    }

    /// Looks up the leader, refreshing metadata once if it is unknown.
    pub async fn leader_or_refresh(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Leader, ClientError> {
        if let Some(l) = self.leader(topic, partition).filter(|l| l.broker >= 0) {
            return Ok(l);
        }
        self.refresh(Some(&[topic]), true).await?;
        self.leader(topic, partition)
            .filter(|l| l.broker >= 0)
            .ok_or_else(|| ClientError::Kafka {
                context: format!("leader of {topic}-{partition}"),
                error: ResponseError::LeaderNotAvailable,
            })
    }

    /// The connection to `broker`, opened if needed.
    pub async fn connection(&mut self, broker: i32) -> Result<&mut Connection, ClientError> {
        if !self.connections.contains_key(&broker) {
            let addr = self
                .brokers
                .get(&broker)
                .cloned()
                .ok_or_else(|| ClientError::Protocol(format!("unknown broker {broker}")))?;
            self.check_reachable(&addr)?;
            let conn = match Connection::connect(&addr).await {
                Ok(conn) => conn,
                Err(e) => {
                    self.mark_unreachable(&addr);
                    return Err(e);
                }
            };
            self.connections.insert(broker, conn);
        }
        Ok(self.connections.get_mut(&broker).expect("inserted above"))
    }

    /// Forgets a connection after an error, so the next use reconnects
    /// (after the reconnect backoff).
    pub fn drop_connection(&mut self, broker: i32) {
        if let Some(conn) = self.connections.remove(&broker) {
            self.mark_unreachable(conn.addr());
        }
    }

    /// Any connection: the first known broker, else a bootstrap server.
    pub async fn any_connection(&mut self) -> Result<&mut Connection, ClientError> {
        if self.brokers.is_empty() {
            self.refresh(Some(&[]), false).await?;
        }
        let candidates = self.brokers.iter().map(|(id, addr)| Candidate {
            id: *id,
            connected: self.connections.contains_key(id),
            unreachable: self.is_unreachable(addr),
        });
        let broker =
            pick_any(candidates).ok_or_else(|| ClientError::Protocol("no brokers".into()))?;
        self.connection(broker).await
    }

    /// Forgets what metadata said (brokers, leaders, connections) but not
    /// which addresses just failed, so the next lookup skips them.
    pub fn relearn(&mut self) {
        let unreachable = std::mem::take(&mut self.unreachable);
        *self = Cluster::new(&self.bootstrap.join(","));
        self.unreachable = unreachable;
    }
}

/// A broker as [`pick_any`] sees it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: i32,
    connected: bool,
    unreachable: bool,
}

/// The broker for a request any broker can answer (FindCoordinator, say):
/// one already connected, else one not in its reconnect backoff, lowest id
/// first. Always the lowest id made every lookup wait on a dead broker 1's
/// connect timeout, so a group member whose coordinator moved while broker
/// 1 was down could not find it again (found by the fault campaign).
fn pick_any(candidates: impl Iterator<Item = Candidate>) -> Option<i32> {
    candidates
        .min_by_key(|c| (!c.connected, c.unreachable, c.id))
        .map(|c| c.id)
}

/// Whether an error means "refresh metadata and try again".
pub fn is_retriable(error: ResponseError) -> bool {
    error.is_retriable()
        || matches!(
            error,
            ResponseError::NotLeaderOrFollower
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::LeaderNotAvailable
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_broker_prefers_a_connected_then_a_reachable_one() {
        let c = |id, connected, unreachable| Candidate {
            id,
            connected,
            unreachable,
        };
        let cases: [(&str, Vec<Candidate>, Option<i32>); 5] = [
            ("none known", vec![], None),
            (
                "all equal: lowest id",
                vec![c(3, false, false), c(1, false, false), c(2, false, false)],
                Some(1),
            ),
            (
                "broker 1 just failed: skip it",
                vec![c(1, false, true), c(2, false, false), c(3, false, false)],
                Some(2),
            ),
            (
                "an open connection first",
                vec![c(1, false, false), c(3, true, false)],
                Some(3),
            ),
            (
                "all failed: still try one",
                vec![c(2, false, true), c(1, false, true)],
                Some(1),
            ),
        ];
        for (name, candidates, expected) in cases {
            assert_eq!(pick_any(candidates.into_iter()), expected, "{name}");
        }
    }

    /// KIP-951 hints: a newer leader with a known or given address is
    /// followed; an older epoch, or a leader nobody knows the address of,
    /// is not (then the caller refreshes metadata).
    #[test]
    fn follow_hint_table() {
        let mut c = Cluster::new("b1:9092");
        c.brokers.insert(1, "b1:9092".into());
        c.leaders.insert(
            ("t".into(), 0),
            Leader {
                broker: 1,
                epoch: 5,
            },
        );
        let hint = |broker, epoch| Leader { broker, epoch };
        assert!(
            !c.follow_hint("t", 0, hint(2, 4), Some("b2:9092".into())),
            "older"
        );
        assert!(!c.follow_hint("t", 0, hint(3, 6), None), "address unknown");
        assert!(c.follow_hint("t", 0, hint(2, 6), Some("b2:9092".into())));
        assert_eq!(c.leader("t", 0), Some(hint(2, 6)));
        assert_eq!(c.brokers[&2], "b2:9092");
        assert!(c.follow_hint("t", 0, hint(1, 7), None), "known address");
    }
}
