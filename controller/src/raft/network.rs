//! Raft RPC between controllers over TCP: length-prefixed JSON frames, one
//! request then its response. Frames are bounded; a malformed one closes the
//! connection and changes nothing.

use super::peers::{MajorityReport, PeerReachability, Report};
use super::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest RPC frame accepted (snapshots travel in chunks).
pub const FRAME_MAX_BYTES: usize = 64 << 20;

/// A Raft RPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RaftRequest {
    /// AppendEntries.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Vote.
    Vote(VoteRequest<NodeId>),
    /// InstallSnapshot (one chunk).
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// Its answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RaftResponse {
    /// To AppendEntries.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To Vote.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To InstallSnapshot.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// Writes one frame in a single write: a length prefix sent apart from its
/// body meets Nagle's algorithm and the peer's delayed ACK, and a Raft round
/// trip on a kept connection then takes 40 ms instead of one.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, value).map_err(std::io::Error::other)?;
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Reads one frame; `None` at a clean close.
pub async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_MAX_BYTES {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes exceeds {FRAME_MAX_BYTES}"
        )));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(std::io::Error::other)
}

/// Everything that travels on a controller's port.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Wire {
    /// Between controllers, with the sender's quorum (see
    /// [`quorum_fingerprint`]): controllers configured with different
    /// quorums refuse each other.
    Raft(String, RaftRequest),
    /// From brokers and tools.
    Client(crate::service::ControllerRequest),
}

/// Handles one Raft RPC.
pub async fn handle_raft(raft: &Raft<TypeConfig>, request: RaftRequest) -> RaftResponse {
    match request {
        RaftRequest::AppendEntries(r) => RaftResponse::AppendEntries(raft.append_entries(r).await),
        RaftRequest::Vote(r) => RaftResponse::Vote(raft.vote(r).await),
        RaftRequest::InstallSnapshot(r) => {
            RaftResponse::InstallSnapshot(raft.install_snapshot(r).await)
        }
    }
}

/// The quorum as one canonical string: `1=host:port,2=host:port,...`.
pub fn quorum_fingerprint(quorum: &std::collections::BTreeMap<NodeId, String>) -> String {
    quorum
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Opens clients to other controllers.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// This controller's quorum fingerprint, sent with every RPC.
    pub quorum: String,
    /// Every client's RPC outcomes, for reachability reports on change.
    pub peers: Arc<Mutex<PeerReachability>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Client {
        Client {
            target,
            addr: node.addr.clone(),
            quorum: self.quorum.clone(),
            stream: None,
            peers: self.peers.clone(),
        }
    }
}

/// One controller's client to another, reconnecting after errors.
#[derive(Debug)]
pub struct Client {
    target: NodeId,
    addr: String,
    quorum: String,
    stream: Option<TcpStream>,
    peers: Arc<Mutex<PeerReachability>>,
}

impl Client {
    async fn call(
        &mut self,
        request: &RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftResponse, std::io::Error> {
        let timeout = option.hard_ttl();
        let exchange = async {
            if self.stream.is_none() {
                let stream = TcpStream::connect(&self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream = Some(stream);
            }
            let stream = self.stream.as_mut().expect("connected above");
            write_frame(stream, &Wire::Raft(self.quorum.clone(), request.clone())).await?;
            read_frame(stream)
                .await?
                .ok_or_else(|| std::io::Error::other("connection closed"))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "raft rpc timed out",
            )),
        };
        if result.is_err() {
            self.stream = None;
        }
        self.observe(result.as_ref().map(|_| ()));
        result
    }

    /// Logs this peer's reachability when it changes (see [`super::peers`]).
    fn observe(&self, outcome: Result<(), &std::io::Error>) {
        let reason = outcome.map_err(|e| e.to_string());
        let report = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(
                self.target,
                reason.as_ref().map(|_| ()).map_err(|r| r.as_str()),
                Instant::now(),
            );
        match report {
            Some(Report::Unreachable {
                peer,
                reason,
                failing_for,
                unreported,
            }) => tracing::warn!(
                "controller {peer} ({}) unreachable for {:.1}s: {reason}{}",
                self.addr,
                failing_for.as_secs_f64(),
                match unreported {
                    0 => String::new(),
                    n => format!(" ({n} shorter outages since the last report)"),
                }
            ),
            Some(Report::Reachable { peer, after }) => {
                tracing::info!(
                    "controller {peer} ({}) reachable again after {:.1}s",
                    self.addr,
                    after.as_secs_f64()
                )
            }
            None => return,
        }
        self.say_majority();
    }

    /// After a reachability change: whether this controller still reaches
    /// a majority of its quorum.
    fn say_majority(&self) {
        let voters = self.quorum.split(',').count();
        let change = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .majority(voters);
        match change {
            Some(MajorityReport::Lost { unreachable }) => tracing::error!(
                "controller quorum has no majority here: controllers {unreachable:?} unreachable of {voters}; nothing commits and brokers lose their leases until enough return"
            ),
            Some(MajorityReport::Regained) => {
                tracing::info!("controller quorum majority reachable again")
            }
            None => {}
        }
    }
}

fn unreachable<E: std::error::Error>(e: std::io::Error) -> RPCError<NodeId, BasicNode, E> {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        RPCError::Unreachable(Unreachable::new(&e))
    } else {
        RPCError::Network(NetworkError::new(&e))
    }
}

fn wrong_answer<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(
        "mismatched raft response",
    )))
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .call(&RaftRequest::AppendEntries(rpc), &option)
            .await
            .map_err(unreachable)?
        {
            RaftResponse::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(wrong_answer()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(&RaftRequest::InstallSnapshot(rpc), &option)
            .await
            .map_err(unreachable)?
        {
            RaftResponse::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(wrong_answer()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .call(&RaftRequest::Vote(rpc), &option)
            .await
            .map_err(unreachable)?
        {
            RaftResponse::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(wrong_answer()),
        }
    }
}
