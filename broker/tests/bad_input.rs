//! Bad input gets a clear error or a closed connection; the broker keeps
//! serving every other connection and no stored data changes.

mod common;

use bytes::Bytes;
use client::Connection;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use std::time::Duration;
use storage::batch::{build_batch, stamp};
use tokio::io::AsyncWriteExt;

/// A request frame: size prefix, header v1 (key, version, correlation id,
/// null client id), then `body`.
fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&42i32.to_be_bytes());
    payload.extend_from_slice(&(-1i16).to_be_bytes());
    payload.extend_from_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

/// Every byte of the `data` topic, read back through Fetch.
async fn stored(conn: &mut Connection) -> Vec<u8> {
    let r = conn
        .send(&fetch_request("data", 0, 0, 0), 12)
        .await
        .expect("fetch");
    r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default()
        .to_vec()
}

/// The broker still answers a new connection, and `data` is unchanged.
async fn still_healthy(baton: &mut Baton, before: &[u8], case: &str) {
    assert!(baton.is_running(), "{case}: the broker died");
    let mut conn = baton.connect().await;
    let r = conn.send(&ApiVersionsRequest::default(), 3).await;
    assert!(
        r.is_ok_and(|r| r.error_code == 0),
        "{case}: broker stopped serving"
    );
    assert_eq!(
        stored(&mut conn).await,
        before,
        "{case}: stored data changed"
    );
}

/// Sends raw bytes on a new connection; Ok(Some) is a response, Ok(None)
/// a closed connection.
async fn raw(baton: &Baton, bytes: &[u8]) -> Option<Bytes> {
    let mut conn = baton.connect().await;
    tokio::time::timeout(Duration::from_secs(10), conn.send_raw(bytes))
        .await
        .expect("the broker neither answered nor closed")
        .unwrap_or(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_the_connection_and_nothing_else() {
    let mut baton = Baton::start(&["--socket-request-max-bytes", "1048576"]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "data", 1).await;
    for i in 0..3u8 {
        let (code, _) = produce(&mut conn, "data", 0, build_batch(&[&[i; 100]], 0).into()).await;
        assert_eq!(code, 0);
    }
    let before = stored(&mut conn).await;
    assert!(!before.is_empty());

    let mut noise = vec![0u8; 256];
    let mut x: u32 = 0x9e37_79b9;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let huge_array = frame(3, 1, &i32::MAX.to_be_bytes()); // Metadata v1: topics count
    let huge_compact = frame(0, 9, &[0, 0xff, 0xff, 0xff, 0xff, 0x07]); // Produce v9 flexible
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", noise),
        ("size over the limit", (2_000_000i32).to_be_bytes().to_vec()),
        ("size i32::MAX", i32::MAX.to_be_bytes().to_vec()),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "frame shorter than a header",
            [4i32.to_be_bytes(), [0, 3, 0, 1]].concat(),
        ),
        ("unknown API key", frame(9_999, 0, &[])),
        ("unsupported version", frame(3, 99, &[])),
        ("unadvertised API", frame(22, 1, &[])), // InitProducerId
        ("array count larger than the frame", huge_array),
        ("compact array count larger than the frame", huge_compact),
        ("truncated body", frame(3, 1, &[0, 0, 0, 2, 0, 3, b'a'])),
    ];
    for (case, bytes) in cases {
        let answer = raw(&baton, &bytes).await;
        assert!(
            answer.is_none(),
            "{case}: expected the connection to close, got {answer:?}"
        );
        still_healthy(&mut baton, &before, case).await;
    }

    // A frame cut short by the client closing its side.
    let mut stream = tokio::net::TcpStream::connect(&baton.addr).await.unwrap();
    stream.write_all(&[0, 0, 0, 100, 0, 3, 0, 1]).await.unwrap();
    stream.shutdown().await.unwrap();
    drop(stream);
    still_healthy(&mut baton, &before, "frame cut short").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_error_code() {
    let mut baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "data", 1).await;
    produce(&mut conn, "data", 0, build_batch(&[b"kept"], 0).into()).await;
    let before = stored(&mut conn).await;

    let mut bad_crc = build_batch(&[b"value"], 0);
    *bad_crc.last_mut().unwrap() ^= 0xff;
    let mut magic1 = build_batch(&[b"value"], 0);
    magic1[16] = 1;
    let mut newer_epoch = build_batch(&[b"value"], 0);
    stamp(&mut newer_epoch, 0, 5);
    let produce_cases: Vec<(&str, &str, i32, Vec<u8>, ResponseError)> = vec![
        ("bad CRC", "data", 0, bad_crc, ResponseError::CorruptMessage),
        (
            "magic 1",
            "data",
            0,
            magic1,
            ResponseError::UnsupportedForMessageFormat,
        ),
        (
            "truncated batch",
            "data",
            0,
            build_batch(&[b"v"], 0)[..40].to_vec(),
            ResponseError::CorruptMessage,
        ),
        (
            "unknown topic",
            "nope",
            0,
            build_batch(&[b"v"], 0),
            ResponseError::UnknownTopicOrPartition,
        ),
        (
            "unknown partition",
            "data",
            7,
            build_batch(&[b"v"], 0),
            ResponseError::UnknownTopicOrPartition,
        ),
        (
            "epoch newer than the leader's",
            "data",
            0,
            newer_epoch,
            ResponseError::UnknownLeaderEpoch,
        ),
    ];
    for (case, name, partition, records, expected) in produce_cases {
        let (code, _) = produce(&mut conn, name, partition, records.into()).await;
        assert_eq!(code, expected.code(), "{case}");
        still_healthy(&mut baton, &before, case).await;
    }

    for bad_name in ["", "has space", "sl/ash", &"x".repeat(250)] {
        let t = create_topics_request::CreatableTopic::default()
            .with_name(topic(bad_name))
            .with_num_partitions(1)
            .with_replication_factor(1);
        let r = conn
            .send(&CreateTopicsRequest::default().with_topics(vec![t]), 7)
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].error_code,
            ResponseError::InvalidTopicException.code(),
            "create {bad_name:?}"
        );
        let t = metadata_request::MetadataRequestTopic::default().with_name(Some(topic(bad_name)));
        let r = conn
            .send(
                &MetadataRequest::default()
                    .with_topics(Some(vec![t]))
                    .with_allow_auto_topic_creation(true),
                12,
            )
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].error_code,
            ResponseError::InvalidTopicException.code(),
            "metadata {bad_name:?}"
        );
    }
    let t = create_topics_request::CreatableTopic::default()
        .with_name(topic("rf3"))
        .with_num_partitions(1)
        .with_replication_factor(3);
    let r = conn
        .send(&CreateTopicsRequest::default().with_topics(vec![t]), 7)
        .await
        .unwrap();
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::InvalidReplicationFactor.code()
    );

    for offset in [-1, 2, 1_000] {
        let r = conn
            .send(&fetch_request("data", 0, offset, 0), 12)
            .await
            .unwrap();
        let p = &r.responses[0].partitions[0];
        assert_eq!(
            p.error_code,
            ResponseError::OffsetOutOfRange.code(),
            "fetch at {offset}"
        );
    }
    let r = conn
        .send(&fetch_request("nope", 0, 0, 0), 12)
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let mut stale = fetch_request("data", 0, 0, 0);
    stale.topics[0].partitions[0].current_leader_epoch = 9;
    let r = conn.send(&stale, 12).await.unwrap();
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        ResponseError::UnknownLeaderEpoch.code()
    );
    still_healthy(&mut baton, &before, "after error responses").await;
}

/// Clients without an epoch token (librdkafka and kafka-python write 0,
/// others -1) are not checked; the leader's own epoch is accepted.
#[tokio::test]
async fn epoch_tokens_zero_and_minus_one_are_not_checked() {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, "tokens", 1).await;
    for (epoch, offset) in [(0, 0), (-1, 1), (1, 2)] {
        let mut batch = build_batch(&[b"v"], 0);
        stamp(&mut batch, 0, epoch);
        assert_eq!(
            produce(&mut conn, "tokens", 0, batch.into()).await,
            (0, offset),
            "epoch {epoch}"
        );
    }
}

/// Wrong config: a second broker on a data directory in use is refused
/// with a clear error, and the first keeps serving.
#[tokio::test]
async fn a_second_broker_on_the_same_data_dir_is_refused() {
    let mut baton = Baton::start(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "--data-dir",
            baton.data_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another process"), "{err}");
    still_healthy(&mut baton, &[], "second broker refused").await;
}
