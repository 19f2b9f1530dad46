//! One controller: openraft over the durable log store and state machine,
//! whose port `crate::service` serves. On first start every controller
//! proposes the same initial membership; once any log exists the proposal
//! is refused, which is how restarts and duplicates are told apart.

use super::log_store::LogStore;
use super::network::Network;
use super::state_machine::{State, StateMachine};
use super::{NodeId, TypeConfig};
use crate::commands::{Command, CommandResult};
use crate::events::{role_change, RoleView};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A controller's settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This controller's id.
    pub id: NodeId,
    /// Every controller of the quorum, this one included: id -> host:port.
    pub quorum: BTreeMap<NodeId, String>,
    /// Where the Raft log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
    /// Raft election timeout range (randomized within it).
    pub election_timeout: (Duration, Duration),
    /// `unclean.leader.election.enable` (off by default).
    pub unclean_leader_election: bool,
}

impl ControllerConfig {
    /// Defaults: 100 ms heartbeats, elections after 300-600 ms.
    pub fn new(
        id: NodeId,
        quorum: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
    ) -> ControllerConfig {
        ControllerConfig {
            id,
            quorum,
            data_dir,
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(300), Duration::from_millis(600)),
            unclean_leader_election: false,
        }
    }
}

/// Why a controller could not start or a proposal did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The configuration is unusable.
    #[error("invalid controller config: {0}")]
    Config(String),
    /// Disk I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// This controller is not the active one; `leader` is, if known.
    #[error("not the active controller (active: {leader:?})")]
    NotLeader {
        /// The active controller, if known.
        leader: Option<NodeId>,
    },
    /// Raft failed (shut down, storage error).
    #[error("raft: {0}")]
    Raft(String),
}

/// A running controller.
pub struct Controller {
    /// The Raft node.
    pub raft: Raft<TypeConfig>,
    state: StateMachine,
    _lock: storage::fs::DirLock,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("leader", &self.leader())
            .finish()
    }
}

impl Controller {
    /// Starts (or restarts from disk) a controller. Its port is served by
    /// [`crate::service::start`], which calls this.
    pub async fn start(config: ControllerConfig) -> Result<Controller, ControllerError> {
        if !config.quorum.contains_key(&config.id) {
            return Err(ControllerError::Config(format!(
                "controller {} is not in its own quorum",
                config.id
            )));
        }
        let raft_config = openraft::Config {
            cluster_name: "baton".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000),
            max_in_snapshot_log_to_keep: 100,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;
        let lock = storage::fs::DirLock::acquire(&config.data_dir)?;
        let log = LogStore::open(&config.data_dir.join("raft"))?;
        let state = StateMachine::open(
            &config.data_dir.join("state"),
            config.unclean_leader_election,
        )?;
        // A controller must not join a quorum other than the one its log
        // records: that is a configuration error, said before anything runs.
        let recorded = log.last_membership().or_else(|| {
            Some(state.state().last_membership.membership().clone())
                .filter(|m| m.nodes().next().is_some())
        });
        if let Some(recorded) = recorded {
            let recorded: BTreeMap<NodeId, String> = recorded
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect();
            if recorded != config.quorum {
                return Err(ControllerError::Config(format!(
                    "configured quorum {:?} differs from the quorum recorded in {}: {:?}",
                    config.quorum,
                    config.data_dir.display(),
                    recorded
                )));
            }
        }
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            Network {
                quorum: super::network::quorum_fingerprint(&config.quorum),
                peers: Default::default(),
            },
            log,
            state.clone(),
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let members: BTreeMap<NodeId, BasicNode> = config
            .quorum
            .iter()
            .map(|(&id, addr)| (id, BasicNode::new(addr.clone())))
            .collect();
        tokio::spawn(watch_role(raft.clone(), config.id, state.clone()));
        // Every controller initializing at once starts rival elections in
        // the first term, and the quorum then changes leader within a
        // second of forming. The lowest id initializes at once; the others
        // only if, after a few election timeouts, they have heard of no
        // leader (so a first start with that controller down still forms a
        // quorum). A controller that has heard from a leader has a log, and
        // its late proposal is refused, which is fine.
        let first = config.quorum.keys().next() == Some(&config.id);
        if first {
            initialize(&raft, members).await?;
        } else {
            let raft = raft.clone();
            let wait = config.election_timeout.1 * 3;
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if raft.metrics().borrow().current_leader.is_none() {
                    if let Err(e) = initialize(&raft, members).await {
                        tracing::warn!(error = %e, "late initialization failed");
                    }
                }
            });
        }
        Ok(Controller {
            raft,
            state,
            _lock: lock,
        })
    }

    /// Commits `command` through the quorum (on the active controller).
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ControllerError> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ControllerError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ControllerError::Raft(e.to_string())),
        }
    }

    /// The applied state (metadata and last applied entry).
    pub fn state(&self) -> State {
        self.state.state()
    }

    /// The active controller as this one knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Proposes the initial membership; refused (and fine) once a log exists.
async fn initialize(
    raft: &Raft<TypeConfig>,
    members: BTreeMap<NodeId, BasicNode>,
) -> Result<(), ControllerError> {
    match raft.initialize(members).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(ControllerError::Raft(e.to_string())),
    }
}

/// Logs each change of active controller as this one sees it, and has the
/// state machine log committed changes only while this one is active.
/// Ends when Raft stops.
async fn watch_role(raft: Raft<TypeConfig>, me: NodeId, state: StateMachine) {
    let mut metrics = raft.metrics();
    let mut before = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            let leader = m.current_leader.filter(|l| *l != me || m.state.is_leader());
            RoleView {
                leader,
                term: m.current_term,
            }
        };
        state.set_log_changes(now.leader == Some(me));
        if let Some(change) = role_change(me, before, now) {
            tracing::info!("{change}");
        }
        before = Some(now);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
