//! Fetch long polls (wake on new data, wait without it, never spin) and
//! ListOffsets earliest / latest / by timestamp, against the real binary.

mod common;

use client::{Producer, ProducerConfig, Record};
use common::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
use std::time::{Duration, Instant};
use storage::batch::build_batch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_data_and_waits_without_it() {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "poll", 1).await;

    // No data: the fetch waits out max_wait_ms, then answers empty.
    let start = Instant::now();
    let r = conn
        .send(&fetch_request("poll", 0, 0, 400), 12)
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "answered after {:?}",
        start.elapsed()
    );
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_none_or(|b| b.is_empty()));

    // Data arriving during the wait ends it early.
    let addr = baton.addr.clone();
    let waiter = tokio::spawn(async move {
        let mut conn = client::Connection::connect(&addr).await.unwrap();
        let start = Instant::now();
        let r = conn
            .send(&fetch_request("poll", 0, 0, 20_000), 12)
            .await
            .unwrap();
        (
            start.elapsed(),
            r.responses[0].partitions[0]
                .records
                .clone()
                .unwrap_or_default()
                .len(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        produce(&mut conn, "poll", 0, build_batch(&[b"wake"], 0).into())
            .await
            .0,
        0
    );
    let (waited, bytes) = waiter.await.unwrap();
    assert!(bytes > 0, "the fetch returned the new record");
    assert!(
        waited < Duration::from_secs(10),
        "woke after {waited:?}, not at max_wait"
    );
}

async fn list(conn: &mut client::Connection, timestamp: i64) -> (i16, i64, i64) {
    let p = ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(timestamp);
    let t = ListOffsetsTopic::default()
        .with_name(topic("times"))
        .with_partitions(vec![p]);
    let r = conn
        .send(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![t]),
            6,
        )
        .await
        .unwrap();
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "times", 1).await;
    let mut config = ProducerConfig::new(&baton.addr);
    config.linger = Duration::from_millis(50); // several records per batch
    let producer = Producer::new(config).await.unwrap();
    let mut deliveries = Vec::new();
    for (i, ts) in [1_000, 2_000, 3_000, 3_000, 5_000, 8_000]
        .into_iter()
        .enumerate()
    {
        let mut record = Record::new("times", format!("r{i}").into_bytes()).with_partition(0);
        record.timestamp = Some(ts);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    // (query, expected offset, expected timestamp); -1 -1 when none.
    let cases = [
        (-2, 0, -1),
        (-1, 6, -1),
        (0, 0, 1_000),
        (1_500, 1, 2_000),
        (3_000, 2, 3_000),
        (4_000, 4, 5_000),
        (8_000, 5, 8_000),
        (9_000, -1, -1),
    ];
    for (query, offset, timestamp) in cases {
        assert_eq!(
            list(&mut conn, query).await,
            (0, offset, timestamp),
            "timestamp {query}"
        );
    }
}
