//! Claim 8 on one broker, on the wire: InitProducerId ids are unique and
//! survive restarts, a retried batch is stored once at its original offset
//! (also after a SIGKILL and a restart), and bad producer batches get
//! Kafka's error codes with the log unchanged.

mod common;

use bytes::Bytes;
use client::Connection;
use common::*;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use kafka_protocol::ResponseError;
use storage::batch::{build_batch, with_producer};

async fn init_producer_id(conn: &mut Connection) -> i64 {
    let request = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = conn.send(&request, 4).await.expect("InitProducerId");
    assert_eq!(r.error_code, 0);
    r.producer_id.0
}

/// Two records from `pid` in `epoch` at `seq`.
fn idempotent(pid: i64, epoch: i16, seq: i32) -> Bytes {
    with_producer(&build_batch(&[b"a", b"b"], 1_000), pid, epoch, seq).into()
}

async fn log_end(conn: &mut Connection, name: &str) -> i64 {
    let plain = build_batch(&[b"probe"], 1_000);
    let (code, base) = produce(conn, name, 0, plain.into()).await;
    assert_eq!(code, 0);
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim8_a_retry_is_stored_once_even_across_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let mut baton = Baton::start_in(&data.path().join("d"), &[]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "once", 1).await;
    let pid = init_producer_id(&mut conn).await;
    assert_ne!(
        init_producer_id(&mut conn).await,
        pid,
        "ids are never handed out twice"
    );
    assert_eq!(
        produce(&mut conn, "once", 0, idempotent(pid, 0, 0)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, "once", 0, idempotent(pid, 0, 2)).await,
        (0, 2)
    );
    // The retry of the first batch: its original offset, nothing stored.
    assert_eq!(
        produce(&mut conn, "once", 0, idempotent(pid, 0, 0)).await,
        (0, 0)
    );
    assert_eq!(log_end(&mut conn, "once").await, 4);
    baton.kill();
    let baton = Baton::start_in(&data.path().join("d"), &[]);
    let mut conn = baton.connect().await;
    assert_eq!(
        produce(&mut conn, "once", 0, idempotent(pid, 0, 2)).await,
        (0, 2),
        "after the crash"
    );
    assert_eq!(log_end(&mut conn, "once").await, 5);
    assert!(
        init_producer_id(&mut conn).await > pid,
        "ids stay unique across restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_producer_batches_get_kafkas_codes_and_change_nothing() {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "bad", 1).await;
    let pid = init_producer_id(&mut conn).await;
    assert_eq!(
        produce(&mut conn, "bad", 0, idempotent(pid, 1, 0)).await.0,
        0
    );
    let mut mixed = idempotent(pid, 1, 2).to_vec();
    mixed.extend(build_batch(&[b"plain"], 1_000));
    let cases: Vec<(&str, Bytes, ResponseError)> = vec![
        (
            "producer id without epoch",
            idempotent(pid, -1, 2),
            ResponseError::InvalidRecord,
        ),
        (
            "negative sequence",
            idempotent(pid, 1, -2),
            ResponseError::InvalidRecord,
        ),
        (
            "a plain batch mixed in",
            mixed.into(),
            ResponseError::InvalidRecord,
        ),
        (
            "gap",
            idempotent(pid, 1, 7),
            ResponseError::OutOfOrderSequenceNumber,
        ),
        (
            "older epoch",
            idempotent(pid, 0, 2),
            ResponseError::InvalidProducerEpoch,
        ),
        (
            "new epoch not at 0",
            idempotent(pid, 2, 2),
            ResponseError::OutOfOrderSequenceNumber,
        ),
        (
            "unknown producer past 0",
            idempotent(pid + 500, 0, 4),
            ResponseError::UnknownProducerId,
        ),
    ];
    for (name, records, expected) in cases {
        assert_eq!(
            produce(&mut conn, "bad", 0, records).await.0,
            expected.code(),
            "{name}"
        );
    }
    assert_eq!(
        log_end(&mut conn, "bad").await,
        2,
        "nothing refused was stored"
    );
    // A producer id the broker never issued, at sequence 0: accepted.
    assert_eq!(
        produce(&mut conn, "bad", 0, idempotent(pid + 900, 0, 0)).await,
        (0, 3)
    );
    assert_eq!(
        produce(&mut conn, "bad", 0, idempotent(pid, 1, 2)).await,
        (0, 5),
        "still in sequence"
    );
}

/// (producer id, epoch, last sequence) of partition 0's producers.
async fn producers(conn: &mut Connection, name: &str) -> Vec<(i64, i32, i32)> {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::DescribeProducersRequest;
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(topic(name))
        .with_partition_indexes(vec![0])]);
    let r = conn.send(&request, 0).await.expect("DescribeProducers");
    let p = &r.topics[0].partitions[0];
    p.active_producers
        .iter()
        .map(|a| (a.producer_id.0, a.producer_epoch, a.last_sequence))
        .collect()
}

/// KIP-360 end to end: a broker that forgot an idle producer
/// (producer.id.expiration.ms) answers its next batch UNKNOWN_PRODUCER_ID;
/// the Rust client bumps its epoch, starts again at sequence 0, and the
/// record is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_producer_starts_a_new_epoch() {
    let baton = Baton::start(&[
        "--producer-id-expiration-ms",
        "2000",
        "--producer-id-expiration-check-interval-ms",
        "100",
    ]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "expire", 1).await;
    let producer = client::Producer::new(client::ProducerConfig::new(&baton.addr))
        .await
        .unwrap();
    let send = |value: &'static str| {
        let record = client::Record::new("expire", value).with_partition(0);
        let producer = &producer;
        async move { producer.send(record).await.unwrap().await.unwrap().offset }
    };
    assert_eq!(send("first").await, 0);
    let [(pid, 0, 0)] = producers(&mut conn, "expire").await[..] else {
        panic!("one producer at epoch 0, sequence 0");
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !producers(&mut conn, "expire").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the producer never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(send("second").await, 1, "stored once, after the bump");
    assert_eq!(producers(&mut conn, "expire").await, vec![(pid, 1, 0)]);
}
