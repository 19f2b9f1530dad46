//! Claim 8 on `local-cluster` (3 controllers, 3 brokers): the producer
//! state moves with the log. A batch the old leader appended and
//! replicated, retried to the new leader after a kill -9, is answered with
//! its original offset and stored once; and librdkafka's idempotent
//! producer through repeated leader kills stores every acknowledged
//! record exactly once, in send order.

mod common;

use bytes::Bytes;
use client::Connection;
use common::cluster::LocalCluster;
use common::produce;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{DescribeProducersRequest, InitProducerIdRequest, ProducerId};
use rustix::process::Signal;
use std::path::PathBuf;
use std::time::Duration;
use storage::batch::{build_batch, with_producer};

/// One cluster at a time (see `broker_failover.rs`).
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPIC: &str = "once";

async fn start() -> LocalCluster {
    LocalCluster::start_with_topic(TOPIC).await
}

/// The partition's leader as the first of `alive` that answers says.
async fn leader(cluster: &LocalCluster, alive: &[i32]) -> Option<i32> {
    cluster.leader_of(TOPIC, alive).await
}

/// Waits for a leader among `alive` other than `not`.
async fn new_leader(cluster: &LocalCluster, alive: &[i32], not: i32) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = leader(cluster, alive).await.filter(|l| *l != not) {
            return l;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two records from `pid` (epoch 0) at sequence `seq`.
fn idempotent(pid: i64, seq: i32) -> Bytes {
    with_producer(&build_batch(&[b"x", b"y"], 1_000), pid, 0, seq).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim8_a_retry_to_the_new_leader_is_stored_once_at_its_original_offset() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = start().await;
    let old = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
    let mut conn = Connection::connect(cluster.broker_addr(old))
        .await
        .expect("connect");
    let init = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let pid = conn
        .send(&init, 4)
        .await
        .expect("InitProducerId")
        .producer_id
        .0;
    assert!(pid >= 0);
    // acks=all: on every ISR member before the answer (which the producer
    // is taken to have lost).
    assert_eq!(
        produce(&mut conn, TOPIC, 0, idempotent(pid, 0)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, TOPIC, 0, idempotent(pid, 2)).await,
        (0, 2)
    );
    cluster.signal_broker(old, Signal::KILL);
    let alive: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != old).collect();
    let new = new_leader(&cluster, &alive, old).await;
    let mut conn = Connection::connect(cluster.broker_addr(new))
        .await
        .expect("connect");
    let retried = loop {
        let answer = produce(&mut conn, TOPIC, 0, idempotent(pid, 2)).await;
        if answer.0 == 0 {
            break answer;
        }
        // NOT_LEADER_OR_FOLLOWER until its image and lease catch up.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(retried, (0, 2), "the retry gets the original's offset");
    assert_eq!(
        produce(&mut conn, TOPIC, 0, idempotent(pid, 0)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, TOPIC, 0, idempotent(pid, 4)).await,
        (0, 4),
        "nothing stored twice"
    );
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(common::topic(TOPIC))
        .with_partition_indexes(vec![0])]);
    let described = conn.send(&request, 0).await.expect("DescribeProducers");
    let producers = &described.topics[0].partitions[0].active_producers;
    let mine = producers
        .iter()
        .find(|p| p.producer_id.0 == pid)
        .expect("known to the new leader");
    assert_eq!(mine.last_sequence, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim8_librdkafka_idempotent_producer_through_repeated_leader_kills() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = start().await;
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = workspace.join("target/test-venv/bin/python");
    assert!(python.exists(), "run scripts/setup-test-deps.sh");
    let bootstrap: Vec<String> = [1, 2, 3]
        .into_iter()
        .map(|b| cluster.broker_addr(b).to_string())
        .collect();
    let run = std::process::Command::new(&python)
        .arg(workspace.join("scripts/clients/failover.py"))
        .args(["confluent", &bootstrap.join(","), TOPIC, "12"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run failover.py");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for _ in 0..3 {
        let old = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
        cluster.signal_broker(old, Signal::KILL);
        let alive: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != old).collect();
        new_leader(&cluster, &alive, old).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        cluster.restart_broker(old);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let out = tokio::task::spawn_blocking(move || run.wait_with_output())
        .await
        .unwrap()
        .expect("failover.py");
    let delivered = common::delivered(&out, "librdkafka");
    eprintln!("librdkafka: {delivered} acknowledged records, each stored once, in order");
    assert!(delivered > 500, "delivered {delivered}");
}

/// The Rust client's default (idempotent) producer, five batches in
/// flight, through a kill -9 of the leader: every value is stored at most
/// once, and the acknowledged ones at their acknowledged offsets, in send
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim8_rust_default_producer_through_a_leader_kill() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = start().await;
    let bootstrap: Vec<String> = [1, 2, 3]
        .into_iter()
        .map(|b| cluster.broker_addr(b).to_string())
        .collect();
    let producer = client::Producer::new(client::ProducerConfig::new(&bootstrap.join(",")))
        .await
        .expect("producer");
    let old = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
    let mut deliveries = Vec::new();
    for i in 0..4_000u32 {
        if i == 1_500 {
            cluster.signal_broker(old, Signal::KILL);
        }
        let record = client::Record::new(TOPIC, i.to_string().into_bytes()).with_partition(0);
        deliveries.push(producer.send(record).await.expect("queued"));
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut acked = Vec::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        if let Ok(m) = d.await {
            acked.push((i, m.offset));
        }
    }
    assert!(acked.len() > 2_000, "only {} acknowledged", acked.len());
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "acknowledged out of send order"
    );
    let alive: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != old).collect();
    let new = new_leader(&cluster, &alive, old).await;
    let mut consumer = client::Consumer::new(client::ConsumerConfig::new(cluster.broker_addr(new)))
        .await
        .expect("consumer");
    consumer.assign(&[(TOPIC, 0)]);
    consumer.seek(TOPIC, 0, 0);
    let mut stored: std::collections::BTreeMap<i64, String> = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stored.len() < acked.len() && tokio::time::Instant::now() < deadline {
        for r in consumer
            .poll(Duration::from_millis(500))
            .await
            .unwrap_or_default()
        {
            stored.insert(
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into(),
            );
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (offset, value) in &stored {
        if let Some(first) = seen.insert(value.clone(), *offset) {
            panic!("{value} stored twice: at {first} and {offset}");
        }
    }
    for (i, offset) in &acked {
        assert_eq!(
            stored.get(offset),
            Some(&i.to_string()),
            "acknowledged {i} at {offset}"
        );
    }
    eprintln!(
        "rust: {} of 4000 acknowledged, {} stored, none twice",
        acked.len(),
        stored.len()
    );
}
