//! Failover under load: three controllers and three brokers as separate
//! `baton` processes on loopback, one partition with replication factor 3,
//! an acks=all producer sending one record after another. Again and again:
//! kill -9 the partition's leader, time from the kill to the first write
//! acknowledged by a new leader, restart the dead broker from its data
//! directory and wait until it is back in the ISR. Prints p50/p99/max next
//! to the session timeout (the floor: a dead broker cannot be fenced
//! sooner) and the acks=all write latency before any kill.

use baton_benches::{broker_args, spawn, Node};
use clap::Parser;
use client::Connection;
use hdrhistogram::Histogram;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Failover benchmark.
#[derive(Parser)]
struct Args {
    /// Hard kills of the leader.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Broker 1's port (brokers use 3 ports from it, controllers base+100..).
    #[arg(long, default_value_t = 39092)]
    base_port: u16,
    /// The `baton` binary [default: next to this one].
    #[arg(long)]
    baton: Option<PathBuf>,
}

const TOPIC: &str = "failover";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// (leader, ISR) as broker at `addr` reports it.
async fn describe(addr: &str) -> Option<(i32, Vec<i32>)> {
    let mut conn = Connection::connect(addr).await.ok()?;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(TOPIC))),
    ]));
    let response = conn.send(&request, 12).await.ok()?;
    let p = response.topics.first()?.partitions.first()?;
    Some((p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect()))
}

/// One acks=all write to `addr`; true if acknowledged.
async fn write(addr: &str) -> bool {
    let attempt = async {
        let mut conn = Connection::connect(addr).await.ok()?;
        let batch = storage::batch::build_batch(&[b"payload"], 0);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(TOPIC))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.into()))])]);
        let response = conn.send(&request, 9).await.ok()?;
        Some(response.responses[0].partition_responses[0].error_code == 0)
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Produces 1 KiB records to partition 0 of `topic` with acks=all for
/// `secs` through the Rust client (64 KiB batches, 5 in flight): (MB/s,
/// records/s, p99 ms from send to acknowledgement).
async fn throughput(bootstrap: &str, topic: &str, secs: u64) -> (f64, f64, f64) {
    let mut config = client::ProducerConfig::new(bootstrap);
    config.batch_size = 64 * 1024;
    let producer = client::Producer::new(config).await.expect("producer");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, client::producer::Delivery)>(20_000);
    let collector = tokio::spawn(async move {
        let mut latency = Histogram::<u64>::new(3).unwrap();
        while let Some((sent, delivery)) = rx.recv().await {
            if delivery.await.is_ok() {
                latency.record(sent.elapsed().as_micros() as u64).unwrap();
            }
        }
        latency
    });
    let value = bytes::Bytes::from(vec![b'x'; 1024]);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let record = client::Record::new(topic, value.clone()).with_partition(0);
        let sent = Instant::now();
        let delivery = producer.send(record).await.expect("send");
        tx.send((sent, delivery)).await.expect("collector");
    }
    drop(tx);
    let latency = collector.await.expect("collector");
    let elapsed = start.elapsed().as_secs_f64();
    let records = latency.len() as f64;
    (
        records * 1024.0 / elapsed / 1e6,
        records / elapsed,
        latency.value_at_quantile(0.99) as f64 / 1e3,
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let baton = baton_benches::baton_binary(args.baton);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_controllers, quorum) = baton_benches::controllers(&baton, args.base_port, dir.path());
    let port = |id: i32| args.base_port + id as u16 - 1;
    let addr = |id: i32| format!("127.0.0.1:{}", port(id));
    let mut brokers: Vec<Option<Node>> = (1..=3)
        .map(|id| {
            Some(spawn(
                &baton,
                &broker_args(id, port(id), &quorum, dir.path()),
                "baton listening",
            ))
        })
        .collect();
    let mut admin = client::Admin::connect(&addr(1)).await.expect("admin");
    tokio::time::sleep(Duration::from_millis(500)).await;
    admin
        .create_topic(TOPIC, 1, 3, &[])
        .await
        .expect("create topic");

    // The cost of replication, in one run: the same load on a partition
    // with one replica and on one with three.
    for rf in [1i16, 3] {
        let topic = format!("throughput-rf{rf}");
        admin
            .create_topic(&topic, 1, rf, &[])
            .await
            .expect("create topic");
        let (mb, records, p99) = throughput(&addr(1), &topic, 5).await;
        println!(
            "acks=all, 1 KiB records, replication factor {rf}: {mb:.1} MB/s, {records:.0} records/s, p99 {p99:.2} ms"
        );
    }
    let mut steady = Histogram::<u64>::new(3).unwrap();
    for _ in 0..500 {
        let (leader, _) = describe(&addr(1)).await.expect("metadata");
        let start = Instant::now();
        if write(&addr(leader)).await {
            steady.record(start.elapsed().as_micros() as u64).unwrap();
        }
    }
    let mut failover = Histogram::<u64>::new(3).unwrap();
    for kill in 0..args.kills {
        let (leader, _) = describe(&addr(1 + (kill as i32 % 3)))
            .await
            .or(describe(&addr(1 + ((kill as i32 + 1) % 3))).await)
            .expect("metadata");
        let others: Vec<i32> = (1..=3).filter(|b| *b != leader).collect();
        drop(brokers[leader as usize - 1].take());
        let killed_at = Instant::now();
        loop {
            let Some((now_leader, _)) = describe(&addr(others[0])).await else {
                continue;
            };
            if now_leader > 0 && now_leader != leader && write(&addr(now_leader)).await {
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "no new leader"
            );
        }
        let took = killed_at.elapsed();
        failover.record(took.as_micros() as u64).unwrap();
        println!(
            "kill {}: leader {leader} -> first acks=all write on a new leader after {:.0} ms",
            kill + 1,
            took.as_secs_f64() * 1e3
        );
        brokers[leader as usize - 1] = Some(spawn(
            &baton,
            &broker_args(leader, port(leader), &quorum, dir.path()),
            "baton listening",
        ));
        let back = Instant::now();
        while describe(&addr(others[0]))
            .await
            .is_none_or(|(_, isr)| isr.len() < 3)
        {
            assert!(
                back.elapsed() < Duration::from_secs(60),
                "broker {leader} did not rejoin the ISR"
            );
            write(&addr(others[0])).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    println!(
        "acks=all write, steady (the floor for a write): p50 {:.2} ms, p99 {:.2} ms ({} writes)",
        ms(&steady, 0.5),
        ms(&steady, 0.99),
        steady.len()
    );
    println!(
        "kill -9 of the leader to the first acks=all write on a new leader: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} kills; default session timeout {} ms)",
        ms(&failover, 0.5), ms(&failover, 0.99), failover.max() as f64 / 1e3, failover.len(), controller::rules::lease::DEFAULT_SESSION_TIMEOUT_MS
    );
}
