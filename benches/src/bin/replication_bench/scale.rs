//! Scale: many partitions × RF 3 on the three-broker cluster. Each step
//! creates one topic that brings the cluster to the next total of
//! partitions, times the CreateTopics request and the moment every new
//! partition's ISR has all three replicas (polling Metadata every 100 ms),
//! then, with no load at all, samples each broker's CPU: what replicas cost
//! while nothing happens (issue 18: below 5% of one core at 900 replicas).

use super::{wait_for_isr, Args, Cluster};
use baton_benches::procstat::{self, CpuClock};
use client::Admin;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// The replication factor of every scale topic.
const RF: i16 = 3;

/// One step's figures.
struct Step {
    /// Partitions on the cluster after the step.
    partitions_total: i32,
    /// Partitions this step created.
    partitions_created: i32,
    /// From sending CreateTopics to its answer.
    create_answered: Duration,
    /// From sending CreateTopics to every new ISR full.
    isr_full: Duration,
    /// Idle CPU of each broker, % of one core.
    idle_cpu_percent: Vec<f64>,
    /// Partitions of the scale topics with an ISR short of RF after the
    /// idle period (0 unless followers fell behind while idle).
    isr_short_after_idle: usize,
    /// If some were short: how long after the idle period every ISR was
    /// full again (`None`: not within `--isr-timeout-secs`).
    isr_full_again: Option<Duration>,
}

impl Step {
    fn replicas(&self) -> i32 {
        self.partitions_total * RF as i32
    }

    fn row(&self) -> String {
        let cpu: Vec<String> = self
            .idle_cpu_percent
            .iter()
            .map(|p| format!("{p:.1}"))
            .collect();
        format!(
            "| {} ({} partitions × RF {RF}) | {} | {:.2} s | {:.2} s | {} | {} | {} |",
            self.replicas(),
            self.partitions_total,
            self.partitions_created,
            self.create_answered.as_secs_f64(),
            self.isr_full.as_secs_f64(),
            cpu.join(" / "),
            self.isr_short_after_idle,
            match (self.isr_short_after_idle, self.isr_full_again) {
                (0, _) => "-".to_string(),
                (_, Some(after)) => format!("{:.1} s", after.as_secs_f64()),
                (_, None) => "not within the timeout".to_string(),
            },
        )
    }

    fn json(&self, idle_secs: u64) -> serde_json::Value {
        json!({
            "bench": "replication-scale", "replicas": self.replicas(),
            "partitions_total": self.partitions_total,
            "partitions_created": self.partitions_created,
            "create_answered_s": self.create_answered.as_secs_f64(),
            "isr_full_s": self.isr_full.as_secs_f64(),
            "idle_secs": idle_secs, "idle_cpu_percent": self.idle_cpu_percent,
            "isr_short_after_idle": self.isr_short_after_idle,
            "isr_full_again_s": self.isr_full_again.map(|d| d.as_secs_f64()),
        })
    }
}

/// Runs every step of `--scale-partitions` on one cluster under `dir`
/// and prints a table and JSON lines.
pub async fn run(args: &Args, baton: &Path, dir: &Path) {
    assert!(
        args.scale_partitions.is_sorted() && args.scale_partitions.first() > Some(&0),
        "--scale-partitions: rising totals"
    );
    let cluster = Cluster::start(baton, args.base_port, dir).await;
    let mut admin = Admin::connect(&cluster.bootstrap).await.expect("admin");
    let mut steps = Vec::new();
    let mut total = 0;
    for (i, &target) in args.scale_partitions.iter().enumerate() {
        let created = target - total;
        total = target;
        if created == 0 {
            continue;
        }
        let step = step(
            args,
            &cluster,
            &mut admin,
            &format!("scale-{i}"),
            created,
            total,
        )
        .await;
        eprintln!("{}", step.row());
        steps.push(step);
    }
    println!();
    println!("| replicas | partitions created | CreateTopics answered | every ISR full | idle CPU {} s, % of one core: brokers 1 / 2 / 3 | ISRs short after idle | full again after |", args.idle_secs);
    println!("| --- | ---: | ---: | ---: | --- | ---: | ---: |");
    for step in &steps {
        println!("{}", step.row());
    }
    println!();
    println!("(A new partition's ISR is its whole replica set, as in Kafka, so it is full as soon as Metadata shows it; a follower that does not keep up shows in the last two columns.)");
    println!();
    for step in &steps {
        println!("{}", step.json(args.idle_secs));
    }
}

/// Creates `topic` with `created` partitions, bringing the cluster to
/// `total`, and measures it.
async fn step(
    args: &Args,
    cluster: &Cluster,
    admin: &mut Admin,
    topic: &str,
    created: i32,
    total: i32,
) -> Step {
    let start = Instant::now();
    admin
        .create_topic(topic, created, RF, &[("min.insync.replicas", "2")])
        .await
        .expect("create topic");
    let create_answered = start.elapsed();
    let timeout = Duration::from_secs(args.isr_timeout_secs);
    let full_at = wait_for_isr(admin, topic, created, RF as usize, timeout).await;
    let isr_full = full_at - start;
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let idle_cpu_percent = idle_cpu(&cluster.pids(), Duration::from_secs(args.idle_secs)).await;
    let isr_short_after_idle = isr_short(admin).await;
    let isr_full_again = match isr_short_after_idle {
        0 => Some(Duration::ZERO),
        _ => isr_full_again(admin, timeout).await,
    };
    Step {
        partitions_total: total,
        partitions_created: created,
        create_answered,
        isr_full,
        idle_cpu_percent,
        isr_short_after_idle,
        isr_full_again,
    }
}

/// Each process's CPU over `period`, in % of one core.
async fn idle_cpu(pids: &[u32], period: Duration) -> Vec<f64> {
    let clock = CpuClock::new();
    let before = clock.sample(pids);
    let start = Instant::now();
    tokio::time::sleep(period).await;
    let wall = start.elapsed().as_secs_f64();
    let after = clock.sample(pids);
    procstat::spent(&before, &after)
        .iter()
        .map(|cpu| 100.0 * cpu / wall)
        .collect()
}

/// Polls every 100 ms until no scale partition's ISR lacks a replica:
/// how long that took, or `None` after `timeout`.
async fn isr_full_again(admin: &mut Admin, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if isr_short(admin).await == 0 {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Partitions of the scale topics whose ISR lacks a replica.
async fn isr_short(admin: &mut Admin) -> usize {
    let topics = admin.list_topics().await.expect("list topics");
    topics
        .iter()
        .filter(|t| t.name.starts_with("scale-"))
        .flat_map(|t| &t.partitions)
        .filter(|p| p.isr.len() < p.replicas.len())
        .count()
}
