//! Consumer groups on a 3-broker, 3-controller local cluster, through real
//! clients (confluent-kafka, kafka-python) run as separate member processes
//! that log what they are given (`scripts/clients/group_member.py`):
//! - a member killed with SIGKILL: the others take its partitions; no two
//!   members ever own one partition at once; every acknowledged record is
//!   consumed at its offset; no committed offset is lost;
//! - the coordinator's broker killed: members find the new coordinator,
//!   rejoin, and resume from the committed offsets, skipping nothing;
//! - a frozen coordinator that comes back refuses commits (NOT_COORDINATOR).

mod common;

use common::cluster::LocalCluster;
use common::member_logs::{overlaps, MemberLog};
use rustix::process::Signal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One cluster at a time: two on 2 cores starve each other's heartbeats.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const SESSION_MS: u64 = 2_000;

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python")
}

/// A group member: a real client's process, or our Rust consumer as a task
/// (`client` "rust"), whose crash is aborting the task.
enum Member {
    Process(Child),
    Task(tokio::task::JoinHandle<()>, Arc<AtomicBool>),
}

impl Member {
    fn start(client: &str, bootstrap: &str, group: &str, log: &Path, assignor: &str) -> Member {
        if client == "rust" {
            let stop = Arc::new(AtomicBool::new(false));
            let session = Duration::from_millis(SESSION_MS);
            let task =
                common::rust_member::spawn(bootstrap, group, TOPIC, log, session, stop.clone());
            return Member::Task(task, stop);
        }
        Member::Process(member(client, bootstrap, group, log, assignor))
    }

    fn kill(&mut self) {
        match self {
            Member::Process(child) => {
                child.kill().expect("kill member");
                let _ = child.wait();
            }
            Member::Task(task, _) => task.abort(),
        }
    }

    /// Asks it to stop: a last commit, then LeaveGroup.
    fn stop(&mut self) {
        match self {
            Member::Process(child) => {
                let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
                let _ = rustix::process::kill_process(pid, Signal::TERM);
            }
            Member::Task(_, stop) => stop.store(true, Ordering::Relaxed),
        }
    }

    /// Asks a client process to print its threads' stacks to its stderr.
    fn dump_stacks(&self) {
        if let Member::Process(child) = self {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, Signal::USR1);
            }
        }
    }

    /// "running", or how its process ended.
    fn status(&mut self) -> String {
        match self {
            Member::Process(child) => match child.try_wait() {
                Ok(None) => "running".to_string(),
                Ok(Some(status)) => format!("exited ({status})"),
                Err(e) => format!("unknown ({e})"),
            },
            Member::Task(task, _) if task.is_finished() => "ended".to_string(),
            Member::Task(..) => "running".to_string(),
        }
    }

    async fn wait(&mut self) {
        match self {
            Member::Process(child) => {
                let _ = child.wait();
            }
            Member::Task(task, _) => {
                let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // A failed test leaves no client process behind.
        if let Member::Process(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn member(client: &str, bootstrap: &str, group: &str, log: &Path, assignor: &str) -> Child {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/clients/group_member.py");
    Command::new(python())
        .arg(script)
        .args([client, bootstrap, group, TOPIC])
        .arg(log)
        .args([&SESSION_MS.to_string(), assignor])
        .stderr(stderr_file(log))
        .spawn()
        .expect("start a group member")
}

/// The member's stderr goes beside its log, for a failure report.
fn stderr_file(log: &Path) -> std::process::Stdio {
    std::fs::File::create(log.with_extension("jsonl.stderr"))
        .map_or_else(|_| std::process::Stdio::inherit(), Into::into)
}

fn bootstrap_of(cluster: &LocalCluster) -> String {
    let addrs: Vec<&str> = [1, 2, 3].iter().map(|b| cluster.broker_addr(*b)).collect();
    addrs.join(",")
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// acks=all writes to every partition until stopped: (partition, offset) ->
/// value of each acknowledged one.
type Acked = Arc<Mutex<BTreeMap<(i32, i64), String>>>;

async fn produce_until(bootstrap: String, stop: Arc<AtomicBool>, acked: Acked) {
    let mut config = client::ProducerConfig::new(&bootstrap);
    config.retries = 100;
    let producer = client::Producer::new(config).await.expect("producer");
    let mut pending = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let value = format!("v-{i}");
        let record = client::Record::new(TOPIC, value.clone()).with_partition((i % 6) as i32);
        if let Ok(delivery) = producer.send(record).await {
            pending.push((value, delivery));
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (value, delivery) in pending {
        if let Ok(meta) = delivery.await {
            acked
                .lock()
                .unwrap()
                .insert((meta.partition, meta.offset), value);
        }
    }
}

struct Run {
    cluster: LocalCluster,
    group: String,
    bootstrap: String,
    dir: tempfile::TempDir,
    members: Vec<Member>,
    ended: Vec<Option<i64>>,
    stop: Arc<AtomicBool>,
    acked: Acked,
    producer: tokio::task::JoinHandle<()>,
}

impl Run {
    async fn start(client: &str, assignor: &str, group: &str) -> Run {
        // The coordinator's INFO lines (generations stored, sessions run
        // out) are the broker's side of a failed run.
        let cluster = LocalCluster::start_filtered(3, 3, "warn,broker::coordinator=info");
        let bootstrap = bootstrap_of(&cluster);
        let mut admin = client::Admin::connect(&bootstrap).await.expect("admin");
        admin
            .create_topic(TOPIC, PARTITIONS, 3, &[])
            .await
            .expect("create topic");
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Acked::default());
        let producer = tokio::spawn(produce_until(
            bootstrap.clone(),
            stop.clone(),
            acked.clone(),
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let members = (0..3)
            .map(|i| {
                Member::start(
                    client,
                    &bootstrap,
                    group,
                    &dir.path().join(format!("m{i}.jsonl")),
                    assignor,
                )
            })
            .collect();
        Run {
            cluster,
            group: group.to_string(),
            bootstrap,
            dir,
            members,
            ended: vec![None; 3],
            stop,
            acked,
            producer,
        }
    }

    fn logs(&self) -> Vec<MemberLog> {
        (0..self.members.len())
            .map(|i| MemberLog::read(&self.dir.path().join(format!("m{i}.jsonl"))))
            .collect()
    }

    /// Waits until the live members' current assignments cover every
    /// partition exactly once (each live member owning some); the time.
    fn wait_assigned(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            let live: Vec<&MemberLog> = logs
                .iter()
                .enumerate()
                .filter(|(i, _)| self.ended[*i].is_none())
                .map(|(_, l)| l)
                .collect();
            let mut owners = BTreeMap::new();
            for l in &live {
                for p in l.current() {
                    *owners.entry(p).or_insert(0) += 1;
                }
            }
            let covered = owners.len() == PARTITIONS as usize && owners.values().all(|n| *n == 1);
            if covered && live.iter().all(|l| !l.current().is_empty()) {
                return start.elapsed();
            }
            if start.elapsed() >= timeout {
                panic!(
                    "partitions not reassigned in {timeout:?}: {owners:?}\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Each member's state for a failure message: whether its process is
    /// still running, what it owns, and the tails of its client library's
    /// log and its stderr.
    fn report(&mut self) -> String {
        let logs = self.logs();
        let mut text = self.group_described();
        // Read before the stack dumps: dumping every thread from a signal
        // handler can itself crash a client.
        let statuses: Vec<String> = self.members.iter_mut().map(Member::status).collect();
        for m in &self.members {
            m.dump_stacks();
        }
        std::thread::sleep(Duration::from_millis(500));
        for (i, status) in statuses.iter().enumerate() {
            let path = self.dir.path().join(format!("m{i}.jsonl"));
            text += &format!("member {i}: {status}, owns {:?}\n", logs[i].current());
            for (side, tail) in [("jsonl.client", 40), ("jsonl.stderr", 100)] {
                let lines = std::fs::read_to_string(path.with_extension(side)).unwrap_or_default();
                let lines: Vec<&str> = lines.lines().collect();
                for line in &lines[lines.len().saturating_sub(tail)..] {
                    text += &format!("  [{side}] {line}\n");
                }
            }
        }
        text
    }

    /// The coordinator's view of the group (`baton admin group describe`).
    fn group_described(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["admin", "--bootstrap", &self.bootstrap, "group", "describe"])
            .arg(&self.group)
            .output();
        match out {
            Ok(o) => format!(
                "the coordinator's view:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("group describe failed: {e}\n"),
        }
    }

    fn kill_member(&mut self, i: usize) {
        self.members[i].kill();
        self.ended[i] = Some(wall_ms());
    }

    /// Stops producing, waits until the members consumed every
    /// acknowledged record, stops them (SIGTERM: a last commit, then
    /// LeaveGroup) and checks the group from their logs.
    async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        (&mut self.producer).await.expect("producer");
        let acked = self.acked.lock().unwrap().clone();
        assert!(
            acked.len() > 100,
            "too few acknowledged writes: {}",
            acked.len()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let consumed: BTreeMap<(i32, i64), String> =
                self.logs().into_iter().flat_map(|l| l.consumed).collect();
            let missing: Vec<_> = acked
                .keys()
                .filter(|k| !consumed.contains_key(k))
                .take(5)
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "acknowledged records never consumed, e.g. {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (i, m) in self.members.iter_mut().enumerate() {
            if self.ended[i].is_none() {
                m.stop();
            }
        }
        for m in &mut self.members {
            m.wait().await;
        }
        let end = wall_ms();
        let ended: Vec<Option<i64>> = self.ended.iter().map(|e| e.or(Some(end))).collect();
        let logs = self.logs();
        let clashes = overlaps(&logs, &ended);
        assert!(
            clashes.is_empty(),
            "two members owned a partition at once: {clashes:#?}"
        );
        let consumed: BTreeMap<(i32, i64), String> =
            logs.iter().flat_map(|l| l.consumed.clone()).collect();
        for (key, value) in &acked {
            assert_eq!(
                consumed.get(key),
                Some(value),
                "acknowledged record {key:?} consumed differently"
            );
        }
        self.check_commits(&logs, &acked).await;
        let _ = &self.cluster;
    }

    /// The group's committed offsets (read from its coordinator now) are at
    /// least every commit a member saw succeed, and reach past every
    /// acknowledged record (nothing would be skipped on a restart).
    async fn check_commits(&self, logs: &[MemberLog], acked: &BTreeMap<(i32, i64), String>) {
        let group = &self.group;
        let mut conn = coordinator_connection(&self.bootstrap, group).await;
        let partitions: Vec<i32> = (0..PARTITIONS).collect();
        let committed = common::group::committed(&mut conn, group, TOPIC, &partitions).await;
        for l in logs {
            for &(p, o) in &l.commits {
                assert!(
                    committed[p as usize] >= o,
                    "partition {p}: commit of {o} lost, now {committed:?}"
                );
            }
        }
        for &(p, o) in acked.keys() {
            assert!(
                committed[p as usize] > o,
                "partition {p}: committed {committed:?} is not past {o}"
            );
        }
    }
}

/// A connection to `group`'s coordinator, found through FindCoordinator.
async fn coordinator_connection(bootstrap: &str, group: &str) -> client::Connection {
    use kafka_protocol::messages::FindCoordinatorRequest;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for addr in bootstrap.split(',') {
            let Ok(mut conn) = client::Connection::connect(addr).await else {
                continue;
            };
            let req = FindCoordinatorRequest::default().with_key(common::s(group));
            if let Ok(r) = conn.send(&req, 3).await {
                if r.error_code == 0 {
                    let target = format!("{}:{}", r.host.as_str(), r.port);
                    if let Ok(c) = client::Connection::connect(&target).await {
                        return c;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no coordinator for {group}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn member_kill(client: &str, assignor: &str) {
    let _one = ONE_CLUSTER.lock().await;
    let group = format!("{client}-{assignor}-members");
    let mut run = Run::start(client, assignor, &group).await;
    let first = run.wait_assigned(Duration::from_secs(60));
    eprintln!("{client}: three members own all partitions after {first:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.kill_member(0);
    let took = run.wait_assigned(Duration::from_millis(SESSION_MS) + Duration::from_secs(20));
    eprintln!("{client}: the survivors own all partitions {took:?} after the kill (session {SESSION_MS} ms)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_group_survives_a_member_kill() {
    member_kill("confluent", "range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_group_survives_a_member_kill() {
    member_kill("rust", "cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_group_survives_a_member_kill() {
    member_kill("kafka-python", "roundrobin").await;
}

/// The broker leading the group's `__consumer_offsets` partition.
async fn coordinator_broker(cluster: &LocalCluster, group: &str, alive: i32) -> i32 {
    let partitions = cluster.describe(alive, "__consumer_offsets").await;
    let index = broker::coordinator::records::partition_for(group, partitions.len() as i32);
    partitions[index as usize].leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_group_survives_a_coordinator_kill() {
    let _one = ONE_CLUSTER.lock().await;
    let group = "confluent-coordinator-kill".to_string();
    let mut run = Run::start("confluent", "cooperative-sticky", &group).await;
    run.wait_assigned(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = coordinator_broker(&run.cluster, &group, 1).await;
    run.cluster.signal_broker(victim, Signal::KILL);
    let alive = [1, 2, 3].into_iter().find(|b| *b != victim).unwrap();
    let moved = run
        .cluster
        .wait_for_topic(alive, "__consumer_offsets", Duration::from_secs(10), |ps| {
            let index = broker::coordinator::records::partition_for(&group, ps.len() as i32);
            ps[index as usize].leader != victim && ps[index as usize].leader > 0
        })
        .await;
    eprintln!("coordinator {victim} killed; a new one in {moved:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    run.wait_assigned(Duration::from_secs(30));
    run.finish().await;
}

/// A coordinator frozen past its lease, then thawed, refuses a commit with
/// NOT_COORDINATOR (it may not yet know its successor, but its lease tells
/// it to stop) and the commit changes nothing; the new coordinator takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thawed_coordinator_refuses_commits() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = LocalCluster::start(3, 3);
    let bootstrap = bootstrap_of(&cluster);
    let mut admin = client::Admin::connect(&bootstrap).await.expect("admin");
    admin
        .create_topic(TOPIC, 1, 3, &[])
        .await
        .expect("create topic");
    // Records to commit offsets of (commits past the log end are refused).
    let config = client::ProducerConfig::new(&bootstrap);
    let producer = client::Producer::new(config).await.expect("producer");
    for i in 0..10 {
        let record = client::Record::new(TOPIC, format!("r{i}")).with_partition(0);
        let delivery = producer.send(record).await.expect("send");
        delivery.await.expect("acknowledged");
    }
    let group = "zombie-coordinator";
    let mut conn = coordinator_connection(&bootstrap, group).await;
    assert_eq!(
        common::group::commit(&mut conn, group, "", -1, TOPIC, &[(0, 5)]).await,
        vec![0]
    );
    let old = coordinator_broker(&cluster, group, 1).await;
    let mut stale = client::Connection::connect(cluster.broker_addr(old))
        .await
        .expect("connect");
    cluster.signal_broker(old, Signal::STOP);
    let alive = [1, 2, 3].into_iter().find(|b| *b != old).unwrap();
    cluster
        .wait_for_topic(alive, "__consumer_offsets", Duration::from_secs(10), |ps| {
            let index = broker::coordinator::records::partition_for(group, ps.len() as i32);
            ps[index as usize].leader != old && ps[index as usize].leader > 0
        })
        .await;
    cluster.signal_broker(old, Signal::CONT);
    use kafka_protocol::messages::*;
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(99);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(common::topic(TOPIC))
        .with_partitions(vec![p]);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(common::s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![t]);
    let r = stale
        .send(&req, 8)
        .await
        .expect("the thawed broker answers");
    assert_eq!(
        r.topics[0].partitions[0].error_code, 16,
        "NOT_COORDINATOR: {r:?}"
    );
    let mut conn = coordinator_connection(&bootstrap, group).await;
    assert_eq!(
        common::group::committed(&mut conn, group, TOPIC, &[0]).await,
        vec![5],
        "the refused commit changed nothing"
    );
    assert_eq!(
        common::group::commit(&mut conn, group, "", -1, TOPIC, &[(0, 7)]).await,
        vec![0]
    );
    assert_eq!(
        common::group::committed(&mut conn, group, TOPIC, &[0]).await,
        vec![7]
    );
}
