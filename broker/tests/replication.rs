//! Replication on a real cluster (`baton local-cluster`, 3 controllers, 3
//! brokers), under a continuous acks=all load that records every
//! acknowledgement. Each test is named after the claims it checks.

mod common;

use common::cluster::LocalCluster;
use common::{produce, try_produce};
use rustix::process::Signal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One cluster at a time (two starve each other's heartbeats on 2 cores).
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPIC: &str = "replicated";
const NOT_ENOUGH_REPLICAS: i16 = 19;

/// Acknowledged writes: value -> offset.
type Acks = Arc<Mutex<BTreeMap<u64, i64>>>;

async fn start() -> LocalCluster {
    LocalCluster::start_with_topic(TOPIC).await
}

/// The partition's leader as any of `alive` reports it.
async fn leader(cluster: &LocalCluster, alive: &[i32]) -> Option<i32> {
    cluster.leader_of(TOPIC, alive).await
}

/// A connection to the leader as the live brokers report it; `None` (after
/// a short pause when no leader is known) to try again.
async fn leader_connection(
    cluster: &LocalCluster,
    alive: &Mutex<Vec<i32>>,
) -> Option<client::Connection> {
    let alive_now = alive.lock().unwrap().clone();
    let Some(l) = leader(cluster, &alive_now).await else {
        tokio::time::sleep(Duration::from_millis(20)).await;
        return None;
    };
    client::Connection::connect(cluster.broker_addr(l))
        .await
        .ok()
}

/// Sends values 0, 1, 2, ... one record per batch with acks=all to the
/// current leader until `stop`, recording each acknowledged offset.
async fn load(
    cluster: Arc<LocalCluster>,
    alive: Arc<Mutex<Vec<i32>>>,
    acks: Acks,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut value = 0u64;
    while !*stop.borrow() {
        let attempt = async {
            let mut conn = leader_connection(&cluster, &alive).await?;
            let bytes = value.to_string().into_bytes();
            let batch = storage::batch::build_batch(&[&bytes], 0).into();
            try_produce(&mut conn, TOPIC, 0, batch).await
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            result = tokio::time::timeout(Duration::from_millis(2_000), attempt) => {
                if let Ok(Some((0, offset))) = result {
                    acks.lock().unwrap().insert(value, offset);
                }
            }
        }
        value += 1;
    }
}

/// Reads the partition from its current leader as a consumer until `stop`,
/// recording every (offset, value) it is given.
async fn consume(
    cluster: Arc<LocalCluster>,
    alive: Arc<Mutex<Vec<i32>>>,
    seen: Arc<Mutex<Vec<(i64, u64)>>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut next = 0i64;
    while !*stop.borrow() {
        let attempt = async {
            let mut conn = leader_connection(&cluster, &alive).await?;
            let request = common::fetch_request(TOPIC, 0, next, 100);
            let response = conn.send(&request, 12).await.ok()?;
            response.responses[0].partitions[0].records.clone()
        };
        let Ok(Some(mut bytes)) = tokio::time::timeout(Duration::from_millis(1_000), attempt).await
        else {
            continue;
        };
        while !bytes.is_empty() {
            let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) else {
                break;
            };
            for r in set.records {
                let value = std::str::from_utf8(&r.value.expect("value"))
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.lock().unwrap().push((r.offset, value));
                next = r.offset + 1;
            }
        }
    }
}

/// (offset, value) of every record in `dir`'s log below `end`, and the raw
/// bytes of that prefix.
fn read_log(dir: &std::path::Path, end: i64) -> (Vec<(i64, u64)>, Vec<u8>) {
    let fs = Arc::new(storage::fs::OsFs);
    let log = storage::Log::open(fs, dir, storage::LogConfig::default()).expect("open log");
    let (mut records, mut raw) = (Vec::new(), Vec::new());
    let mut offset = log.log_start_offset();
    while offset < end.min(log.log_end_offset()) {
        let read = log.read(offset, 1 << 20, end).expect("read");
        if read.bytes.is_empty() {
            break;
        }
        raw.extend_from_slice(&read.bytes);
        let mut bytes = bytes::Bytes::from(read.bytes);
        while !bytes.is_empty() {
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decode");
            for r in set.records {
                let value = r.value.expect("value");
                let value = std::str::from_utf8(&value).unwrap().parse().unwrap();
                records.push((r.offset, value));
                offset = r.offset + 1;
            }
        }
    }
    (records, raw)
}

/// Every acknowledged value is at its acknowledged offset (claim 4),
/// offsets run from 0 without a gap (claim 5), every record a consumer was
/// given is still there at its offset (claim 6), and all `dirs` hold the
/// same bytes up to `hw` (claim 7).
fn check_logs(
    dirs: &[std::path::PathBuf],
    hw: i64,
    acks: &BTreeMap<u64, i64>,
    consumed: &[(i64, u64)],
) {
    eprintln!(
        "checking {} acknowledged writes below the HW {hw} on {} replicas",
        acks.len(),
        dirs.len()
    );
    let (records, raw) = read_log(&dirs[0].join(format!("{TOPIC}-0")), hw);
    assert_eq!(
        records.len() as i64,
        hw,
        "every offset below the HW is there"
    );
    for (i, (offset, _)) in records.iter().enumerate() {
        assert_eq!(*offset, i as i64, "offsets are contiguous");
    }
    let at: BTreeMap<i64, u64> = records.iter().copied().collect();
    for (value, offset) in acks {
        assert_eq!(
            at.get(offset),
            Some(value),
            "acknowledged {value} at {offset}"
        );
    }
    for (offset, value) in consumed {
        assert_eq!(
            at.get(offset),
            Some(value),
            "consumed {value} at {offset}, then lost"
        );
    }
    for dir in &dirs[1..] {
        let (_, other) = read_log(&dir.join(format!("{TOPIC}-0")), hw);
        assert!(other == raw, "{} differs below the HW", dir.display());
    }
}

/// Claim 2 from the brokers' own logs: no two brokers' serve windows for
/// the partition overlap (one machine, one wall clock).
fn check_serve_windows(brokers: &[(i32, std::path::PathBuf)]) {
    let mut windows = Vec::new();
    for (broker, dir) in brokers {
        // A broker that never led has no file.
        let read = broker::serve_windows::read(dir).unwrap_or_default();
        for w in read.get(&format!("{TOPIC}-0")).into_iter().flatten() {
            windows.push((*broker, *w));
        }
    }
    assert!(windows.len() >= 2, "leadership moved: {windows:?}");
    for (a, wa) in &windows {
        for (b, wb) in &windows {
            if a != b {
                assert!(
                    wa.last_ms < wb.first_ms || wb.last_ms < wa.first_ms,
                    "broker {a} {wa:?} and broker {b} {wb:?} served at once"
                );
            }
        }
    }
}

/// The HW as the leader reports it, once every broker in `isr` is back in
/// the ISR.
async fn healed(cluster: &LocalCluster, want_isr: usize, within: Duration) -> i64 {
    let start = Instant::now();
    loop {
        if let Some(l) = leader(cluster, &[1, 2, 3]).await {
            let p = &cluster.describe(l, TOPIC).await[0];
            if p.isr.len() == want_isr {
                let mut conn = client::Connection::connect(cluster.broker_addr(l))
                    .await
                    .expect("connect");
                let response = conn
                    .send(&common::fetch_request(TOPIC, 0, 0, 0), 12)
                    .await
                    .expect("fetch");
                return response.responses[0].partitions[0].high_watermark;
            }
        }
        assert!(start.elapsed() < within, "the ISR did not heal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the load and a consumer while `fault` runs; returns the
/// acknowledgements and what the consumer was given.
async fn under_load<F, Fut>(
    cluster: Arc<LocalCluster>,
    fault: F,
) -> (BTreeMap<u64, i64>, Vec<(i64, u64)>)
where
    F: FnOnce(Arc<LocalCluster>, Arc<Mutex<Vec<i32>>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let acks: Acks = Arc::default();
    let alive = Arc::new(Mutex::new(vec![1, 2, 3]));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumed = Arc::new(Mutex::new(Vec::new()));
    let reader = tokio::spawn(consume(
        cluster.clone(),
        alive.clone(),
        consumed.clone(),
        stopped.clone(),
    ));
    let writer = tokio::spawn(load(cluster.clone(), alive.clone(), acks.clone(), stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault(cluster, alive).await;
    stop.send_replace(true);
    writer.await.expect("writer");
    reader.await.expect("reader");
    let acks = acks.lock().unwrap().clone();
    let consumed = consumed.lock().unwrap().clone();
    assert!(!consumed.is_empty(), "the consumer read something");
    (acks, consumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_4_5_6_7_killed_leader_loses_no_acknowledged_write() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = Arc::new(start().await);
    let killed = Arc::new(Mutex::new(0));
    let k = killed.clone();
    let (acks, consumed) = under_load(cluster.clone(), |cluster, alive| async move {
        let l = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
        *k.lock().unwrap() = l;
        alive.lock().unwrap().retain(|b| *b != l);
        cluster.signal_broker(l, Signal::KILL);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    })
    .await;
    let killed = *killed.lock().unwrap();
    let hw = healed(&cluster, 2, Duration::from_secs(15)).await;
    let survivors: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != killed).collect();
    let (_dir, logs) = Arc::into_inner(cluster).expect("sole owner").stop();
    let dirs: Vec<_> = logs
        .into_iter()
        .filter(|(b, _)| survivors.contains(b))
        .map(|(_, d)| d)
        .collect();
    assert!(acks.len() > 20, "the load made progress: {}", acks.len());
    assert!(
        acks.values()
            .any(|o| *o > acks.values().next().copied().unwrap_or(0) + 5),
        "writes were acknowledged after the kill too"
    );
    check_logs(&dirs, hw, &acks, &consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_2_3_6_7_frozen_leader_serves_nothing_then_truncates_and_rejoins() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = Arc::new(start().await);
    let (acks, consumed) = under_load(cluster.clone(), |cluster, alive| async move {
        let l = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
        let old_epoch = cluster.describe(l, TOPIC).await[0].leader_epoch;
        alive.lock().unwrap().retain(|b| *b != l);
        cluster.signal_broker(l, Signal::STOP);
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        cluster.signal_broker(l, Signal::CONT);
        // The thawed zombie, asked with its old epoch, accepts nothing.
        let mut conn = client::Connection::connect(cluster.broker_addr(l))
            .await
            .expect("connect");
        let mut batch = storage::batch::build_batch(&[b"zombie"], 0);
        storage::batch::stamp(&mut batch, 0, old_epoch);
        let (code, _) = produce(&mut conn, TOPIC, 0, batch.into()).await;
        let refused = [
            kafka_protocol::ResponseError::NotLeaderOrFollower.code(),
            kafka_protocol::ResponseError::FencedLeaderEpoch.code(),
        ];
        assert!(refused.contains(&code), "the old leader answered {code}");
        alive.lock().unwrap().push(l);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    })
    .await;
    // It truncates what it had alone, fetches, and rejoins the ISR.
    let hw = healed(&cluster, 3, Duration::from_secs(20)).await;
    let (_dir, logs) = Arc::into_inner(cluster).expect("sole owner").stop();
    check_serve_windows(&logs);
    let dirs: Vec<_> = logs.into_iter().map(|(_, d)| d).collect();
    assert!(acks.len() > 20, "the load made progress: {}", acks.len());
    check_logs(&dirs, hw, &acks, &consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_4_fewer_live_isr_members_than_min_insync_is_refused() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = start().await;
    let l = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
    let followers: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != l).collect();
    for f in &followers {
        cluster.signal_broker(*f, Signal::STOP);
    }
    // Appended while the ISR still had three members; the ISR shrinks to
    // the leader alone before the followers could copy it: the high
    // watermark passes, but the write is on one replica only.
    let mut early = client::Connection::connect(cluster.broker_addr(l))
        .await
        .expect("connect");
    let batch = storage::batch::build_batch(&[b"early"], 0);
    let (code, _) = produce(&mut early, TOPIC, 0, batch.into()).await;
    assert_eq!(
        code,
        kafka_protocol::ResponseError::NotEnoughReplicasAfterAppend.code(),
        "never a false success"
    );
    let start = Instant::now();
    loop {
        if cluster.describe(l, TOPIC).await[0].isr == vec![l] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "followers were not fenced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = client::Connection::connect(cluster.broker_addr(l))
        .await
        .expect("connect");
    let batch = storage::batch::build_batch(&[b"alone"], 0);
    let (code, _) = produce(&mut conn, TOPIC, 0, batch.into()).await;
    assert_eq!(code, NOT_ENOUGH_REPLICAS, "never a false success");
    for f in &followers {
        cluster.signal_broker(*f, Signal::CONT);
    }
    let start = Instant::now();
    loop {
        let batch = storage::batch::build_batch(&[b"back"], 0);
        if produce(&mut conn, TOPIC, 0, batch.into()).await.0 == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "writes did not resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// librdkafka (confluent-kafka) and kafka-python producers and consumers
/// keep working across a kill -9 of the leader (the producers write
/// `partitionLeaderEpoch` 0, no token): each client's consumer, reading
/// while its producer writes, is given every acknowledged record at its
/// offset; and a batch carrying an older epoch than the leader's is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_keep_working_across_a_leader_kill() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = start().await;
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/clients/failover.py");
    assert!(python.exists(), "run scripts/setup-test-deps.sh");
    let old = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
    let old_epoch = cluster.describe(old, TOPIC).await[0].leader_epoch;
    let bootstrap: Vec<String> = [1, 2, 3]
        .into_iter()
        .map(|b| cluster.broker_addr(b).to_string())
        .collect();
    // Both clients at once, through one kill of the leader.
    let runs: Vec<_> = ["confluent", "kafka-python"]
        .into_iter()
        .map(|client| {
            let child = std::process::Command::new(&python)
                .arg(&script)
                .args([client, &bootstrap.join(","), TOPIC, "4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run failover.py");
            (client, child)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cluster.signal_broker(old, Signal::KILL);
    for (client, run) in runs {
        let out = tokio::task::spawn_blocking(move || run.wait_with_output())
            .await
            .unwrap()
            .expect("failover.py");
        let delivered = common::delivered(&out, client);
        eprintln!(
            "{client}: {delivered} acknowledged records read back at their offsets {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(delivered > 100, "{client} delivered {delivered}");
    }
    // A batch stamped with the old leader's epoch is fenced by the new one.
    let alive: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != old).collect();
    let new = leader(&cluster, &alive).await.expect("a new leader");
    assert_ne!(new, old);
    let mut conn = client::Connection::connect(cluster.broker_addr(new))
        .await
        .expect("connect");
    let mut batch = storage::batch::build_batch(&[b"stale"], 0);
    storage::batch::stamp(&mut batch, 0, old_epoch);
    let (code, _) = produce(&mut conn, TOPIC, 0, batch.into()).await;
    assert_eq!(
        code,
        kafka_protocol::ResponseError::FencedLeaderEpoch.code()
    );
}

/// Claim 10: a follower's segment tail corrupted on disk while it is down
/// is cut at restart (the checksum fails), fetched again from the leader,
/// and the replicas end byte-identical below the high watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_10_corrupt_follower_tail_is_truncated_and_fetched_again() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = start().await;
    let l = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
    let f = [1, 2, 3].into_iter().find(|b| *b != l).expect("a follower");
    let mut conn = client::Connection::connect(cluster.broker_addr(l))
        .await
        .expect("connect");
    let mut acks = BTreeMap::new();
    for value in 0..200u64 {
        let bytes = value.to_string().into_bytes();
        let batch = storage::batch::build_batch(&[&bytes], 0);
        let (code, offset) = produce(&mut conn, TOPIC, 0, batch.into()).await;
        assert_eq!(code, 0);
        acks.insert(value, offset);
    }
    cluster.signal_broker(f, Signal::KILL);
    let segment = cluster
        .broker_dir(f)
        .join(format!("{TOPIC}-0/00000000000000000000.log"));
    let mut bytes = std::fs::read(&segment).expect("segment");
    let len = bytes.len();
    for b in &mut bytes[len - 30..] {
        *b ^= 0x5a;
    }
    std::fs::write(&segment, &bytes).expect("corrupt the tail");
    cluster.restart_broker(f);
    let hw = healed(&cluster, 3, Duration::from_secs(20)).await;
    assert_eq!(hw, 200);
    let (_dir, logs) = cluster.stop();
    let dirs: Vec<_> = logs.into_iter().map(|(_, d)| d).collect();
    check_logs(&dirs, hw, &acks, &[]);
}

/// Baton's Rust producer across a kill -9 of the leader: every send is
/// acknowledged (retries follow the new leader, by KIP-951 hint or by
/// metadata), each at the offset the log holds it at (claims 4, 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_producer_follows_the_leader_across_a_kill() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = start().await;
    let old = leader(&cluster, &[1, 2, 3]).await.expect("a leader");
    let bootstrap: Vec<String> = [1, 2, 3]
        .into_iter()
        .map(|b| cluster.broker_addr(b).to_string())
        .collect();
    let mut config = client::ProducerConfig::new(&bootstrap.join(","));
    config.retries = 100;
    let producer = client::Producer::new(config).await.expect("producer");
    let mut deliveries = Vec::new();
    let start = Instant::now();
    let mut killed = false;
    let mut value = 0u64;
    while start.elapsed() < Duration::from_millis(3_000) {
        if !killed && start.elapsed() > Duration::from_millis(1_000) {
            cluster.signal_broker(old, Signal::KILL);
            killed = true;
        }
        let record = client::Record::new(TOPIC, value.to_string()).with_partition(0);
        deliveries.push((value, producer.send(record).await.expect("send")));
        value += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut acks = BTreeMap::new();
    for (value, delivery) in deliveries {
        let stored = delivery.await.expect("every send is acknowledged");
        acks.insert(value, stored.offset);
    }
    let hw = healed(&cluster, 2, Duration::from_secs(15)).await;
    let survivors: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != old).collect();
    let (_dir, logs) = cluster.stop();
    let dirs: Vec<_> = logs
        .into_iter()
        .filter(|(b, _)| survivors.contains(b))
        .map(|(_, d)| d)
        .collect();
    check_logs(&dirs, hw, &acks, &[]);
}
