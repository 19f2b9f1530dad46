//! The producer: records are batched per partition (`linger`,
//! `batch_size`), sent with the configured acks, and retried with backoff
//! after refreshing metadata when leadership moved. Each batch carries the
//! producer's known leader epoch in `partitionLeaderEpoch`, so a stale leader
//! view is fenced by the broker rather than written (CLAIMS.md, claim 3).
//! Up to five batches per partition are in flight on one connection
//! (Kafka's `max.in.flight.requests.per.connection`), so the broker's group
//! commit can share one fdatasync among them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! use client::{Producer, ProducerConfig, Record};
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
//! let delivery = producer.send(Record::new("orders", b"hello".to_vec()).with_key(b"k1".to_vec())).await?;
//! let metadata = delivery.await?;
//! println!("stored at {}-{} offset {}", metadata.topic, metadata.partition, metadata.offset);
//! # Ok(()) }
//! ```

use crate::cluster::{is_retriable, topic_name, Cluster};
use crate::connection::{ClientError, Connection};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::idempotence::{self, BatchSequence, ProducerIdentity, Reaction, Sequencer};
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

/// Produce request version the producer speaks.
/// Produce v10+ refusals carry the new leader and its endpoint (KIP-951).
const PRODUCE_VERSION: i16 = 11;
/// InitProducerId version: 4 carries KIP-360's producer id and epoch.
const INIT_PRODUCER_ID_VERSION: i16 = 4;
/// Records a partition may have queued before `send` waits.
const QUEUE_RECORDS_MAX: usize = 10_000;

/// Producer settings, named after Kafka's.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// `acks`: 0, 1 or -1 (all).
    pub acks: i16,
    /// `linger.ms`: how long a batch waits for more records.
    pub linger: Duration,
    /// `batch.size`: bytes of record data that close a batch.
    pub batch_size: usize,
    /// `retries` after a retriable error.
    pub retries: u32,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `compression.type`.
    pub compression: Compression,
    /// `enable.idempotence`: each batch carries the producer id, epoch and
    /// sequence (`crate::idempotence`), so the broker stores a retried
    /// batch once, in order (CLAIMS.md, claim 8). On by default, as in the
    /// Java client; as there, it applies with acks=all only (with acks 0 or
    /// 1 the producer is not idempotent).
    pub enable_idempotence: bool,
}

impl ProducerConfig {
    /// Defaults: acks=all, idempotent, linger 5 ms, 16 KiB batches, 10
    /// retries 100 ms apart, no compression.
    pub fn new(bootstrap: &str) -> ProducerConfig {
        ProducerConfig {
            bootstrap: bootstrap.to_string(),
            acks: -1,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            compression: Compression::None,
            enable_idempotence: true,
        }
    }

    /// Sets `enable.idempotence` (on by default).
    pub fn enable_idempotence(mut self, on: bool) -> ProducerConfig {
        self.enable_idempotence = on;
        self
    }

    /// Whether batches carry producer ids: idempotence on, with acks=all.
    fn idempotent(&self) -> bool {
        self.enable_idempotence && self.acks == -1
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition; `None` picks one from the key (murmur2, as Kafka does) or
    /// round-robin without a key.
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers (a key appearing twice keeps its last value).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms; `None` is now.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with a value.
    pub fn new(topic: &str, value: impl Into<Bytes>) -> Record {
        Record {
            topic: topic.to_string(),
            value: Some(value.into()),
            ..Record::default()
        }
    }
    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }
    /// Sets the partition.
    pub fn with_partition(mut self, partition: i32) -> Record {
        self.partition = Some(partition);
        self
    }
    /// Adds a header.
    pub fn with_header(mut self, key: &str, value: impl Into<Bytes>) -> Record {
        self.headers.push((key.to_string(), Some(value.into())));
        self
    }
    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, |k| k.len()) + self.value.as_ref().map_or(0, |v| v.len()) + 16
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset (-1 with acks=0).
    pub offset: i64,
}

/// Resolves when the record is acknowledged (or fails).
#[derive(Debug)]
pub struct Delivery(oneshot::Receiver<Result<RecordMetadata, ClientError>>);

impl Future for Delivery {
    type Output = Result<RecordMetadata, ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(ClientError::Protocol("producer closed".into()))))
    }
}

struct Pending {
    record: Record,
    done: oneshot::Sender<Result<RecordMetadata, ClientError>>,
}

struct Shared {
    config: ProducerConfig,
    /// The id and epoch InitProducerId gave, when idempotent.
    identity: Option<ProducerIdentity>,
    cluster: Mutex<Cluster>,
    workers: std::sync::Mutex<HashMap<(String, i32), mpsc::Sender<Pending>>>,
    round_robin: AtomicU32,
    /// KIP-951 leader hints from refusals, used instead of a metadata
    /// round trip on the next retry.
    hints: std::sync::Mutex<HashMap<(String, i32), LeaderHint>>,
}

/// Where a refusal said the partition's leader is now (KIP-951).
#[derive(Debug, Clone)]
struct LeaderHint {
    leader: crate::cluster::Leader,
    /// The leader's address, if the response carried it.
    addr: Option<String>,
}

/// The producer; cheap to share behind an `Arc`.
pub struct Producer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("bootstrap", &self.shared.config.bootstrap)
            .finish()
    }
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), so keyed
/// records land on the same partition as with Kafka's default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

impl Producer {
    /// Connects to the cluster.
    pub async fn new(config: ProducerConfig) -> Result<Producer, ClientError> {
        let mut cluster = Cluster::new(&config.bootstrap);
        cluster.refresh(Some(&[]), false).await?;
        let identity = match config.idempotent() {
            true => Some(init_producer_id(&mut cluster, &config).await?),
            false => None,
        };
        Ok(Producer {
            shared: Arc::new(Shared {
                config,
                identity,
                cluster: Mutex::new(cluster),
                workers: std::sync::Mutex::new(HashMap::new()),
                round_robin: AtomicU32::new(0),
                hints: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Queues a record; await the returned [`Delivery`] for its offset.
    pub async fn send(&self, record: Record) -> Result<Delivery, ClientError> {
        let partition = match record.partition {
            Some(p) => p,
            None => self.pick_partition(&record).await?,
        };
        let (done, delivery) = oneshot::channel();
        let sender = self.worker(&record.topic, partition);
        sender
            .send(Pending { record, done })
            .await
            .map_err(|_| ClientError::Protocol("producer worker stopped".into()))?;
        Ok(Delivery(delivery))
    }

    async fn pick_partition(&self, record: &Record) -> Result<i32, ClientError> {
        let mut cluster = self.shared.cluster.lock().await;
        if cluster.partition_count(&record.topic).is_none() {
            cluster.refresh(Some(&[&record.topic]), true).await?;
        }
        let count = cluster
            .partition_count(&record.topic)
            .filter(|&c| c > 0)
            .ok_or_else(|| ClientError::Kafka {
                context: format!("topic {}", record.topic),
                error: ResponseError::UnknownTopicOrPartition,
            })?;
        Ok(match &record.key {
            Some(key) => (murmur2(key) & 0x7fff_ffff) % count,
            None => (self.shared.round_robin.fetch_add(1, Ordering::Relaxed) % count as u32) as i32,
        })
    }

    fn worker(&self, topic: &str, partition: i32) -> mpsc::Sender<Pending> {
        let mut workers = self
            .shared
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (topic.to_string(), partition);
        if let Some(tx) = workers.get(&key).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE_RECORDS_MAX);
        tokio::spawn(partition_worker(
            self.shared.clone(),
            topic.to_string(),
            partition,
            rx,
        ));
        workers.insert(key, tx.clone());
        tx
    }
}

/// Asks any broker for a producer id (InitProducerId v4, KIP-360's),
/// retrying what Kafka calls retriable (COORDINATOR_NOT_AVAILABLE while
/// the broker fetches a block, say).
async fn init_producer_id(
    cluster: &mut Cluster,
    config: &ProducerConfig,
) -> Result<ProducerIdentity, ClientError> {
    let request = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let answer = match cluster.any_connection().await {
            Ok(conn) => conn.send(&request, INIT_PRODUCER_ID_VERSION).await,
            Err(e) => Err(e),
        };
        let error = match answer {
            Ok(r) if r.error_code == 0 => {
                return Ok(ProducerIdentity {
                    producer_id: r.producer_id.0,
                    producer_epoch: r.producer_epoch,
                })
            }
            Ok(r) => ClientError::check(r.error_code, || "InitProducerId".into(), None)
                .expect_err("a non-zero code"),
            Err(e) => e,
        };
        let retriable = error.kafka_error().is_none_or(is_retriable);
        if !retriable || attempt > config.retries {
            return Err(error);
        }
        cluster.relearn();
        tokio::time::sleep(config.retry_backoff).await;
    }
}

/// Batches one partition may have in flight, as Kafka's
/// `max.in.flight.requests.per.connection`. With the idempotent producer
/// the broker appends only in sequence, so order holds through retries;
/// without it a retried batch may land after a later one.
const IN_FLIGHT_MAX: usize = 5;

/// A batch's records and, when idempotent, the producer fields it got at
/// its first send in the current epoch (kept through retries).
struct Batch {
    records: Vec<Pending>,
    sequence: Option<BatchSequence>,
}

/// A sent batch waiting for its response.
struct InFlight {
    batch: Batch,
    correlation_id: i32,
}

/// Records waiting to form a batch.
#[derive(Default)]
struct Staged {
    records: Vec<Pending>,
    size: usize,
    since: Option<tokio::time::Instant>,
}

impl Staged {
    fn push(&mut self, p: Pending) {
        self.size += p.record.size();
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.records.push(p);
    }
    fn take(&mut self) -> Batch {
        self.size = 0;
        self.since = None;
        Batch {
            records: std::mem::take(&mut self.records),
            sequence: None,
        }
    }
}

/// Batches and sends one partition's records on one connection, with up to
/// `IN_FLIGHT_MAX` batches in flight; responses arrive in order.
async fn partition_worker(
    shared: Arc<Shared>,
    topic: String,
    partition: i32,
    mut rx: mpsc::Receiver<Pending>,
) {
    let config = shared.config.clone();
    let mut conn: Option<(i32, Connection)> = None;
    let mut sequencer = shared.identity.map(Sequencer::new);
    let mut staged = Staged::default();
    let mut in_flight: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    let mut open = true;
    loop {
        while open && staged.size < config.batch_size {
            match rx.try_recv() {
                Ok(p) => staged.push(p),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let lingered = staged.since.is_some_and(|t| t.elapsed() >= config.linger);
        let ripe =
            !staged.records.is_empty() && (staged.size >= config.batch_size || lingered || !open);
        let mut to = Target {
            shared: &shared,
            topic: &topic,
            partition,
            conn: &mut conn,
            sequencer: &mut sequencer,
        };
        if ripe && config.acks == 0 {
            let mut batch = staged.take();
            let result = to.send_with_retries(&mut batch).await;
            complete(&topic, partition, batch, result);
            continue;
        }
        if ripe && in_flight.len() < IN_FLIGHT_MAX {
            let mut batch = staged.take();
            match to.start_send(&mut batch).await {
                Ok(correlation_id) => in_flight.push_back(InFlight {
                    batch,
                    correlation_id,
                }),
                Err(_) => {
                    *to.conn = None;
                    let result = to.send_with_retries(&mut batch).await;
                    complete(&topic, partition, batch, result);
                }
            }
            continue;
        }
        if let Some(front) = in_flight.pop_front() {
            let result = match to.conn.as_mut() {
                Some((_, c)) => match c
                    .receive::<ProduceRequest>(PRODUCE_VERSION, front.correlation_id)
                    .await
                {
                    Ok(response) => partition_result(&shared, &topic, partition, &response),
                    Err(e) => Err(e),
                },
                None => Err(ClientError::Protocol("connection lost".into())),
            };
            match result {
                Ok(base) => complete(&topic, partition, front.batch, Ok(base)),
                Err(_) => {
                    // Abandon the connection; resend this batch and every
                    // later one in order through the retrying path (one at
                    // a time, so each is the oldest unacknowledged batch
                    // when its answer comes).
                    *to.conn = None;
                    let mut again = vec![front];
                    again.extend(in_flight.drain(..));
                    for mut f in again {
                        let result = to.send_with_retries(&mut f.batch).await;
                        complete(&topic, partition, f.batch, result);
                    }
                }
            }
            continue;
        }
        if !open && staged.records.is_empty() {
            return;
        }
        let next = match staged.since {
            Some(t) => tokio::time::timeout_at(t + config.linger, rx.recv())
                .await
                .ok(),
            None => Some(rx.recv().await),
        };
        match next {
            Some(Some(p)) => staged.push(p),
            Some(None) => open = false,
            None => {} // linger passed: the batch is ripe now
        }
    }
}

fn complete(topic: &str, partition: i32, batch: Batch, result: Result<i64, ClientError>) {
    for (i, p) in batch.records.into_iter().enumerate() {
        let outcome = match &result {
            Ok(base) => Ok(RecordMetadata {
                topic: topic.to_string(),
                partition,
                offset: if *base < 0 { -1 } else { base + i as i64 },
            }),
            Err(e) => Err(e.clone()),
        };
        let _ = p.done.send(outcome);
    }
}

/// Where a partition worker sends: its partition, its connection to the
/// leader, and (when idempotent) its sequence numbers.
struct Target<'a> {
    shared: &'a Shared,
    topic: &'a str,
    partition: i32,
    conn: &'a mut Option<(i32, Connection)>,
    sequencer: &'a mut Option<Sequencer>,
}

impl Target<'_> {
    /// Sends `batch` until it is acknowledged, retries run out, or the
    /// error is final.
    async fn send_with_retries(&mut self, batch: &mut Batch) -> Result<i64, ClientError> {
        let config = &self.shared.config;
        let (topic, partition) = (self.topic, self.partition);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send_once(batch).await {
                Ok(base) => return Ok(base),
                Err(e) => e,
            };
            let retriable = match &error {
                ClientError::Kafka { error, .. } => is_retriable(*error),
                ClientError::Io { .. } => true,
                _ => false,
            };
            let reaction = match (error.kafka_error(), self.sequencer.is_some()) {
                (Some(e), true) => idempotence::react(e, retriable),
                _ if retriable => Reaction::Retry,
                _ => Reaction::Fail,
            };
            if reaction == Reaction::Fail || attempt > config.retries {
                return Err(if attempt > 1 {
                    ClientError::Exhausted {
                        attempts: attempt,
                        last: Box::new(error),
                    }
                } else {
                    error
                });
            }
            tracing::debug!(topic, partition, attempt, %error, ?reaction, "produce retry");
            if reaction == Reaction::BumpEpoch {
                self.bump_epoch().await?;
                continue;
            }
            self.reroute(&error).await;
        }
    }

    /// KIP-360: the broker lacks this producer's state or the batch before
    /// this one; nothing after this batch can be stored, so start a new
    /// epoch (a new producer id once epochs run out) numbered from 0.
    async fn bump_epoch(&mut self) -> Result<(), ClientError> {
        let Some(sequencer) = self.sequencer.as_mut() else {
            return Ok(());
        };
        if !sequencer.bump_epoch() {
            let mut cluster = self.shared.cluster.lock().await;
            sequencer.restart(init_producer_id(&mut cluster, &self.shared.config).await?);
        }
        tracing::info!(topic = self.topic, partition = self.partition,
            identity = ?sequencer.identity(), "producer epoch bumped");
        Ok(())
    }

    /// After a retriable refusal: follow its leader hint, or back off and
    /// refresh metadata.
    async fn reroute(&mut self, error: &ClientError) {
        let shared = self.shared;
        let (topic, partition) = (self.topic, self.partition);
        if let (ClientError::Io { .. }, Some((_, c))) = (error, self.conn.as_ref()) {
            // The broker may be gone: refresh metadata rather than
            // reconnect at once.
            shared.cluster.lock().await.mark_unreachable(c.addr());
        }
        *self.conn = None;
        let hint = {
            let mut hints = shared.hints.lock().unwrap_or_else(|e| e.into_inner());
            hints.remove(&(topic.to_string(), partition))
        };
        let mut cluster = shared.cluster.lock().await;
        // KIP-951: the refusal named the new leader; go there at once.
        if !hint.is_some_and(|h| cluster.follow_hint(topic, partition, h.leader, h.addr)) {
            drop(cluster);
            tokio::time::sleep(shared.config.retry_backoff).await;
            let _ = shared
                .cluster
                .lock()
                .await
                .refresh(Some(&[topic]), true)
                .await;
        }
    }

    /// Writes the batch's Produce request to the partition leader; returns
    /// its correlation id. An idempotent batch gets its sequence here, at
    /// its first send in the current epoch.
    async fn start_send(&mut self, batch: &mut Batch) -> Result<i32, ClientError> {
        let shared = self.shared;
        let (topic, partition) = (self.topic, self.partition);
        let leader = {
            let mut cluster = shared.cluster.lock().await;
            let leader = cluster.leader_or_refresh(topic, partition).await?;
            if self.conn.as_ref().is_none_or(|(b, _)| *b != leader.broker) {
                let addr = cluster.broker_addr(leader.broker).ok_or_else(|| {
                    ClientError::Protocol(format!("no address for broker {}", leader.broker))
                })?;
                // Retried after a metadata refresh, which names the new
                // leader as soon as there is one.
                cluster.check_reachable(&addr)?;
                drop(cluster);
                match Connection::connect(&addr).await {
                    Ok(c) => *self.conn = Some((leader.broker, c)),
                    Err(e) => {
                        shared.cluster.lock().await.mark_unreachable(&addr);
                        return Err(e);
                    }
                }
            }
            leader
        };
        if let Some(sequencer) = self.sequencer.as_mut() {
            let records = batch.records.len() as i32;
            batch.sequence = Some(sequencer.assign(batch.sequence, records));
        }
        let (_, connection) = self.conn.as_mut().expect("connected above");
        let records = encode(batch, leader.epoch, shared.config.compression)?;
        let request = ProduceRequest::default()
            .with_acks(shared.config.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        connection.send_request(&request, PRODUCE_VERSION).await
    }

    /// Sends one batch and waits for its response: the base offset.
    async fn send_once(&mut self, batch: &mut Batch) -> Result<i64, ClientError> {
        let correlation_id = self.start_send(batch).await?;
        if self.shared.config.acks == 0 {
            return Ok(-1);
        }
        let (_, connection) = self.conn.as_mut().expect("connected by start_send");
        let response = connection
            .receive::<ProduceRequest>(PRODUCE_VERSION, correlation_id)
            .await?;
        partition_result(self.shared, self.topic, self.partition, &response)
    }
}

fn partition_result(
    shared: &Shared,
    topic: &str,
    partition: i32,
    response: &kafka_protocol::messages::ProduceResponse,
) -> Result<i64, ClientError> {
    let p = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or_else(|| ClientError::Protocol("empty Produce response".into()))?;
    if p.error_code != 0 && p.current_leader.leader_id.0 >= 0 {
        let id = p.current_leader.leader_id.0;
        let addr = response
            .node_endpoints
            .iter()
            .find(|e| e.node_id.0 == id)
            .map(|e| format!("{}:{}", e.host, e.port));
        let hint = LeaderHint {
            leader: crate::cluster::Leader {
                broker: id,
                epoch: p.current_leader.leader_epoch,
            },
            addr,
        };
        let mut hints = shared.hints.lock().unwrap_or_else(|e| e.into_inner());
        hints.insert((topic.to_string(), partition), hint);
    }
    ClientError::check(
        p.error_code,
        || format!("produce to {topic}-{partition}"),
        None,
    )?;
    Ok(p.base_offset)
}

/// One RecordBatch v2 of the records, stamped with the known leader epoch
/// and, when idempotent, the batch's producer id, epoch and sequence.
fn encode(
    batch: &Batch,
    leader_epoch: i32,
    compression: Compression,
) -> Result<Bytes, ClientError> {
    let producer = batch.sequence.map_or((-1, -1, -1), |s| {
        (s.producer_id, s.producer_epoch, s.base_sequence)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records: Vec<kafka_protocol::records::Record> = batch
        .records
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let headers: IndexMap<StrBytes, Option<Bytes>> = p
                .record
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect();
            kafka_protocol::records::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: leader_epoch,
                producer_id: producer.0,
                producer_epoch: producer.1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder writes the first record's as baseSequence.
                sequence: match producer.2 {
                    -1 => -1,
                    base => base.wrapping_add(i as i32),
                },
                timestamp: p.record.timestamp.unwrap_or(now),
                key: p.record.key.clone(),
                value: p.record.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| ClientError::Protocol(format!("cannot encode batch: {e}")))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    /// Kafka's own test vectors (clients' UtilsTest.testMurmur2).
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
        }
    }
}
