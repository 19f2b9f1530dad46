//! A real cluster for tests: `baton local-cluster` (separate controller and
//! broker processes on loopback) on a free block of ports, with the pids it
//! reports, so a test can kill -9, freeze or thaw one node.

use client::admin::PartitionInfo as Partition;
use client::Connection;
use controller::service::{call, BrokerInfo, ControllerRequest, ControllerResponse};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use rustix::process::{kill_process, Pid, Signal};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `baton local-cluster`; stopped (every node) when dropped.
pub struct LocalCluster {
    child: Child,
    dir: Option<tempfile::TempDir>,
    stopped: bool,
    /// Brokers the test restarted itself.
    restarted: Vec<Child>,
    /// Broker id -> (pid, address).
    pub brokers: BTreeMap<i32, (i32, String)>,
    /// Controller id -> (pid, address).
    pub controllers: BTreeMap<u64, (i32, String)>,
}

/// `BATON_LOG` for the processes: `TEST_BATON_LOG`, else warnings only.
fn log_env(filter: Option<&str>) -> [(&'static str, String); 1] {
    let level = std::env::var("TEST_BATON_LOG").unwrap_or(filter.unwrap_or("warn").into());
    [("BATON_LOG", level)]
}

/// Lines a cluster logged, as they come (see [`LocalCluster::start_logged`]).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Logs {
    /// Reads `pipe` to its end on a thread, echoing and keeping each line.
    fn collect(&self, pipe: impl std::io::Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Every line `child` prints, echoed to the test's output and sent on.
fn stdout_lines(child: &mut Child, name: &'static str) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("{name}: {line}");
            let _ = tx.send(line);
        }
    });
    rx
}

/// A base port whose broker and controller blocks are free now.
fn free_base(brokers: u16, controllers: u16) -> u16 {
    // Tests of one binary share a pid: a counter keeps their blocks apart.
    static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() as u16).wrapping_add(nth.wrapping_mul(1_009));
    for attempt in 0..200u16 {
        // Below Linux's ephemeral range (32768 and up): a port found free
        // here could otherwise become some connection's local port before
        // the cluster binds it.
        let base = 20_000 + (seed.wrapping_mul(7).wrapping_add(attempt * 211) % 12_000);
        let ports = (0..brokers)
            .map(|i| base + i)
            .chain((0..controllers).map(|i| base + 100 + i));
        let free = ports
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if free {
            return base;
        }
    }
    panic!("no free block of ports");
}

impl LocalCluster {
    /// Starts `brokers` brokers and `controllers` controllers and waits for
    /// all of them.
    pub fn start(brokers: u16, controllers: u16) -> LocalCluster {
        Self::start_with(brokers, controllers, &[])
    }

    /// Three controllers and three brokers with `topic` created: one
    /// partition, replication factor 3.
    pub async fn start_with_topic(topic: &str) -> LocalCluster {
        let cluster = Self::start(3, 3);
        let mut admin = client::Admin::connect(cluster.broker_addr(1))
            .await
            .expect("admin");
        admin
            .create_topic(topic, 1, 3, &[])
            .await
            .expect("create topic");
        cluster
    }

    /// The leader of `topic`'s partition 0 as the first of `alive` that
    /// answers reports it; `None` when it names none.
    pub async fn leader_of(&self, topic: &str, alive: &[i32]) -> Option<i32> {
        for via in alive {
            if let Some(p) = self.try_describe(*via, topic).await {
                return Some(p[0].leader).filter(|l| *l > 0);
            }
        }
        None
    }

    /// As `start`, with more `baton local-cluster` arguments.
    pub fn start_with(brokers: u16, controllers: u16, extra: &[&str]) -> LocalCluster {
        Self::spawn(brokers, controllers, extra, None, None)
    }

    /// As `start`, with every node logging at the default level (no
    /// `BATON_LOG`) and local-cluster's stderr (every node's log, prefixed
    /// with the node) collected into the returned lines as they come.
    pub fn start_logged(brokers: u16, controllers: u16) -> (LocalCluster, Logs) {
        let logs = Logs::default();
        let cluster = Self::spawn(brokers, controllers, &[], Some(logs.clone()), None);
        (cluster, logs)
    }

    /// As `start`, with every node's `BATON_LOG` set to `filter` (unless
    /// `TEST_BATON_LOG` overrides it), e.g. one module at INFO whose
    /// trail a flaky failure needs.
    pub fn start_filtered(brokers: u16, controllers: u16, filter: &str) -> LocalCluster {
        Self::spawn(brokers, controllers, &[], None, Some(filter))
    }

    fn spawn(
        brokers: u16,
        controllers: u16,
        extra: &[&str],
        logs: Option<Logs>,
        filter: Option<&str>,
    ) -> LocalCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = free_base(brokers, controllers).to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
        command
            .args(["local-cluster", "--base-port", &base])
            .args(["--brokers", &brokers.to_string()])
            .args(["--controllers", &controllers.to_string()])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path());
        match &logs {
            Some(_) => command.env_remove("BATON_LOG").stderr(Stdio::piped()),
            None => command.envs(log_env(filter)).stderr(Stdio::inherit()),
        };
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start baton local-cluster");
        if let Some(logs) = logs {
            logs.collect(child.stderr.take().expect("stderr"));
        }
        let rx = stdout_lines(&mut child, "local-cluster");
        let mut cluster = LocalCluster {
            child,
            dir: Some(dir),
            stopped: false,
            restarted: Vec::new(),
            brokers: BTreeMap::new(),
            controllers: BTreeMap::new(),
        };
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("local-cluster did not start");
            if line.starts_with("bootstrap: ") {
                return cluster;
            }
            // "broker 1 pid 123 on 127.0.0.1:9092"
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [role, id, "pid", pid, "on", addr] = words[..] {
                let node = (pid.parse().expect("pid"), addr.to_string());
                match role {
                    "broker" => cluster.brokers.insert(id.parse().expect("id"), node),
                    _ => cluster.controllers.insert(id.parse().expect("id"), node),
                };
            }
        }
    }

    /// Sends `signal` to broker `id`'s process.
    pub fn signal_broker(&self, id: i32, signal: Signal) {
        let pid = Pid::from_raw(self.brokers[&id].0).expect("pid");
        kill_process(pid, signal).expect("signal broker");
    }

    /// Sends `signal` to every controller's process.
    pub fn signal_controllers(&self, signal: Signal) {
        for (pid, _) in self.controllers.values() {
            let pid = Pid::from_raw(*pid).expect("pid");
            kill_process(pid, signal).expect("signal controller");
        }
    }

    /// A broker's address.
    pub fn broker_addr(&self, id: i32) -> &str {
        &self.brokers[&id].1
    }

    /// The controllers' addresses.
    pub fn controller_addrs(&self) -> Vec<String> {
        self.controllers.values().map(|(_, a)| a.clone()).collect()
    }

    /// The active controller's view of the brokers (a follower's view may
    /// lag, and only the active one tracks heartbeats).
    pub async fn broker_sessions(&self) -> BTreeMap<i32, BrokerInfo> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for addr in self.controller_addrs() {
                if let Ok(ControllerResponse::Quorum {
                    controller,
                    brokers,
                }) = call(&addr, ControllerRequest::DescribeQuorum).await
                {
                    if controller.leader == Some(controller.id) {
                        return brokers.into_iter().map(|b| (b.id, b)).collect();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no active controller");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Topic `name` as broker `via` describes it through the Kafka
    /// Metadata API (asked directly, as a client that bootstraps from it).
    pub async fn describe(&self, via: i32, name: &str) -> Vec<Partition> {
        self.try_describe(via, name)
            .await
            .unwrap_or_else(|| panic!("broker {via} could not describe {name}"))
    }

    /// As `describe`, `None` if the broker cannot be reached or refuses.
    pub async fn try_describe(&self, via: i32, name: &str) -> Option<Vec<Partition>> {
        let mut conn = Connection::connect(self.broker_addr(via)).await.ok()?;
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(super::topic(name))),
        ]));
        let response = conn.send(&request, 12).await.ok()?;
        let topic = &response.topics[0];
        if topic.error_code != 0 {
            return None;
        }
        let mut partitions: Vec<Partition> = topic
            .partitions
            .iter()
            .map(|p| Partition {
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Some(partitions)
    }

    /// kill -9 the active controller; returns its id.
    pub async fn kill_active_controller(&self) -> u64 {
        for (id, (pid, addr)) in &self.controllers {
            if let Ok(ControllerResponse::Quorum { controller, .. }) =
                call(addr, ControllerRequest::DescribeQuorum).await
            {
                if controller.leader == Some(controller.id) {
                    kill_process(Pid::from_raw(*pid).expect("pid"), Signal::KILL)
                        .expect("kill controller");
                    return *id;
                }
            }
        }
        panic!("no active controller to kill");
    }

    /// A broker's data directory.
    pub fn broker_dir(&self, id: i32) -> std::path::PathBuf {
        let dir = self.dir.as_ref().expect("running");
        dir.path().join(format!("broker-{id}"))
    }

    /// Starts broker `id` again (after a kill) as the test's own process, on
    /// its address and data directory; it is stopped with the cluster.
    pub fn restart_broker(&mut self, id: i32) {
        let quorum: Vec<String> = self
            .controllers
            .iter()
            .map(|(c, (_, addr))| format!("{c}={addr}"))
            .collect();
        let addr = self.brokers[&id].1.clone();
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["broker", "--node-id", &id.to_string()])
            .args(["--controllers", &quorum.join(","), "--listen", &addr])
            .arg("--data-dir")
            .arg(self.broker_dir(id))
            .envs(log_env(None))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("restart broker");
        let rx = stdout_lines(&mut child, "broker");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("restarted broker did not start")
            .starts_with("baton listening on")
        {}
        let pid = child.id() as i32;
        self.brokers.get_mut(&id).expect("known broker").0 = pid;
        self.restarted.push(child);
    }

    /// Stops every node and returns the data directory (kept) and each
    /// broker's data directory in it.
    pub fn stop(mut self) -> (tempfile::TempDir, Vec<(i32, std::path::PathBuf)>) {
        self.shutdown();
        let dir = self.dir.take().expect("data dir");
        let brokers = self
            .brokers
            .keys()
            .map(|id| (*id, dir.path().join(format!("broker-{id}"))))
            .collect();
        (dir, brokers)
    }

    /// Polls `describe` through broker `via` until `done` holds; returns
    /// the time it took. Panics after `timeout`.
    pub async fn wait_for_topic(
        &self,
        via: i32,
        name: &str,
        timeout: Duration,
        done: impl Fn(&[Partition]) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let topic = self.describe(via, name).await;
            if done(&topic) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "not within {timeout:?}: {topic:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl LocalCluster {
    fn shutdown(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        for child in &mut self.restarted {
            if let Some(pid) = Pid::from_raw(child.id() as i32) {
                let _ = kill_process(pid, Signal::TERM);
            }
            let _ = child.wait();
        }
        // Thaw anything a test froze, then let local-cluster stop them all.
        for (pid, _) in self.brokers.values().chain(self.controllers.values()) {
            if let Some(pid) = Pid::from_raw(*pid) {
                let _ = kill_process(pid, Signal::CONT);
            }
        }
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
