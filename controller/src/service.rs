//! What brokers and tools ask a controller, on the same port as Raft:
//! register, heartbeat, topic changes, producer-id blocks, the quorum's
//! state, and a long-polled metadata feed. Changes are accepted only by the
//! active controller; the others answer with the active one's id and
//! address.

use crate::commands::{Command, CommandResult};
use crate::metadata::{BrokerId, ClusterMetadata};
use crate::raft::node::{Controller, ControllerError};
use crate::raft::NodeId;
use crate::rules::lease::LeaseConfig;
use crate::rules::sessions::SessionTracker;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A request from a broker or tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// Start a session; `incarnation` is random per broker process, so a
    /// second process with a live id is told apart from a retry.
    RegisterBroker {
        /// Node id.
        id: BrokerId,
        /// Advertised `host:port`.
        endpoint: String,
        /// Random per broker process.
        incarnation: u64,
    },
    /// Keep a session alive.
    Heartbeat {
        /// Node id.
        id: BrokerId,
        /// The epoch from registration.
        epoch: u64,
    },
    /// Create a topic, replicas spread over the unfenced brokers.
    CreateTopic {
        /// Name.
        name: String,
        /// Partitions.
        partitions: i32,
        /// Replicas per partition.
        replication_factor: i16,
        /// Topic config overrides (checked by the broker that forwards them).
        configs: BTreeMap<String, String>,
    },
    /// Grow a topic to `count` partitions, spread as at creation.
    CreatePartitions {
        /// Name.
        name: String,
        /// The new total.
        count: i32,
    },
    /// A broker shutting down cleanly ends its session at once, so its
    /// partitions get new leaders without waiting for the timeout (Kafka's
    /// controlled shutdown). It has stopped serving before it asks.
    ShutdownBroker {
        /// Node id.
        id: BrokerId,
        /// The epoch whose session ends.
        epoch: u64,
    },
    /// A leader's ISR change (Kafka's AlterPartition), with its broker epoch.
    AlterPartition {
        /// The leader's broker epoch: a fenced or stale session is refused.
        broker_epoch: u64,
        /// The change.
        command: Command,
    },
    /// A block of producer ids for this broker (Kafka's
    /// AllocateProducerIds, KIP-730); answered `Committed(ProducerIds)`.
    AllocateProducerIds {
        /// The requesting broker.
        broker: BrokerId,
        /// Its current broker epoch: a fenced or stale session is refused.
        broker_epoch: u64,
    },
    /// Delete a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Preferred-leader election for every partition.
    ElectPreferredLeaders,
    /// This controller's view of the quorum and the brokers.
    DescribeQuorum,
    /// The metadata once more than `after_applied` entries are applied, or
    /// after `wait_ms` (long poll).
    GetMetadata {
        /// Last applied index the caller has.
        after_applied: u64,
        /// Longest wait.
        wait_ms: u64,
    },
}

/// A controller's view of itself, for `cluster describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    /// Its id.
    pub id: NodeId,
    /// Leader, Follower, Candidate...
    pub role: String,
    /// Raft term.
    pub term: u64,
    /// Index of its last log entry.
    pub last_log_index: Option<u64>,
    /// The active controller as it knows it.
    pub leader: Option<NodeId>,
}

/// A broker as the active controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Node id.
    pub id: BrokerId,
    /// Broker epoch.
    pub epoch: u64,
    /// Endpoint.
    pub endpoint: String,
    /// Fenced or not.
    pub fenced: bool,
    /// Milliseconds since its last heartbeat (active controller only).
    pub heartbeat_age_ms: Option<u64>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Registered with this broker epoch. The lease settings travel with
    /// it, so a broker can never compute its lease from a session timeout
    /// other than the one the controller fences by.
    Registered {
        /// The new broker epoch.
        epoch: u64,
        /// The controller's `broker.session.timeout.ms`.
        session_timeout_ms: u64,
        /// The controller's clock drift margin, in parts per million.
        max_clock_drift_ppm: u64,
        /// The metadata log index the registration was applied at. Every
        /// leader change made while the broker was fenced is at or below
        /// it, so the broker must not serve as leader from an image older
        /// than this (its old image may still name it leader).
        #[serde(default)]
        metadata_index: u64,
    },
    /// Heartbeat accepted: the session (and the broker's lease) goes on.
    HeartbeatOk,
    /// The change committed.
    Committed(CommandResult),
    /// Not the active controller; ask this one.
    NotController {
        /// Active controller id and address, if known.
        leader: Option<(NodeId, String)>,
    },
    /// Refused, with the reason; nothing changed.
    Refused(String),
    /// The quorum's state as this controller sees it.
    Quorum {
        /// This controller.
        controller: ControllerInfo,
        /// Brokers.
        brokers: Vec<BrokerInfo>,
    },
    /// Applied metadata.
    Metadata {
        /// Whether the answering controller is the active one (followers
        /// apply later: a broker polling one moves to the active one).
        #[serde(default)]
        active: bool,
        /// Last applied log index.
        applied: u64,
        /// The metadata.
        metadata: ClusterMetadata,
    },
}

/// The controller plus the sessions it tracks while active.
#[derive(Debug)]
pub struct Service {
    /// The Raft node.
    pub controller: Controller,
    id: NodeId,
    quorum: BTreeMap<NodeId, String>,
    lease: LeaseConfig,
    quorum_fingerprint: String,
    clock: Instant,
    /// Present while this controller is active.
    sessions: Mutex<Option<(SessionTracker, BTreeMap<BrokerId, u64>)>>,
}

impl Service {
    /// Wraps a started controller.
    pub fn new(
        controller: Controller,
        id: NodeId,
        quorum: BTreeMap<NodeId, String>,
        lease: LeaseConfig,
    ) -> Service {
        Service {
            quorum_fingerprint: crate::raft::network::quorum_fingerprint(&quorum),
            controller,
            id,
            quorum,
            lease,
            clock: Instant::now(),
            sessions: Mutex::new(None),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn is_active(&self) -> bool {
        let m = self.controller.raft.metrics().borrow().clone();
        m.current_leader == Some(self.id) && m.state.is_leader()
    }

    fn not_controller(&self) -> ControllerResponse {
        let leader = self.controller.leader().filter(|l| *l != self.id);
        ControllerResponse::NotController {
            leader: leader.map(|l| (l, self.quorum.get(&l).cloned().unwrap_or_default())),
        }
    }

    async fn propose(&self, command: Command) -> ControllerResponse {
        match self.controller.propose(command).await {
            Ok(result) => ControllerResponse::Committed(result),
            Err(ControllerError::NotLeader { .. }) => self.not_controller(),
            Err(e) => ControllerResponse::Refused(e.to_string()),
        }
    }

    /// Handles one request.
    pub async fn handle(&self, request: ControllerRequest) -> ControllerResponse {
        let leader_only = !matches!(
            request,
            ControllerRequest::DescribeQuorum | ControllerRequest::GetMetadata { .. }
        );
        if leader_only && !self.is_active() {
            return self.not_controller();
        }
        match request {
            ControllerRequest::RegisterBroker {
                id,
                endpoint,
                incarnation,
            } => self.register(id, endpoint, incarnation).await,
            ControllerRequest::Heartbeat { id, epoch } => self.heartbeat(id, epoch).await,
            ControllerRequest::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                let meta = self.controller.state().metadata;
                match assign(&meta, 0, partitions, replication_factor) {
                    Ok(assignment) => {
                        let id = uuid::Uuid::new_v4();
                        self.propose(Command::CreateTopic {
                            name,
                            id,
                            assignment,
                            configs,
                        })
                        .await
                    }
                    Err(why) => ControllerResponse::Refused(why),
                }
            }
            ControllerRequest::CreatePartitions { name, count } => {
                let meta = self.controller.state().metadata;
                match grow(&meta, &name, count) {
                    Ok(assignment) => {
                        self.propose(Command::CreatePartitions { name, assignment })
                            .await
                    }
                    Err(why) => ControllerResponse::Refused(why),
                }
            }
            ControllerRequest::AlterPartition {
                broker_epoch,
                command,
            } => {
                let Command::AlterPartition { leader, .. } = &command else {
                    return ControllerResponse::Refused("not an AlterPartition".into());
                };
                let meta = self.controller.state().metadata;
                let current = meta
                    .brokers
                    .get(leader)
                    .filter(|b| !b.fenced)
                    .map(|b| b.epoch);
                if current != Some(broker_epoch) {
                    let why = format!("broker {leader} epoch {broker_epoch} is fenced or stale");
                    return ControllerResponse::Refused(why);
                }
                self.propose(command).await
            }
            ControllerRequest::AllocateProducerIds {
                broker,
                broker_epoch,
            } => {
                // The epoch is checked in `apply`, on the committed entry,
                // so the check and the counter's advance are one step.
                self.propose(Command::AllocateProducerIds {
                    broker,
                    broker_epoch,
                })
                .await
            }
            ControllerRequest::ShutdownBroker { id, epoch } => {
                self.propose(Command::FenceBroker { id, epoch }).await
            }
            ControllerRequest::DeleteTopic { name } => {
                self.propose(Command::DeleteTopic { name }).await
            }
            ControllerRequest::ElectPreferredLeaders => {
                self.propose(Command::ElectPreferredLeaders).await
            }
            ControllerRequest::DescribeQuorum => self.describe(),
            ControllerRequest::GetMetadata {
                after_applied,
                wait_ms,
            } => self.metadata(after_applied, wait_ms).await,
        }
    }

    /// Acknowledges a heartbeat only after confirming leadership with a
    /// quorum: a deposed controller that has not noticed yet must not extend
    /// a broker's lease, or the broker could serve past the moment the new
    /// controller may fence it (claim 2). The receipt instant is taken
    /// before the confirmation, so it never postdates the real receipt by
    /// more than the handling time.
    async fn heartbeat(&self, id: BrokerId, epoch: u64) -> ControllerResponse {
        let received_at = self.now_ms();
        if self.controller.raft.ensure_linearizable().await.is_err() {
            return self.not_controller();
        }
        let meta = self.controller.state().metadata;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions
            .as_mut()
            .map(|(t, _)| t.heartbeat(&meta, id, epoch, received_at))
        {
            Some(Ok(())) => ControllerResponse::HeartbeatOk,
            Some(Err(e)) => ControllerResponse::Refused(e.to_string()),
            None => self.not_controller(),
        }
    }

    async fn register(
        &self,
        id: BrokerId,
        endpoint: String,
        incarnation: u64,
    ) -> ControllerResponse {
        let meta = self.controller.state().metadata;
        let now = self.now_ms();
        {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((tracker, _)) = sessions.as_ref() {
                let live = meta.brokers.get(&id).is_some_and(|b| !b.fenced)
                    && !tracker.expired(&meta, now).iter().any(|(b, _)| *b == id);
                let other = meta
                    .brokers
                    .get(&id)
                    .is_some_and(|b| b.incarnation != incarnation);
                if live && other {
                    return ControllerResponse::Refused(format!(
                        "broker id {id} is already registered by a live broker"
                    ));
                }
            }
        }
        match self
            .propose(Command::RegisterBroker {
                id,
                endpoint,
                incarnation,
            })
            .await
        {
            ControllerResponse::Committed(CommandResult::Ok {
                broker_epoch: Some(epoch),
                ..
            }) => {
                let state = self.controller.state();
                let metadata_index = state.last_applied.map_or(0, |l| l.index);
                let meta = state.metadata;
                let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((tracker, _)) = sessions.as_mut() {
                    let _ = tracker.heartbeat(&meta, id, epoch, self.now_ms());
                }
                ControllerResponse::Registered {
                    epoch,
                    session_timeout_ms: self.lease.session_timeout_ms,
                    max_clock_drift_ppm: self.lease.max_clock_drift_ppm,
                    metadata_index,
                }
            }
            other => other,
        }
    }

    fn describe(&self) -> ControllerResponse {
        let m = self.controller.raft.metrics().borrow().clone();
        let controller = ControllerInfo {
            id: self.id,
            role: format!("{:?}", m.state),
            term: m.current_term,
            last_log_index: m.last_log_index,
            leader: m.current_leader,
        };
        let meta = self.controller.state().metadata;
        let now = self.now_ms();
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let brokers = meta
            .brokers
            .values()
            .map(|b| BrokerInfo {
                id: b.id,
                epoch: b.epoch,
                endpoint: b.endpoint.clone(),
                fenced: b.fenced,
                heartbeat_age_ms: sessions
                    .as_ref()
                    .and_then(|(t, _)| t.heartbeat_age_ms(b.id, now)),
            })
            .collect();
        ControllerResponse::Quorum {
            controller,
            brokers,
        }
    }

    async fn metadata(&self, after_applied: u64, wait_ms: u64) -> ControllerResponse {
        let applied = |s: &Self| s.controller.state().last_applied.map_or(0, |l| l.index);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(30_000));
        let mut metrics = self.controller.raft.metrics();
        while applied(self) <= after_applied {
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or Raft stopped (the channel closed): answer now.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let state = self.controller.state();
        ControllerResponse::Metadata {
            active: self.is_active(),
            applied: state.last_applied.map_or(0, |l| l.index),
            metadata: state.metadata,
        }
    }

    /// Runs forever: while this controller is active, fences brokers whose
    /// sessions expired. A controller that becomes active starts a fresh
    /// tracker and so waits a full session timeout before fencing anyone.
    pub async fn session_loop(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let active = self.is_active();
            let expired = {
                let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                match (active, sessions.is_some()) {
                    (true, false) => {
                        *sessions = Some((
                            SessionTracker::new(self.lease, self.now_ms()),
                            BTreeMap::new(),
                        ))
                    }
                    (false, true) => *sessions = None,
                    _ => {}
                }
                let meta = self.controller.state().metadata;
                sessions
                    .as_ref()
                    .map(|(t, _)| t.expired(&meta, self.now_ms()))
                    .unwrap_or_default()
            };
            if active && self.controller.state().metadata.cluster_id.is_empty() {
                let cluster_id = new_cluster_id();
                let _ = self
                    .controller
                    .propose(Command::InitCluster { cluster_id })
                    .await;
            }
            for (id, epoch) in expired {
                tracing::warn!("broker {id} session expired (broker epoch {epoch}): fencing it");
                let started = Instant::now();
                let result = self
                    .controller
                    .propose(Command::FenceBroker { id, epoch })
                    .await;
                // The fence itself is logged where it is applied.
                tracing::debug!(broker = id, epoch, ?result, took = ?started.elapsed(), "fence proposed");
            }
        }
    }
}

/// A running controller: its service, its port and its session loop.
#[derive(Debug)]
pub struct Running {
    /// The service (and through it the Raft node).
    pub service: std::sync::Arc<Service>,
    server: tokio::task::JoinHandle<()>,
    sessions: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops serving (the listener is closed on return) and stops Raft.
    pub async fn shutdown(self) {
        self.server.abort();
        self.sessions.abort();
        let _ = self.server.await;
        let _ = self.sessions.await;
        self.service.controller.shutdown().await;
    }
}

/// Starts a controller on `listener`: Raft, the port (Raft RPCs and client
/// requests), and the session loop.
pub async fn start(
    config: crate::raft::node::ControllerConfig,
    lease: LeaseConfig,
    listener: tokio::net::TcpListener,
) -> Result<Running, ControllerError> {
    lease
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;
    let (id, quorum) = (config.id, config.quorum.clone());
    let controller = Controller::start(config).await?;
    let service = std::sync::Arc::new(Service::new(controller, id, quorum, lease));
    let server = tokio::spawn(serve(service.clone(), listener));
    let sessions = tokio::spawn(service.clone().session_loop());
    Ok(Running {
        service,
        server,
        sessions,
    })
}

/// Serves a controller's port: Raft RPCs and client requests, one frame
/// after another per connection. A bad frame closes its connection only.
async fn serve(service: std::sync::Arc<Service>, listener: tokio::net::TcpListener) {
    use crate::raft::network::{handle_raft, read_frame, write_frame, Wire};
    // Connections live in this set: when the server task is aborted, the set
    // is dropped and every connection with it.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let service = service.clone();
        connections.spawn(async move {
            loop {
                let wire: Wire = match read_frame(&mut stream).await {
                    Ok(Some(w)) => w,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing controller connection on a bad frame");
                        return;
                    }
                };
                let written = match wire {
                    Wire::Raft(theirs, _) if theirs != service.quorum_fingerprint => {
                        tracing::error!(%peer, ours = %service.quorum_fingerprint, %theirs,
                            "a controller with a different quorum configuration contacted us: refusing it");
                        return;
                    }
                    Wire::Raft(_, r) => {
                        write_frame(&mut stream, &handle_raft(&service.controller.raft, r).await)
                            .await
                    }
                    Wire::Client(r) => write_frame(&mut stream, &service.handle(r).await).await,
                };
                if written.is_err() {
                    return;
                }
            }
        });
    }
}

/// Sends one request to the controller at `addr` (a tool's or broker's
/// call; brokers keep a connection instead).
pub async fn call(addr: &str, request: ControllerRequest) -> std::io::Result<ControllerResponse> {
    use crate::raft::network::{read_frame, write_frame, Wire};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    write_frame(&mut stream, &Wire::Client(request)).await?;
    read_frame(&mut stream)
        .await?
        .ok_or_else(|| std::io::Error::other("controller closed the connection"))
}

/// Sends `request` to whichever of `addrs` is the active controller,
/// following redirects and waiting through elections for up to `within`;
/// `None` if none answered in time.
pub async fn call_active(
    addrs: &[String],
    request: ControllerRequest,
    within: Duration,
) -> Option<ControllerResponse> {
    let deadline = Instant::now() + within;
    loop {
        for addr in addrs {
            match call(addr, request.clone()).await {
                Ok(ControllerResponse::NotController { .. }) | Err(_) => {}
                Ok(answer) => return Some(answer),
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kafka's cluster ids are 16 random bytes in URL-safe base64 (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

/// Replicas for the new partitions of topic `name` grown to `count`, with
/// the replication factor of its first partition.
pub fn grow(meta: &ClusterMetadata, name: &str, count: i32) -> Result<Vec<Vec<BrokerId>>, String> {
    let topic = meta
        .topics
        .get(name)
        .ok_or_else(|| format!("topic {name} does not exist"))?;
    let existing = topic.partitions.len() as i32;
    if count <= existing {
        return Err(format!(
            "topic {name} has {existing} partitions; {count} would not add any"
        ));
    }
    let rf = topic.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
    assign(meta, existing as usize, count - existing, rf)
}

/// Replicas for `partitions` partitions, spread round-robin over unfenced
/// brokers (partition `first + p` starts at broker `first + p`), as Kafka
/// spreads them.
pub fn assign(
    meta: &ClusterMetadata,
    first: usize,
    partitions: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<BrokerId>>, String> {
    let live: Vec<BrokerId> = meta
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect();
    if partitions < 1 {
        return Err(format!("partitions must be at least 1, got {partitions}"));
    }
    if replication_factor < 1 || replication_factor as usize > live.len() {
        return Err(format!(
            "replication factor {replication_factor} needs that many live brokers; {} are live",
            live.len()
        ));
    }
    Ok((first..first + partitions as usize)
        .map(|p| {
            (0..replication_factor as usize)
                .map(|r| live[(p + r) % live.len()])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::apply;

    #[test]
    fn replicas_are_spread_round_robin() {
        let mut meta = ClusterMetadata::default();
        for id in [1, 2, 3] {
            apply(
                &mut meta,
                &Command::RegisterBroker {
                    id,
                    endpoint: String::new(),
                    incarnation: 0,
                },
                false,
            );
        }
        assert_eq!(
            assign(&meta, 0, 4, 3).unwrap(),
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2], vec![1, 2, 3]]
        );
        assert_eq!(assign(&meta, 0, 2, 1).unwrap(), vec![vec![1], vec![2]]);
        assert!(assign(&meta, 0, 1, 4).is_err());
        assert!(assign(&meta, 0, 0, 1).is_err());
        apply(&mut meta, &Command::FenceBroker { id: 2, epoch: 2 }, false);
        assert_eq!(
            assign(&meta, 0, 2, 2).unwrap(),
            vec![vec![1, 3], vec![3, 1]],
            "fenced brokers get no replicas"
        );
    }
}
