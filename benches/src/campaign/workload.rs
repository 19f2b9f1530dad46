//! The campaign's Rust workload: acks=all producers, a consumer of
//! assigned partitions and consumer-group members, each a task recording
//! every operation and its outcome. The librdkafka workload runs as
//! processes of `scripts/clients/campaign_client.py` writing the same
//! format to their own files.

use super::recorder::{now_ms, Recorder};
use checker::history::{Assignment, CommitOp, CommitOutcome, PollOp, SeekOp, SendOp, SendOutcome};
use checker::{Op, Record as HistoryRecord};
use client::group::TopicPartition;
use client::{
    ClientError, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    Producer, ProducerConfig, RebalanceListener, Record,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What every workload task shares.
#[derive(Clone)]
pub struct Ctx {
    /// Brokers to bootstrap from.
    pub bootstrap: String,
    /// The topic written and read.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// Where operations go.
    pub recorder: Recorder,
    /// Set to end the workload.
    pub stop: Arc<AtomicBool>,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A client that cannot connect yet (its bootstrap broker is down) tries
/// again: the workload must outlive every fault.
async fn connect<T, F, Fut>(ctx: &Ctx, make: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    while !ctx.stopping() {
        match make().await {
            Ok(client) => return Some(client),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

/// An acks=all idempotent producer (the client's default), one request in flight (so its acknowledged
/// offsets must rise), `rate` sends a second round-robin over the
/// partitions, each value unique: `r<process>-<seq>`.
pub async fn producer(ctx: Ctx, process: u64, rate: u32) {
    let mut config = ProducerConfig::new(&ctx.bootstrap);
    config.linger = Duration::ZERO;
    // Retried until the send's own 10 s timeout rather than given up early.
    config.retries = 1000;
    let Some(producer) = connect(&ctx, || Producer::new(config.clone())).await else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    while !ctx.stopping() {
        tick.tick().await;
        let partition = (seq % ctx.partitions as u64) as i32;
        let value = format!("r{process}-{seq}");
        seq += 1;
        let t_start = now_ms();
        let record = Record::new(&ctx.topic, value.clone()).with_partition(partition);
        let sent = async { producer.send(record).await?.await };
        let outcome = match tokio::time::timeout(Duration::from_secs(10), sent).await {
            Ok(Ok(meta)) => SendOutcome::Ok {
                offset: meta.offset,
            },
            Ok(Err(e)) => SendOutcome::Fail {
                error: e.to_string(),
            },
            Err(_) => SendOutcome::Unknown,
        };
        ctx.recorder.record(&Op::Send(SendOp {
            process,
            t_start,
            t_end: now_ms(),
            topic: ctx.topic.clone(),
            partition,
            value,
            outcome,
            // ProducerConfig's default: the idempotent producer.
            idempotent: true,
        }));
    }
}

/// Records one poll's records as one poll op per partition; `t_start` may
/// differ by partition (see `group_member`).
fn record_polls(ctx: &Ctx, process: u64, t_start: impl Fn(i32) -> u64, records: &[ConsumerRecord]) {
    let t_end = now_ms();
    let mut by_partition: BTreeMap<i32, Vec<HistoryRecord>> = BTreeMap::new();
    for r in records {
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
        by_partition
            .entry(r.partition)
            .or_default()
            .push(HistoryRecord {
                offset: r.offset,
                value: value.into_owned(),
            });
    }
    for (partition, records) in by_partition {
        ctx.recorder.record(&Op::Poll(PollOp {
            process,
            t_start: t_start(partition),
            t_end,
            topic: ctx.topic.clone(),
            partition,
            records,
            high_watermark: None,
        }));
    }
}

/// A consumer of every partition by assignment, from the earliest offset.
pub async fn assigned_consumer(ctx: Ctx, process: u64) {
    let config = ConsumerConfig::new(&ctx.bootstrap);
    let Some(mut consumer) = connect(&ctx, || Consumer::new(config.clone())).await else {
        return;
    };
    let partitions: Vec<(&str, i32)> = (0..ctx.partitions).map(|p| (&*ctx.topic, p)).collect();
    consumer.assign(&partitions);
    while !ctx.stopping() {
        let t_start = now_ms();
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => record_polls(&ctx, process, |_| t_start, &records),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Records a group member's ownership as the rebalance callbacks see it.
struct Ownership {
    ctx: Ctx,
    process: u64,
    group: String,
    member: String,
    /// Owned partitions and since when.
    owned: BTreeMap<i32, u64>,
}

impl Ownership {
    fn assigned(&mut self, partitions: &[TopicPartition]) {
        let now = now_ms();
        for (topic, partition) in partitions {
            self.owned.insert(*partition, now);
            // The member starts from the committed offset, which this
            // side does not see: the next read may start anywhere.
            self.ctx.recorder.record(&Op::Seek(SeekOp {
                process: self.process,
                t_start: now,
                t_end: now,
                topic: topic.clone(),
                partition: *partition,
                offset: None,
            }));
        }
    }

    fn released(&mut self, partitions: &[TopicPartition], to_ms: Option<u64>) {
        for (topic, partition) in partitions {
            let Some(from_ms) = self.owned.remove(partition) else {
                continue;
            };
            self.ctx.recorder.record(&Op::Assign(Assignment {
                group: self.group.clone(),
                member: self.member.clone(),
                topic: topic.clone(),
                partition: *partition,
                from_ms,
                to_ms,
            }));
        }
    }
}

impl RebalanceListener for Ownership {
    async fn on_partitions_revoked(&mut self, _: &mut GroupConsumer, ps: &[TopicPartition]) {
        self.released(ps, Some(now_ms()));
    }
    async fn on_partitions_assigned(&mut self, _: &mut GroupConsumer, ps: &[TopicPartition]) {
        self.assigned(ps);
    }
    async fn on_partitions_lost(&mut self, _: &mut GroupConsumer, ps: &[TopicPartition]) {
        self.released(ps, Some(now_ms()));
    }
}

/// A member of `group` through our `GroupConsumer` (cooperative-sticky),
/// committing synchronously after every poll that returned records.
pub async fn group_member(ctx: Ctx, process: u64, group: String, session: Duration) {
    let mut config = GroupConsumerConfig::new(&ctx.bootstrap, &group);
    config.session_timeout = session;
    config.heartbeat_interval = session / 5;
    let Some(mut consumer) = connect(&ctx, || GroupConsumer::new(config.clone())).await else {
        return;
    };
    consumer.subscribe(&[&ctx.topic]);
    let mut ownership = Ownership {
        ctx: ctx.clone(),
        process,
        group: group.clone(),
        member: format!("rust-{process}"),
        owned: BTreeMap::new(),
    };
    while !ctx.stopping() {
        let t_start = now_ms();
        let records = match consumer
            .poll_with(&mut ownership, Duration::from_millis(200))
            .await
        {
            Ok(records) => records,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A partition assigned during this poll was read after its seek:
        // the poll starts, for the checker's ordering, at the assignment.
        let owned = &ownership.owned;
        let since = |p: i32| owned.get(&p).map_or(t_start, |from| t_start.max(*from));
        record_polls(&ctx, process, since, &records);
        if !records.is_empty() {
            commit(&ctx, &mut consumer, process, &group, &records).await;
        }
    }
    let _ = consumer.close_with(&mut ownership).await;
    let still_owned: Vec<TopicPartition> = ownership
        .owned
        .keys()
        .map(|p| (ctx.topic.clone(), *p))
        .collect();
    ownership.released(&still_owned, None);
}

/// Commits the member's positions and records, per partition polled, the
/// offset after its last record.
async fn commit(
    ctx: &Ctx,
    consumer: &mut GroupConsumer,
    process: u64,
    group: &str,
    records: &[ConsumerRecord],
) {
    let generation = consumer.generation().map_or(-1, |(g, _)| g);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        next.insert(r.partition, r.offset + 1);
    }
    let t_start = now_ms();
    let outcome = match tokio::time::timeout(Duration::from_secs(10), consumer.commit_sync()).await
    {
        Ok(Ok(())) => CommitOutcome::Ok,
        Ok(Err(ClientError::Kafka { error, .. })) => CommitOutcome::Fail {
            error: format!("{error:?}"),
        },
        Ok(Err(_)) | Err(_) => CommitOutcome::Unknown,
    };
    let t_end = now_ms();
    for (partition, offset) in next {
        ctx.recorder.record(&Op::Commit(CommitOp {
            process,
            t_start,
            t_end,
            group: group.to_string(),
            topic: ctx.topic.clone(),
            partition,
            offset,
            generation,
            outcome: outcome.clone(),
        }));
    }
}
