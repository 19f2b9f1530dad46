//! The fault campaign: drives the compose cluster (`scripts/cluster up`)
//! with a recorded workload and a seeded schedule of faults, then checks
//! the history. See `docs/campaign.md` for how to read its report.
//!
//! Exits 1 if the checker found an anomaly, or if the run proves nothing:
//! no acknowledged write, or faults applied without a single leader change.

use baton_benches::campaign::docker::Cluster;
use baton_benches::campaign::run::{run, Config};
use baton_benches::campaign::schedule::{Kind, Plan};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Fault campaign against the compose cluster.
#[derive(Parser)]
struct Args {
    /// Seed of the fault schedule [default: from the clock, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of fault injection (then heal, drain, check).
    #[arg(long, default_value_t = 300)]
    duration: u64,
    /// Most faults to apply.
    #[arg(long, default_value_t = 10_000)]
    faults: usize,
    /// Faults to draw from, comma-separated [default: all]: kill-leader,
    /// kill-broker, kill-controller, kill-coordinator, pause,
    /// isolate-leader, split-controllers, restart, corrupt-follower.
    #[arg(long, value_delimiter = ',')]
    nemesis: Vec<Kind>,
    /// Shortest time a fault holds, ms.
    #[arg(long, default_value_t = 1000)]
    hold_min_ms: u64,
    /// Longest time a fault holds, ms.
    #[arg(long, default_value_t = 6000)]
    hold_max_ms: u64,
    /// Pause after healing, before waiting for full ISRs, ms.
    #[arg(long, default_value_t = 2000)]
    quiet_ms: u64,
    /// Partitions of the workload's topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Rust producer tasks (one request in flight each).
    #[arg(long, default_value_t = 2)]
    producers: u64,
    /// Sends per second per producer.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Leave out the librdkafka producer and group.
    #[arg(long)]
    no_rdkafka: bool,
    /// Group members' session timeout, ms.
    #[arg(long, default_value_t = 3000)]
    session_ms: u64,
    /// Compose project of the cluster.
    #[arg(long, env = "COMPOSE_PROJECT_NAME", default_value = "baton")]
    project: String,
    /// First three octets of the cluster network.
    #[arg(long, env = "BATON_NET", default_value = "172.28.0")]
    net: String,
    /// Where the librdkafka client script lives.
    #[arg(long, default_value = "scripts/clients")]
    clients_dir: PathBuf,
    /// The Python with confluent-kafka.
    #[arg(long, default_value = "target/test-venv/bin/python")]
    python: PathBuf,
    /// Output directory [default: target/campaign/<seed>].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args
        .seed
        .unwrap_or_else(baton_benches::campaign::recorder::now_ms);
    let kinds = if args.nemesis.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.nemesis.clone()
    };
    let config = Config {
        cluster: Cluster {
            project: args.project.clone(),
            net: args.net.clone(),
        },
        plan: Plan {
            seed,
            kinds,
            // One fault takes at least its hold and the quiet time.
            faults: args.faults.min(
                (args.duration * 1000 / (args.hold_min_ms + args.quiet_ms).max(1)) as usize + 1,
            ),
            hold_ms: (args.hold_min_ms, args.hold_max_ms),
        },
        duration: Duration::from_secs(args.duration),
        quiet: Duration::from_millis(args.quiet_ms),
        partitions: args.partitions,
        rust_producers: args.producers,
        rate: args.rate,
        rdkafka: !args.no_rdkafka,
        session: Duration::from_millis(args.session_ms),
        clients_dir: args.clients_dir.clone(),
        python: args.python.clone(),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("target/campaign/{seed}"))),
    };
    let outcome = run(&config).await?;
    println!("report: {}", config.out.display());
    let mut failed = !outcome.valid;
    if outcome.summary.acknowledged == 0 {
        println!("FAIL: no write was acknowledged, so the run shows nothing");
        failed = true;
    }
    if outcome.faults_applied > 0 && outcome.summary.leader_changes == 0 {
        println!("FAIL: faults were applied but no leader ever changed");
        failed = true;
    }
    std::process::exit(i32::from(failed));
}
