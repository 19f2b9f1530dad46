//! What the client knows of the cluster: brokers, and each partition's
//! leader and leader epoch, refreshed through Metadata; plus one connection
//! per broker.

use crate::connection::{ClientError, Connection};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::Request;
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
    /// A connection to a bootstrap address no broker advertises (a load
    /// balancer, another name for a broker), for [`Cluster::send_any`].
    spare: Option<Connection>,
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
            spare: None,
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
        // Metadata is a read (auto-creation aside, which is idempotent).
        let response = self
            .send_any(&request, METADATA_VERSION, Idempotence::Read)
            .await?;
        self.record(&response);
        Ok(response)
    }

    /// Sends `request` to any broker that answers, for requests every
    /// broker can serve (Metadata, CreateTopics, DescribeCluster...): the
    /// candidates in [`order_any`]'s order, each known broker and each
    /// bootstrap address, until one connects. A connection that fails
    /// mid-request is retried once on the next candidate if the request is
    /// a [`Idempotence::Read`]; a write's error is returned, since it may
    /// have been applied.
    pub async fn send_any<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        idempotence: Idempotence,
    ) -> Result<R::Response, ClientError> {
        let mut last = None;
        let mut retried = false;
        for target in self.any_order() {
            let conn = match self.open(&target).await {
                Ok(conn) => conn,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let error = match conn.send(request, version).await {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            // Whatever failed, the connection's state is unknown now; an
            // I/O error also means the broker may be gone.
            let lost_connection = matches!(error, ClientError::Io { .. });
            match lost_connection {
                true => self.forget(&target),
                false => self.close(&target),
            }
            if !lost_connection || idempotence == Idempotence::Write || retried {
                return Err(error);
            }
            retried = true;
            last = Some(error);
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
        // The bootstrap connection that asked is a broker's now: kept, so
        // the next request goes to the broker that just answered.
        if let Some(spare) = self.spare.take() {
            let owner = self.brokers.iter().find(|(_, a)| *a == spare.addr());
            match owner.map(|(id, _)| *id) {
                Some(id) if !self.connections.contains_key(&id) => {
                    self.connections.insert(id, spare);
                }
                Some(_) => {}
                None => self.spare = Some(spare),
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

    /// A connection for a request any broker can answer (FindCoordinator,
    /// InitProducerId): the first candidate in [`order_any`]'s order that
    /// connects. The caller handles a failed send (it relearns and retries).
    pub async fn any_connection(&mut self) -> Result<&mut Connection, ClientError> {
        if self.brokers.is_empty() {
            self.refresh(Some(&[]), false).await?;
        }
        let mut last = None;
        for target in self.any_order() {
            match self.open(&target).await {
                Ok(_) => return Ok(self.opened(&target).expect("opened above")),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no brokers".into())))
    }

    /// Every broker and bootstrap address, in the order to try them.
    fn any_order(&self) -> Vec<Target> {
        let brokers = self.brokers.iter().map(|(id, addr)| Candidate {
            target: Target::Broker(*id),
            addr: addr.clone(),
            connected: self.connections.contains_key(id),
            unreachable: self.is_unreachable(addr),
        });
        let bootstrap = self.bootstrap.iter().map(|addr| Candidate {
            target: Target::Address(addr.clone()),
            addr: addr.clone(),
            connected: self.spare.as_ref().is_some_and(|c| c.addr() == addr),
            unreachable: self.is_unreachable(addr),
        });
        order_any(brokers.chain(bootstrap).collect())
    }

    /// The open connection to `target`, if any.
    fn opened(&mut self, target: &Target) -> Option<&mut Connection> {
        match target {
            Target::Broker(id) => self.connections.get_mut(id),
            Target::Address(addr) => self.spare.as_mut().filter(|c| c.addr() == addr),
        }
    }

    /// Opens a connection to `target` unless one is open and its peer has
    /// not closed it; a failed connect marks the address unreachable.
    /// Reconnect backoff is not checked: [`order_any`] put such targets
    /// last, to be tried when nothing else answered.
    async fn open(&mut self, target: &Target) -> Result<&mut Connection, ClientError> {
        if self.opened(target).is_some_and(|c| c.peer_closed()) {
            // Closed while idle (a broker killed or restarted): a new
            // connection, not an error for a request that was never sent.
            self.close(target);
        }
        if self.opened(target).is_none() {
            let addr = match target {
                Target::Broker(id) => self.brokers[id].clone(),
                Target::Address(addr) => addr.clone(),
            };
            let conn = match Connection::connect(&addr).await {
                Ok(conn) => conn,
                Err(e) => {
                    self.mark_unreachable(&addr);
                    return Err(e);
                }
            };
            match target {
                Target::Broker(id) => drop(self.connections.insert(*id, conn)),
                Target::Address(_) => self.spare = Some(conn),
            }
        }
        Ok(self.opened(target).expect("opened above"))
    }

    /// Drops the connection to `target` without marking it unreachable.
    fn close(&mut self, target: &Target) {
        match target {
            Target::Broker(id) => drop(self.connections.remove(id)),
            Target::Address(_) => self.spare = None,
        }
    }

    /// Drops the connection to `target` after a failure and marks its
    /// address unreachable.
    fn forget(&mut self, target: &Target) {
        match target {
            Target::Broker(id) => self.drop_connection(*id),
            Target::Address(addr) => {
                self.spare = None;
                self.mark_unreachable(addr);
            }
        }
    }

    /// Forgets what metadata said (brokers, leaders, connections) but not
    /// which addresses just failed, so the next lookup skips them.
    pub fn relearn(&mut self) {
        let unreachable = std::mem::take(&mut self.unreachable);
        *self = Cluster::new(&self.bootstrap.join(","));
        self.unreachable = unreachable;
    }
}

/// Whether a request may be sent again after its connection failed
/// mid-request (it may have been applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotence {
    /// Reads (Metadata, DescribeCluster...): retried once elsewhere.
    Read,
    /// Changes (CreateTopics, DeleteTopics...): the error is returned.
    Write,
}

/// Where a request any broker can answer may go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A broker Metadata named.
    Broker(i32),
    /// A bootstrap address.
    Address(String),
}

/// A target as [`order_any`] sees it.
#[derive(Debug, Clone)]
struct Candidate {
    target: Target,
    addr: String,
    connected: bool,
    unreachable: bool,
}

/// The order in which to try targets for a request any broker can answer:
/// those already connected, then those not in their reconnect backoff,
/// then the rest (they may be all there is); brokers by id before
/// bootstrap addresses (in the order given); each address once. Always
/// the lowest id made every lookup wait on a dead broker 1's connect
/// timeout, so a group member whose coordinator moved while broker 1 was
/// down could not find it again (found by the fault campaign); and an
/// admin client that tried only that one failed while broker 1 was dead
/// but still listed in Metadata.
fn order_any(mut candidates: Vec<Candidate>) -> Vec<Target> {
    // Stable: bootstrap addresses keep the order the user gave.
    candidates.sort_by_key(|c| {
        let id = match c.target {
            Target::Broker(id) => i64::from(id),
            Target::Address(_) => i64::MAX,
        };
        (!c.connected, c.unreachable, id)
    });
    let mut seen = std::collections::HashSet::new();
    candidates
        .into_iter()
        .filter(|c| seen.insert(c.addr.clone()))
        .map(|c| c.target)
        .collect()
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
    fn any_order_prefers_connected_then_reachable_then_the_rest() {
        use Target::{Address as A, Broker as B};
        let c = |target: Target, connected, unreachable| Candidate {
            addr: match &target {
                B(id) => format!("b{id}:9092"),
                A(addr) => addr.clone(),
            },
            target,
            connected,
            unreachable,
        };
        let a = |s: &str| A(s.to_string());
        let cases: [(&str, Vec<Candidate>, Vec<Target>); 8] = [
            ("none known", vec![], vec![]),
            (
                "all equal: lowest id first",
                vec![
                    c(B(3), false, false),
                    c(B(1), false, false),
                    c(B(2), false, false),
                ],
                vec![B(1), B(2), B(3)],
            ),
            (
                "broker 1 just failed: last, not never",
                vec![
                    c(B(1), false, true),
                    c(B(2), false, false),
                    c(B(3), false, false),
                ],
                vec![B(2), B(3), B(1)],
            ),
            (
                "an open connection first",
                vec![c(B(1), false, false), c(B(3), true, false)],
                vec![B(3), B(1)],
            ),
            (
                "all failed: still try each",
                vec![c(B(2), false, true), c(B(1), false, true)],
                vec![B(1), B(2)],
            ),
            (
                "bootstrap after brokers, in the order given",
                vec![
                    c(a("z:1"), false, false),
                    c(a("a:1"), false, false),
                    c(B(2), false, false),
                ],
                vec![B(2), a("z:1"), a("a:1")],
            ),
            (
                "a bootstrap address that is a known broker: once, as the broker",
                vec![c(a("b1:9092"), false, false), c(B(1), false, false)],
                vec![B(1)],
            ),
            (
                "dead broker 1 listed, bootstrap broker 2 connected (the failover)",
                vec![
                    c(B(1), false, true),
                    c(B(2), true, false),
                    c(a("b2:9092"), false, false),
                    c(B(3), false, false),
                ],
                vec![B(2), B(3), B(1)],
            ),
        ];
        for (name, candidates, expected) in cases {
            assert_eq!(order_any(candidates), expected, "{name}");
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
