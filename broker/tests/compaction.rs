//! A topic with `cleanup.policy=compact` is compacted by the broker's log
//! cleaner: reading from the start gives the latest value of every key at
//! the offset it was written at, fewer records than were written, tombstoned
//! keys gone after `delete.retention.ms`; the Rust consumer and kcat read
//! the cleaned log (with its emptied batches) without trouble.

mod common;

use common::Baton;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TOPIC: &str = "kv";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topic_keeps_the_latest_value_per_key() {
    let baton = Baton::start(&["--log-cleaner-backoff-ms", "200"]);
    let mut admin = client::Admin::connect(&baton.addr).await.expect("admin");
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1024"),
        ("delete.retention.ms", "0"),
    ];
    admin
        .create_topic(TOPIC, 1, 1, &configs)
        .await
        .expect("create");
    let producer = client::Producer::new(client::ProducerConfig::new(&baton.addr))
        .await
        .expect("producer");
    // (key -> (offset, value)) of the latest write; None: a tombstone.
    let mut latest: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    let mut written = 0;
    for round in 0..30 {
        for k in 0..8 {
            let (key, value) = (format!("k{k}"), format!("k{k}-round{round}"));
            let mut record = client::Record::new(TOPIC, value.clone()).with_key(key.clone());
            let tombstone = k == 0 && round == 29;
            if tombstone {
                record.value = None;
            }
            let meta = producer
                .send(record)
                .await
                .expect("send")
                .await
                .expect("ack");
            latest.insert(key, (meta.offset, (!tombstone).then_some(value)));
            written += 1;
        }
    }
    // A last write rolls the segment holding the tombstone out of the
    // active position, so the cleaner may reach it.
    for i in 0..20 {
        let record = client::Record::new(TOPIC, format!("pad{i}")).with_key(format!("pad{i}"));
        let meta = producer
            .send(record)
            .await
            .expect("send")
            .await
            .expect("ack");
        latest.insert(format!("pad{i}"), (meta.offset, Some(format!("pad{i}"))));
        written += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = read_all(&baton.addr, written as i64).await;
        let tombstone_gone = !read.values().any(|(k, _)| k == "k0");
        let clean_below = latest
            .iter()
            .filter(|(k, _)| k.starts_with('k'))
            .all(|(k, (o, _))| {
                read.iter()
                    .filter(|(_, (rk, _))| rk == k)
                    .all(|(ro, _)| ro == o)
            });
        if read.len() < written / 2 && tombstone_gone && clean_below {
            for (key, (offset, value)) in &latest {
                match value {
                    Some(v) => assert_eq!(
                        read.get(offset),
                        Some(&(key.clone(), Some(v.clone()))),
                        "{key} at {offset}"
                    ),
                    None => assert!(!read.contains_key(offset), "tombstone of {key} kept"),
                }
            }
            kcat_reads(&baton.addr, read.len());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: {} of {written} records left",
            read.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every record from offset 0: offset -> (key, value).
async fn read_all(addr: &str, end: i64) -> BTreeMap<i64, (String, Option<String>)> {
    let mut consumer = client::Consumer::new(client::ConsumerConfig::new(addr))
        .await
        .expect("consumer");
    consumer.assign(&[(TOPIC, 0)]);
    consumer.seek(TOPIC, 0, 0);
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while consumer.position(TOPIC, 0).unwrap_or(0) < end {
        assert!(
            Instant::now() < deadline,
            "stuck at {:?}",
            consumer.position(TOPIC, 0)
        );
        for r in consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string();
            let value = r.value.map(|v| String::from_utf8_lossy(&v).to_string());
            out.insert(r.offset, (key, value));
        }
    }
    out
}

/// kcat (librdkafka) reads the cleaned log to its end: as many records.
fn kcat_reads(addr: &str, expected: usize) {
    let out = std::process::Command::new("kcat")
        .args(["-C", "-b", addr, "-t", TOPIC, "-e", "-q", "-f", "%o\\n"])
        .output()
        .expect("kcat");
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, expected, "kcat read {lines} records");
}
