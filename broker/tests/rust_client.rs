//! Baton's own Rust client against the real binary: admin, producer with
//! keyed partitioning and headers, consumer reading it all back.

mod common;

use client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, Record};
use common::Baton;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_ten_thousand_records() {
    let baton = Baton::start(&["--auto-create-topics", "false"]);
    let mut admin = Admin::connect(&baton.addr).await.unwrap();
    admin
        .create_topic("rust", 3, 1, &[("retention.ms", "3600000")])
        .await
        .unwrap();
    let described = admin.describe_topic("rust").await.unwrap();
    assert_eq!(described.partitions.len(), 3);
    assert!(described
        .partitions
        .iter()
        .all(|p| p.leader == 1 && p.leader_epoch == 1 && p.isr == [1]));

    let producer = Producer::new(ProducerConfig::new(&baton.addr))
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10_000 {
        let record = Record::new("rust", format!("value-{i}").into_bytes())
            .with_key(format!("key-{}", i % 97).into_bytes())
            .with_header("i", i.to_string().into_bytes());
        deliveries.push(producer.send(record).await.unwrap());
    }
    let mut sent: HashMap<(i32, i64), usize> = HashMap::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        let m = d.await.unwrap();
        assert_eq!(
            m.partition,
            (client::producer::murmur2(format!("key-{}", i % 97).as_bytes()) & 0x7fff_ffff) % 3
        );
        assert!(
            sent.insert((m.partition, m.offset), i).is_none(),
            "two records at one offset"
        );
    }

    let mut consumer = Consumer::new(ConsumerConfig::new(&baton.addr))
        .await
        .unwrap();
    consumer.assign(&[("rust", 0), ("rust", 1), ("rust", 2)]);
    let mut seen = 0;
    let mut next: HashMap<i32, i64> = HashMap::new();
    while seen < 10_000 {
        let records = consumer.poll(Duration::from_secs(1)).await.unwrap();
        assert!(!records.is_empty() || seen > 0, "nothing to consume");
        for r in records {
            let expected_next = next.entry(r.partition).or_insert(0);
            assert_eq!(
                r.offset, *expected_next,
                "offsets contiguous in partition {}",
                r.partition
            );
            *expected_next += 1;
            let i = sent[&(r.partition, r.offset)];
            assert_eq!(r.value.as_deref(), Some(format!("value-{i}").as_bytes()));
            assert_eq!(r.key.as_deref(), Some(format!("key-{}", i % 97).as_bytes()));
            assert_eq!(
                r.headers,
                vec![("i".to_string(), Some(i.to_string().into_bytes().into()))]
            );
            assert_eq!(r.leader_epoch, 1);
            seen += 1;
        }
    }

    // A delivery that cannot succeed fails with the Kafka error, typed.
    let doomed = producer
        .send(Record::new("no-such-topic", b"v".to_vec()).with_partition(0))
        .await
        .unwrap();
    match doomed.await.unwrap_err() {
        client::ClientError::Exhausted { last, .. } => {
            assert!(matches!(*last, client::ClientError::Kafka { .. }), "{last}")
        }
        other => panic!("expected retries to run out on a Kafka error, got {other}"),
    }

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!((cluster.controller, cluster.brokers.len()), (1, 1));
    assert_eq!(admin.list_topics().await.unwrap().len(), 1);
    admin.delete_topic("rust").await.unwrap();
    assert!(admin.list_topics().await.unwrap().is_empty());
    let err = admin.create_topic("bad name", 1, 1, &[]).await.unwrap_err();
    assert!(err.to_string().contains("InvalidTopicException"), "{err}");
    let err = admin
        .create_topic("t", 1, 1, &[("cleanup.policy", "shred")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("InvalidConfig"), "{err}");
}

/// A poll over several partitions where one fails (here: a topic that does
/// not exist) still returns the others' records. Found by the fault
/// campaign: the consumer used to return the error and drop records it had
/// already fetched for the other partitions, whose positions had moved on,
/// so they were never seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_partition_does_not_lose_the_records_of_the_others() {
    let baton = Baton::start(&["--auto-create-topics", "false"]);
    let mut admin = Admin::connect(&baton.addr).await.unwrap();
    admin.create_topic("present", 1, 1, &[]).await.unwrap();
    let producer = Producer::new(ProducerConfig::new(&baton.addr))
        .await
        .unwrap();
    for i in 0..5 {
        let record = Record::new("present", format!("v{i}").into_bytes()).with_partition(0);
        producer.send(record).await.unwrap().await.unwrap();
    }
    let mut consumer = Consumer::new(ConsumerConfig::new(&baton.addr))
        .await
        .unwrap();
    // "absent" sorts first, so it fails before "present" is fetched, and
    // "zzz-absent" fails after it.
    consumer.assign(&[("absent", 0), ("present", 0), ("zzz-absent", 0)]);
    let mut offsets = Vec::new();
    for _ in 0..20 {
        let records = consumer
            .poll(Duration::from_millis(100))
            .await
            .expect("the present partition's records, not the absent one's error");
        offsets.extend(records.iter().map(|r| r.offset));
        if offsets.len() >= 5 {
            break;
        }
    }
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    assert!(
        consumer.poll(Duration::from_millis(100)).await.is_err(),
        "with nothing fetched, the failure is reported"
    );
}

/// The producers in partition 0 of `topic` as its leader describes them:
/// (producer id, last sequence).
async fn producers(addr: &str, topic: &str) -> Vec<(i64, i32)> {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::DescribeProducersRequest;
    let mut conn = client::Connection::connect(addr).await.unwrap();
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(common::topic(topic))
        .with_partition_indexes(vec![0])]);
    let r = conn.send(&request, 0).await.unwrap();
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.active_producers
        .iter()
        .map(|a| (a.producer_id.0, a.last_sequence))
        .collect()
}

/// Claim 8's default: the Rust producer is idempotent unless turned off.
/// Its batches carry one producer id with gap-free sequences (the leader's
/// producer state ends at the last record's sequence); turned off, they
/// carry none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_producer_is_idempotent() {
    let baton = Baton::start(&[]);
    for (topic, config) in [
        ("on", ProducerConfig::new(&baton.addr)),
        (
            "off",
            ProducerConfig::new(&baton.addr).enable_idempotence(false),
        ),
    ] {
        let producer = Producer::new(config).await.unwrap();
        let mut deliveries = Vec::new();
        for i in 0..2_000 {
            let record = Record::new(topic, format!("{i}").into_bytes()).with_partition(0);
            deliveries.push(producer.send(record).await.unwrap());
        }
        for (i, d) in deliveries.into_iter().enumerate() {
            assert_eq!(d.await.unwrap().offset, i as i64, "{topic}: in send order");
        }
        let found = producers(&baton.addr, topic).await;
        match topic {
            "on" => assert!(
                matches!(found.as_slice(), [(id, 1_999)] if *id >= 0),
                "{found:?}"
            ),
            _ => assert!(found.is_empty(), "{found:?}"),
        }
    }
}
