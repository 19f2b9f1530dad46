//! A follower's replica fetcher for one partition: it first asks the leader
//! where its own latest epoch ends (OffsetForLeaderEpoch) and cuts its
//! divergent tail there (`replication::truncation`), then fetches from its
//! log end with the Kafka Fetch API as `replica_id`, carrying the leader
//! epoch it follows. Each fetched chunk is appended unchanged and committed
//! by the flush policy (under `always`, synced) before the next fetch
//! reports the new log end to the leader, so under `always` the leader
//! counts only durable records toward the high watermark. The task lives while the metadata names this leader
//! in this epoch; `Broker::apply_image` replaces it on any change.

use crate::partition::Partition;
use crate::state::Broker;
use client::Connection;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::BrokerId;
use std::sync::Arc;
use std::time::Duration;

/// The Fetch version followers send (the highest Baton serves).
const FETCH_VERSION: i16 = 12;
/// How long a follower's fetch waits at the leader for new records.
const FETCH_WAIT_MS: i32 = 500;
/// Pause after an error before trying again.
const RETRY: Duration = Duration::from_millis(50);
/// Truncation rounds before giving up (one per epoch of divergence).
const TRUNCATION_ROUNDS_MAX: usize = 64;

/// Follows `leader` in `leader_epoch` until aborted.
pub async fn run(
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    leader: i32,
    leader_epoch: i32,
    addr: String,
) {
    loop {
        if let Err(e) = follow(&broker, &partition, leader_epoch, &addr).await {
            tracing::debug!(topic = %partition.topic, partition = partition.index, leader,
                leader_epoch, error = %e, "replica fetcher: retrying");
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn follow(
    broker: &Arc<Broker>,
    partition: &Arc<Partition>,
    leader_epoch: i32,
    addr: &str,
) -> anyhow::Result<()> {
    let mut conn = Connection::connect(addr).await?;
    truncate(broker, partition, leader_epoch, &mut conn).await?;
    loop {
        let fetch_offset = partition.log.lock().log_end_offset();
        let request = fetch_request(broker, partition, leader_epoch, fetch_offset);
        let response = conn.send(&request, FETCH_VERSION).await?;
        let data = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| anyhow::anyhow!("empty fetch response"))?;
        if data.error_code != 0 {
            anyhow::bail!("leader answered error {}", data.error_code);
        }
        let records = data.records.clone().unwrap_or_default();
        let leader_hw = data.high_watermark;
        let p = partition.clone();
        let now = crate::handlers::now_ms();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if !records.is_empty() {
                let info = p.log.lock().append_replicated(&records, now)?;
                // The flush policy met (`always`: synced) before the next
                // fetch reports the new log end to the leader.
                p.log.commit(&info, now)?;
            }
            p.follow_high_watermark(leader_hw);
            Ok(())
        })
        .await??;
    }
}

fn fetch_request(
    broker: &Broker,
    partition: &Partition,
    leader_epoch: i32,
    fetch_offset: i64,
) -> FetchRequest {
    let log_start = partition.log.lock().log_start_offset();
    FetchRequest::default()
        .with_replica_id(BrokerId(broker.id()))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(crate::handlers::topic_name(&partition.topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition.index)
                .with_fetch_offset(fetch_offset)
                .with_current_leader_epoch(leader_epoch)
                .with_log_start_offset(log_start)
                .with_partition_max_bytes(4 << 20)])])
}

/// Asks the leader where this replica's latest epoch ends and truncates
/// there, round after round, until the leader confirms the latest epoch
/// left (or the log holds no epoch at all).
async fn truncate(
    broker: &Broker,
    partition: &Partition,
    leader_epoch: i32,
    conn: &mut Connection,
) -> anyhow::Result<()> {
    for _ in 0..TRUNCATION_ROUNDS_MAX {
        let (latest, end, hw) = {
            let log = partition.log.lock();
            (
                log.latest_epoch(),
                log.log_end_offset(),
                log.high_watermark(),
            )
        };
        let Some(latest) = latest else {
            return Ok(());
        };
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(broker.id()))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(crate::handlers::topic_name(&partition.topic))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(partition.index)
                    .with_current_leader_epoch(leader_epoch)
                    .with_leader_epoch(latest)])]);
        let response = conn.send(&request, 4).await?;
        let answer = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| anyhow::anyhow!("empty OffsetForLeaderEpoch response"))?;
        if answer.error_code != 0 {
            anyhow::bail!("OffsetForLeaderEpoch error {}", answer.error_code);
        }
        let leader_answer =
            (answer.leader_epoch >= 0).then_some((answer.leader_epoch, answer.end_offset));
        let cut = {
            let log = partition.log.lock();
            replication::truncation(end, hw, leader_answer, |e| log.end_offset_for_epoch(e))
        };
        let confirmed = leader_answer.is_none_or(|(e, _)| e == latest);
        if cut < end || !confirmed {
            let leader = match leader_answer {
                Some((epoch, offset)) => format!("leader's epoch {epoch} ends at {offset}"),
                None => "leader has no such epoch".to_string(),
            };
            tracing::info!(
                "partition {}-{} follower truncating from offset {end} to {cut} ({leader})",
                partition.topic,
                partition.index
            );
            // At the log end this still drops epochs the leader never had.
            partition.log.lock().truncate_to(cut)?;
        }
        if confirmed {
            return Ok(());
        }
    }
    anyhow::bail!("truncation did not converge")
}
