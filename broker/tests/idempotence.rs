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
