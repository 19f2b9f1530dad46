//! The cost of replication (issue 18), in one run on one machine: three
//! controllers and three brokers as separate `baton` processes on
//! loopback, the same acks=all load on a topic with replication factor 1
//! and on one with 3 (min.insync.replicas=2), then one `baton` in combined
//! mode with replication factor 1. Each figure stands next to its limit
//! measured in the same run: RF 3 against RF 1, the single node against
//! the disk's write+fdatasync rate, and the brokers' CPU time (read from
//! `/proc/<pid>/stat` of each broker process, so every thread counts) per
//! GB the client wrote.
//!
//! `scale` mode (`scale.rs`) creates hundreds of partitions instead: the
//! time until every ISR is full, and what the brokers burn while idle.

// A binary's root finds modules next to itself, hence the path.
#[path = "replication_bench/scale.rs"]
mod scale;

use baton_benches::limits::{disk_profile, DiskProfile};
use baton_benches::procstat::{self, CpuClock};
use baton_benches::{broker_args, controllers, spawn, Node};
use clap::{Parser, ValueEnum};
use client::{Admin, Delivery, Producer, ProducerConfig, Record};
use hdrhistogram::Histogram;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Mode {
    /// RF 1 and RF 3 acks=all on the cluster, then a single node.
    Throughput,
    /// Many partitions: time to full ISRs, idle CPU.
    Scale,
}

/// Replication benchmark.
#[derive(Parser, Debug)]
#[command(about = "RF 3 next to RF 1 and a single node next to the disk, with broker CPU per GB")]
struct Args {
    /// What to run.
    #[arg(value_enum, default_value = "throughput")]
    mode: Mode,
    /// Where the nodes keep their data (on the disk to measure); the
    /// benchmark's subdirectories are wiped first.
    #[arg(long, default_value = "target/replication-bench")]
    dir: PathBuf,
    /// Broker 1's port (brokers use 3 ports from it, controllers
    /// base+100.., the single node base+10).
    #[arg(long, default_value_t = 41092)]
    base_port: u16,
    /// The `baton` binary [default: next to this one].
    #[arg(long)]
    baton: Option<PathBuf>,
    /// Records to produce in each throughput run.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Produce for this long instead of `--records`.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Bytes of value per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Producer batch.size in bytes (other producer settings are the
    /// client's defaults: idempotent, linger 5 ms).
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Partitions of each throughput topic; records go round-robin.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Scale: the cluster's total partitions (× RF 3) after each step,
    /// comma-separated; each step creates one topic with the difference.
    #[arg(long, value_delimiter = ',', default_values_t = [300, 1000])]
    scale_partitions: Vec<i32>,
    /// Scale: seconds of idle CPU sampled after each step.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Scale: seconds waited after the ISRs are full before sampling, so
    /// the creation's own work is not counted as idle.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Longest wait for a topic's ISRs to fill.
    #[arg(long, default_value_t = 300)]
    isr_timeout_secs: u64,
}

/// Three controllers and three brokers, separate processes; killed when
/// dropped (brokers first).
struct Cluster {
    brokers: Vec<Node>,
    _controllers: Vec<Node>,
    bootstrap: String,
}

impl Cluster {
    /// Starts the processes with data under `dir` and waits until all
    /// three brokers are registered.
    async fn start(baton: &Path, base_port: u16, dir: &Path) -> Cluster {
        let (controllers, quorum) = controllers(baton, base_port, dir);
        let brokers: Vec<Node> = (1..=3)
            .map(|id| {
                let port = base_port + id as u16 - 1;
                spawn(
                    baton,
                    &broker_args(id, port, &quorum, dir),
                    "baton listening",
                )
            })
            .collect();
        let bootstrap = format!("127.0.0.1:{base_port}");
        wait_for_brokers(&bootstrap, 3).await;
        Cluster {
            brokers,
            _controllers: controllers,
            bootstrap,
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.brokers.iter().map(|n| n.0.id()).collect()
    }
}

/// Waits until `count` brokers are registered with the controllers.
async fn wait_for_brokers(bootstrap: &str, count: usize) {
    let start = Instant::now();
    loop {
        if let Ok(mut admin) = Admin::connect(bootstrap).await {
            if admin
                .describe_cluster()
                .await
                .is_ok_and(|c| c.brokers.len() >= count)
            {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{count} brokers did not register"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls every 100 ms until each of the topic's `partitions` has a leader
/// and `rf` ISR members; returns when that was first seen.
async fn wait_for_isr(
    admin: &mut Admin,
    topic: &str,
    partitions: i32,
    rf: usize,
    timeout: Duration,
) -> Instant {
    let start = Instant::now();
    loop {
        if let Ok(info) = admin.describe_topic(topic).await {
            let full = info
                .partitions
                .iter()
                .filter(|p| p.leader >= 0 && p.isr.len() == rf)
                .count();
            if full == partitions as usize {
                return Instant::now();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "{topic}: ISRs not full after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One throughput run's figures.
struct Load {
    /// Records acknowledged.
    records: u64,
    /// Records whose delivery failed.
    failed: u64,
    /// Bytes of value acknowledged.
    bytes: u64,
    /// From the first send to the last acknowledgement.
    secs: f64,
    /// Send to acknowledgement, µs.
    latency: Histogram<u64>,
    /// CPU seconds each broker process spent over the run.
    cpu_s: Vec<f64>,
    /// CPU seconds this process (the client) spent: it shares the
    /// machine's cores with the brokers.
    client_cpu_s: f64,
}

impl Load {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }

    fn records_s(&self) -> f64 {
        self.records as f64 / self.secs
    }

    fn p99_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.99) as f64 / 1e3
    }

    /// CPU seconds per GB (1e9 bytes) of value written, per broker.
    fn cpu_s_per_gb(&self) -> Vec<f64> {
        let gb = self.bytes as f64 / 1e9;
        self.cpu_s.iter().map(|s| s / gb).collect()
    }

    fn cpu_s_per_gb_sum(&self) -> f64 {
        self.cpu_s_per_gb().iter().sum()
    }

    /// "12.3 MB/s, 12,000 rec/s, p99 4.56 ms".
    fn summary(&self) -> String {
        format!(
            "{:.1} MB/s, {:.0} rec/s, p99 {:.2} ms",
            self.mb_s(),
            self.records_s(),
            self.p99_ms()
        )
    }

    fn json(&self, setup: &str, rf: i16, partitions: i32) -> serde_json::Value {
        json!({
            "bench": "replication", "setup": setup, "replication_factor": rf,
            "partitions": partitions, "records": self.records, "failed": self.failed,
            "bytes": self.bytes, "secs": self.secs, "mb_s": self.mb_s(),
            "records_s": self.records_s(), "p99_ms": self.p99_ms(),
            "cpu_s": self.cpu_s, "cpu_s_per_gb": self.cpu_s_per_gb(),
            "cpu_s_per_gb_sum": self.cpu_s_per_gb_sum(), "client_cpu_s": self.client_cpu_s,
        })
    }
}

/// Produces 1 KiB (`--record-size`) records round-robin over the topic's
/// partitions with acks=all, the Rust client's defaults but for
/// batch.size, while reading the CPU of the processes `pids`.
async fn produce(args: &Args, bootstrap: &str, topic: &str, pids: &[u32]) -> Load {
    let mut config = ProducerConfig::new(bootstrap);
    config.acks = -1;
    config.batch_size = args.batch_size;
    let producer = Producer::new(config).await.expect("producer");
    // A collector per partition: deliveries complete in order within a
    // partition, so awaiting them in send order across partitions would
    // charge one partition's wait to another's latency.
    let (senders, collectors): (Vec<_>, Vec<_>) = (0..args.partitions)
        .map(|_| {
            let (tx, rx) = tokio::sync::mpsc::channel::<(Instant, Delivery)>(20_000);
            (tx, tokio::spawn(collect(rx)))
        })
        .unzip();
    let value = bytes::Bytes::from(vec![b'x'; args.record_size]);
    let clock = CpuClock::new();
    let pids: Vec<u32> = pids.iter().copied().chain([std::process::id()]).collect();
    let cpu_before = clock.sample(&pids);
    let start = Instant::now();
    let deadline = args.duration_secs.map(|s| start + Duration::from_secs(s));
    let mut sent = 0u64;
    while deadline.map_or(sent < args.records, |d| Instant::now() < d) {
        let partition = (sent % args.partitions as u64) as i32;
        let record = Record::new(topic, value.clone()).with_partition(partition);
        let sent_at = Instant::now();
        let delivery = producer.send(record).await.expect("send");
        senders[partition as usize]
            .send((sent_at, delivery))
            .await
            .expect("collector");
        sent += 1;
    }
    drop(senders);
    let mut latency = new_histogram();
    let mut failed = 0;
    for collector in collectors {
        let (h, f) = collector.await.expect("collector");
        latency.add(&h).expect("same bounds");
        failed += f;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut cpu_s = procstat::spent(&cpu_before, &clock.sample(&pids));
    let client_cpu_s = cpu_s.pop().expect("own process");
    let records = latency.len();
    Load {
        records,
        failed,
        bytes: records * args.record_size as u64,
        secs,
        latency,
        cpu_s,
        client_cpu_s,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram")
}

/// Awaits one partition's deliveries: their latencies (µs) and failures.
async fn collect(
    mut rx: tokio::sync::mpsc::Receiver<(Instant, Delivery)>,
) -> (Histogram<u64>, u64) {
    let (mut latency, mut failed) = (new_histogram(), 0);
    while let Some((sent_at, delivery)) = rx.recv().await {
        match delivery.await {
            Ok(_) => latency
                .record((sent_at.elapsed().as_micros() as u64).max(1))
                .expect("in bounds"),
            Err(_) => failed += 1,
        }
    }
    (latency, failed)
}

/// Creates `topic` with the run's partitions and replication factor `rf`
/// (min.insync.replicas 2, or 1 for RF 1) and waits for full ISRs.
async fn create(admin: &mut Admin, args: &Args, topic: &str, rf: i16) {
    let min_insync = rf.min(2).to_string();
    admin
        .create_topic(
            topic,
            args.partitions,
            rf,
            &[("min.insync.replicas", &min_insync)],
        )
        .await
        .expect("create topic");
    let timeout = Duration::from_secs(args.isr_timeout_secs);
    wait_for_isr(admin, topic, args.partitions, rf as usize, timeout).await;
}

/// Bytes the disk profile writes: well past the burst this class of
/// virtual disk absorbs, so its second half is the sustained rate.
const PROFILE_BYTES: u64 = 3 << 30;

/// RF 1 then RF 3 on one cluster: (RF 1, RF 3).
async fn cluster_runs(args: &Args, baton: &Path, dir: &Path) -> (Load, Load) {
    let cluster = Cluster::start(baton, args.base_port, dir).await;
    let mut admin = Admin::connect(&cluster.bootstrap).await.expect("admin");
    let mut loads = Vec::new();
    for rf in [1i16, 3] {
        let topic = format!("rf{rf}");
        create(&mut admin, args, &topic, rf).await;
        eprintln!("cluster, RF {rf}: producing");
        let load = produce(args, &cluster.bootstrap, &topic, &cluster.pids()).await;
        eprintln!(
            "cluster, RF {rf}: {}; broker CPU s/GB {:.1?}",
            load.summary(),
            load.cpu_s_per_gb()
        );
        loads.push(load);
    }
    let rf3 = loads.pop().expect("rf 3");
    (loads.pop().expect("rf 1"), rf3)
}

/// One `baton` in combined mode (its own one-member controller quorum),
/// RF 1.
async fn single_node_run(args: &Args, baton: &Path, dir: &Path) -> Load {
    let bootstrap = format!("127.0.0.1:{}", args.base_port + 10);
    let data = dir.display().to_string();
    let node = spawn(
        baton,
        &["--listen", &bootstrap, "--data-dir", &data].map(String::from),
        "baton listening",
    );
    wait_for_brokers(&bootstrap, 1).await;
    let mut admin = Admin::connect(&bootstrap).await.expect("admin");
    create(&mut admin, args, "single", 1).await;
    eprintln!("single node, RF 1: producing");
    let load = produce(args, &bootstrap, "single", &[node.0.id()]).await;
    eprintln!("single node, RF 1: {}", load.summary());
    load
}

/// Empties (or creates) a directory of the benchmark's own.
fn fresh(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("bench dir");
    dir.to_path_buf()
}

fn join(values: &[f64], precision: usize) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.precision$}")).collect();
    shown.join(" / ")
}

/// The run as a BENCHMARKS.md table (header and one row) and as JSON lines.
fn report(args: &Args, disk: DiskProfile, rf1: &Load, rf3: &Load, single: &Load) {
    let throughput_ratio = rf3.mb_s() / rf1.mb_s();
    let cpu_ratio = rf3.cpu_s_per_gb_sum() / rf1.cpu_s_per_gb_sum();
    let single_ratio = single.mb_s() / disk.burst_mb_s;
    // All three brokers share the one disk: RF 3 writes each byte three
    // times, RF 1 once.
    let disk_written = |load: &Load, rf: f64| load.mb_s() * rf;
    let workload = match args.duration_secs {
        Some(s) => format!("{s} s"),
        None => format!("{} records", args.records),
    };
    println!();
    println!("| run | workload | disk, synced 1 MiB appends: burst MB/s (for MiB), sustained MB/s | RF 1 | RF 3 (min ISR 2) | RF 3 / RF 1 | disk MB/s written, RF 1 / RF 3 | broker CPU s per GB, RF 1: brokers 1 / 2 / 3 (sum) | RF 3 | CPU RF 3 / RF 1 | single node, RF 1 | single / burst |");
    println!("| --- | --- | --- | --- | --- | ---: | --- | --- | --- | ---: | --- | ---: |");
    println!(
        "| ? | {workload} of {} B, {} KiB batches, {} partition(s), acks=all, idempotent | {:.0} ({}), {:.0} | {} | {} | **{throughput_ratio:.2}** | {:.0} / {:.0} | {} ({:.1}) | {} ({:.1}) | **{cpu_ratio:.2}** | {} | **{single_ratio:.2}** |",
        args.record_size,
        args.batch_size / 1024,
        args.partitions,
        disk.burst_mb_s,
        disk.burst_bytes >> 20,
        disk.sustained_mb_s,
        rf1.summary(),
        rf3.summary(),
        disk_written(rf1, 1.0),
        disk_written(rf3, 3.0),
        join(&rf1.cpu_s_per_gb(), 1),
        rf1.cpu_s_per_gb_sum(),
        join(&rf3.cpu_s_per_gb(), 1),
        rf3.cpu_s_per_gb_sum(),
        single.summary(),
    );
    println!();
    for line in [
        rf1.json("cluster", 1, args.partitions),
        rf3.json("cluster", 3, args.partitions),
        single.json("single", 1, args.partitions),
        json!({
            "bench": "replication", "summary": true, "disk_burst_mb_s": disk.burst_mb_s,
            "disk_burst_bytes": disk.burst_bytes, "disk_sustained_mb_s": disk.sustained_mb_s,
            "rf3_over_rf1": throughput_ratio,
            "cpu_per_gb_rf3_over_rf1": cpu_ratio, "single_over_disk": single_ratio,
        }),
    ] {
        println!("{line}");
    }
    for (what, load) in [("RF 1", rf1), ("RF 3", rf3), ("single node", single)] {
        if load.failed > 0 {
            println!("note: {what}: {} deliveries failed", load.failed);
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let baton = baton_benches::baton_binary(args.baton.clone());
    assert!(
        baton.exists(),
        "{} not found: cargo build --release --locked --bins",
        baton.display()
    );
    std::fs::create_dir_all(&args.dir).expect("bench dir");
    if args.mode == Mode::Scale {
        let dir = fresh(&args.dir.join("scale"));
        scale::run(&args, &baton, &dir).await;
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    let disk = disk_profile(&args.dir, PROFILE_BYTES);
    eprintln!(
        "disk, 1 MiB writes + fdatasync: burst {:.0} MB/s for {} MiB, then sustained {:.0} MB/s",
        disk.burst_mb_s,
        disk.burst_bytes >> 20,
        disk.sustained_mb_s
    );
    let dir = fresh(&args.dir.join("cluster"));
    let (rf1, rf3) = cluster_runs(&args, &baton, &dir).await;
    let _ = std::fs::remove_dir_all(dir);
    let dir = fresh(&args.dir.join("single"));
    let single = single_node_run(&args, &baton, &dir).await;
    let _ = std::fs::remove_dir_all(dir);
    report(&args, disk, &rf1, &rf3, &single);
}
