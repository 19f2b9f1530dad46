//! Applying a planned fault to the running cluster: resolve its target
//! from what the cluster reports now (a partition's leader, the active
//! controller, a group's coordinator), break it, and say how to heal it.

use super::docker::{Cluster, NodeRef};
use super::schedule::{Fault, Kind};
use client::{Admin, Connection};
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fault in place.
#[derive(Debug)]
pub struct Applied {
    /// The services it hit.
    pub targets: Vec<NodeRef>,
    /// The partition whose leader it aimed at, if any.
    pub partition: Option<i32>,
    /// How to undo it.
    pub heal: Heal,
}

/// How to undo a fault.
#[derive(Debug)]
pub enum Heal {
    /// Start the killed node again.
    Start(NodeRef),
    /// Thaw the paused node.
    Unpause(NodeRef),
    /// Remove the campaign's firewall rules.
    Network,
    /// Nothing left to undo (the fault healed itself, e.g. a restart).
    Nothing,
}

/// What a fault needs to know about the workload.
pub struct Target<'a> {
    /// The compose cluster.
    pub cluster: &'a Cluster,
    /// The workload's topic.
    pub topic: &'a str,
    /// Its partition count.
    pub partitions: i32,
    /// A consumer group whose coordinator `kill-coordinator` hits.
    pub group: &'a str,
}

/// A partition's leader and replicas as the cluster reports them now.
pub async fn describe(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
) -> anyhow::Result<(i32, Vec<i32>, Vec<i32>)> {
    let mut admin = Admin::connect(&cluster.bootstrap()).await?;
    let info = admin.describe_topic(topic).await?;
    let p = info
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .ok_or_else(|| anyhow::anyhow!("{topic}-{partition} not described"))?;
    Ok((p.leader, p.replicas.clone(), p.isr.clone()))
}

/// The broker coordinating `group`.
async fn coordinator(cluster: &Cluster, group: &str) -> anyhow::Result<i32> {
    for id in 1..=3 {
        let addr = format!("{}:9092", cluster.broker(id).ip);
        let Ok(mut conn) = Connection::connect(&addr).await else {
            continue;
        };
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        if let Ok(r) = conn.send(&request, 3).await {
            if r.error_code == 0 {
                return Ok(r.node_id.0);
            }
        }
    }
    anyhow::bail!("no coordinator found for group {group}")
}

/// Breaks the cluster as `fault` says.
pub async fn apply(fault: &Fault, t: &Target<'_>) -> anyhow::Result<Applied> {
    let c = t.cluster;
    let partition = (fault.pick % t.partitions as u64) as i32;
    let applied = |targets: Vec<NodeRef>, partition, heal| Applied {
        targets,
        partition,
        heal,
    };
    Ok(match fault.kind {
        Kind::KillLeader => {
            let leader = c.broker(leader_of(t, partition).await?);
            c.kill(&leader)?;
            applied(vec![leader.clone()], Some(partition), Heal::Start(leader))
        }
        Kind::KillBroker => {
            let node = c.broker((fault.pick % 3) as i32 + 1);
            c.kill(&node)?;
            applied(vec![node.clone()], None, Heal::Start(node))
        }
        Kind::KillController => {
            let mut admin = Admin::connect(&c.bootstrap()).await?;
            let node = c.controller(admin.describe_cluster().await?.controller);
            c.kill(&node)?;
            applied(vec![node.clone()], None, Heal::Start(node))
        }
        Kind::KillCoordinator => {
            let node = c.broker(coordinator(c, t.group).await?);
            c.kill(&node)?;
            applied(vec![node.clone()], None, Heal::Start(node))
        }
        Kind::Pause => {
            let leader = c.broker(leader_of(t, partition).await?);
            c.pause(&leader)?;
            applied(vec![leader.clone()], Some(partition), Heal::Unpause(leader))
        }
        Kind::IsolateLeader => {
            let leader = c.broker(leader_of(t, partition).await?);
            for id in 1..=3 {
                c.cut(&leader, &c.controller(id))?;
            }
            applied(vec![leader], Some(partition), Heal::Network)
        }
        Kind::SplitControllers => {
            let id = if fault.pick % 2 == 0 {
                let mut admin = Admin::connect(&c.bootstrap()).await?;
                admin.describe_cluster().await?.controller
            } else {
                ((fault.pick >> 8) % 3) as i32 + 1
            };
            let lonely = c.controller(id);
            for other in (1..=3).filter(|o| *o != id) {
                c.cut(&lonely, &c.controller(other))?;
            }
            applied(vec![lonely], None, Heal::Network)
        }
        Kind::Restart => {
            let node = c.nodes()[(fault.pick % 6) as usize].clone();
            c.restart(&node)?;
            applied(vec![node], None, Heal::Nothing)
        }
        Kind::CorruptFollower => {
            let (leader, replicas, _) = describe(c, t.topic, partition).await?;
            let followers: Vec<i32> = replicas.into_iter().filter(|r| *r != leader).collect();
            anyhow::ensure!(
                !followers.is_empty(),
                "{}-{partition} has no follower",
                t.topic
            );
            let node = c.broker(followers[(fault.pick >> 8) as usize % followers.len()]);
            c.kill(&node)?;
            let dir = c.data_dir(&node)?.join(format!("{}-{partition}", t.topic));
            damage_tail(&dir)?;
            // No partition: the fault is not aimed at a leader, so it has
            // no failover to time.
            applied(vec![node.clone()], None, Heal::Start(node))
        }
    })
}

async fn leader_of(t: &Target<'_>, partition: i32) -> anyhow::Result<i32> {
    let (leader, _, _) = describe(t.cluster, t.topic, partition).await?;
    anyhow::ensure!(leader > 0, "{}-{partition} has no leader", t.topic);
    Ok(leader)
}

/// Undoes a fault.
pub fn heal(cluster: &Cluster, heal: &Heal) -> anyhow::Result<()> {
    match heal {
        Heal::Start(node) => cluster.start(node),
        Heal::Unpause(node) => cluster.unpause(node),
        Heal::Network => cluster.heal_network(),
        Heal::Nothing => Ok(()),
    }
}

/// Overwrites the last 64 bytes of the partition's newest segment with
/// garbage: a torn or rotten tail the broker must find on recovery,
/// truncate, and fetch again from the leader.
fn damage_tail(partition_dir: &Path) -> anyhow::Result<()> {
    let newest = newest_segment(partition_dir)?;
    let mut bytes = std::fs::read(&newest)?;
    let from = bytes.len().saturating_sub(64);
    for b in &mut bytes[from..] {
        *b = 0xA5;
    }
    std::fs::write(&newest, bytes)?;
    Ok(())
}

fn newest_segment(partition_dir: &Path) -> anyhow::Result<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(partition_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    // Segment names are zero-padded base offsets: the greatest is newest.
    logs.sort();
    logs.pop()
        .ok_or_else(|| anyhow::anyhow!("no segment in {}", partition_dir.display()))
}

/// Waits until every broker and controller runs and every partition of
/// `topic` has a leader and its full ISR, up to `limit`; false on timeout
/// (the campaign goes on: a slow recovery is not an anomaly).
pub async fn await_recovered(t: &Target<'_>, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if recovered(t).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

async fn recovered(t: &Target<'_>) -> bool {
    if !t.cluster.nodes().iter().all(|n| t.cluster.running(n)) {
        return false;
    }
    for partition in 0..t.partitions {
        match describe(t.cluster, t.topic, partition).await {
            Ok((leader, replicas, isr)) if leader > 0 && isr.len() == replicas.len() => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_segment_is_damaged_at_its_tail_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000000.log"), [1u8; 100]).unwrap();
        std::fs::write(dir.path().join("00000000000000000042.log"), [2u8; 100]).unwrap();
        std::fs::write(dir.path().join("00000000000000000042.index"), [3u8; 100]).unwrap();
        damage_tail(dir.path()).unwrap();
        let old = std::fs::read(dir.path().join("00000000000000000000.log")).unwrap();
        let new = std::fs::read(dir.path().join("00000000000000000042.log")).unwrap();
        assert_eq!(old, vec![1u8; 100]);
        assert_eq!(&new[..36], &[2u8; 36]);
        assert!(new[36..].iter().all(|b| *b == 0xA5));
    }
}
