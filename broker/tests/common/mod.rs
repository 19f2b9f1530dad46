//! Runs the real `baton` binary on a free loopback port with its own data
//! directory, and builds the requests the tests send.
#![allow(dead_code)] // each test binary uses part of this

pub mod cluster;
pub mod group;
pub mod member_logs;
pub mod rust_member;

use bytes::Bytes;
use client::Connection;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `baton` process; killed when dropped.
pub struct Baton {
    child: Child,
    /// `host:port` of its Kafka listener.
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Baton {
    /// Starts a broker with a fresh data directory.
    pub fn start(extra: &[&str]) -> Baton {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut baton = Baton::start_in(&tmp.path().join("data"), extra);
        baton._tmp = Some(tmp);
        baton
    }

    /// Starts a broker on `data_dir` (kept after it stops).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Baton {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "--data-dir",
                data_dir.to_str().expect("utf-8 path"),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("BATON_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start baton");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("baton listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("baton did not start listening");
        Baton {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` to the process (STOP freezes it, CONT thaws it).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("signal baton");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A new connection.
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.addr).await.expect("connect")
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

pub fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

/// Creates a topic through CreateTopics v7 and checks it worked.
pub async fn create_topic(conn: &mut Connection, name: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(5_000);
    let response = conn.send(&request, 7).await.expect("create topic");
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

/// A Produce request for one partition.
pub fn produce_request(name: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Produces one batch at Produce v9; (error code, base offset).
pub async fn produce(
    conn: &mut Connection,
    name: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    let response: ProduceResponse = conn
        .send(&produce_request(name, partition, records, -1), 9)
        .await
        .expect("produce");
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// As [`produce`], `None` if the connection fails (the broker died).
pub async fn try_produce(
    conn: &mut Connection,
    name: &str,
    partition: i32,
    records: Bytes,
) -> Option<(i16, i64)> {
    let request = produce_request(name, partition, records, -1);
    let response: ProduceResponse = conn.send(&request, 9).await.ok()?;
    let p = &response.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset))
}

/// A Fetch request for one partition.
pub fn fetch_request(name: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])])
}

/// Waits for `f` to be true, polling; panics after `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The count a client script reports as `delivered N` on success
/// (`scripts/clients/failover.py`); panics with its output otherwise.
pub fn delivered(out: &std::process::Output, what: &str) -> usize {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("delivered "))
        .and_then(|n| n.parse().ok())
        .expect("a count")
}
