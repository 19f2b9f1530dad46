//! Rebalance time of a 3-member consumer group (Rust `GroupConsumer`s, 6
//! partitions, session timeout 1 s) on three controllers and three brokers
//! as separate `baton` processes on loopback. Each run uses a fresh group:
//! - **member death**: one member's consumer is dropped without leaving
//!   (its heartbeats stop, as a crashed process's do); time until the two
//!   survivors own all 6 partitions. The floor is the session timeout: the
//!   coordinator cannot tell a dead member sooner.
//! - **coordinator death**: kill -9 the broker leading the group's
//!   `__consumer_offsets` partition; time until every member has committed
//!   through the new coordinator. Then the broker is restarted.
//!
//! Prints p50/p99/max for each next to the session timeouts (member and
//! broker) that bound them.

use baton_benches::{broker_args, spawn, Node};
use clap::Parser;
use client::{GroupConsumer, GroupConsumerConfig};
use hdrhistogram::Histogram;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Group rebalance benchmark.
#[derive(Parser)]
struct Args {
    /// Runs of each kind.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Broker 1's port (brokers use 3 ports from it, controllers base+100..).
    #[arg(long, default_value_t = 49092)]
    base_port: u16,
    /// The `baton` binary [default: next to this one].
    #[arg(long)]
    baton: Option<PathBuf>,
}

const TOPIC: &str = "rebalance";
const PARTITIONS: i32 = 6;
const SESSION: Duration = Duration::from_millis(1_000);

/// What a member last saw: its assignment and when it last committed.
#[derive(Default)]
struct Seen {
    owned: BTreeSet<i32>,
    committed_at: Option<Instant>,
}

/// A member polling (and committing offset 0 of what it owns) until
/// dropped.
fn member(bootstrap: &str, group: &str, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    let mut config = GroupConsumerConfig::new(bootstrap, group);
    config.session_timeout = SESSION;
    config.heartbeat_interval = Duration::from_millis(100);
    config.rebalance_timeout = Duration::from_secs(5);
    tokio::spawn(async move {
        let Ok(mut consumer) = GroupConsumer::new(config).await else {
            return;
        };
        consumer.subscribe(&[TOPIC]);
        loop {
            let _ = consumer.poll(Duration::from_millis(50)).await;
            let owned: Vec<i32> = consumer.assignment().iter().map(|(_, p)| *p).collect();
            let offsets: Vec<(&str, i32, i64)> = owned.iter().map(|p| (TOPIC, *p, 0)).collect();
            let committed = !offsets.is_empty() && consumer.commit_offsets(&offsets).await.is_ok();
            let mut s = seen.lock().unwrap();
            s.owned = owned.into_iter().collect();
            if committed {
                s.committed_at = Some(Instant::now());
            }
        }
    })
}

/// Waits until `done` holds over the members' views; the time since `from`.
async fn until(
    seen: &[Arc<Mutex<Seen>>],
    from: Instant,
    done: impl Fn(&[&Seen]) -> bool,
) -> Duration {
    loop {
        let views: Vec<_> = seen.iter().map(|s| s.lock().unwrap()).collect();
        let refs: Vec<&Seen> = views.iter().map(|g| &**g).collect();
        if done(&refs) {
            return from.elapsed();
        }
        drop(views);
        assert!(
            from.elapsed() < Duration::from_secs(60),
            "the group did not settle"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every partition owned by exactly one of `seen`, each owning some.
fn settled(seen: &[&Seen]) -> bool {
    let mut all = Vec::new();
    for s in seen {
        if s.owned.is_empty() {
            return false;
        }
        all.extend(s.owned.iter().copied());
    }
    all.sort_unstable();
    all == (0..PARTITIONS).collect::<Vec<_>>()
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name}: runs {}, p50 {} ms, p99 {} ms, max {} ms",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
}

/// The leader of the group's `__consumer_offsets` partition.
async fn coordinator(admin: &mut client::Admin, group: &str) -> i32 {
    let topic = admin
        .describe_topic("__consumer_offsets")
        .await
        .expect("offsets topic");
    let index = partition_for(group, topic.partitions.len() as i32);
    topic.partitions[index as usize].leader
}

/// Kafka's mapping (Java `String.hashCode`, masked, modulo the count).
fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (hash & 0x7fff_ffff) % partitions
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let baton = baton_benches::baton_binary(args.baton);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_controllers, quorum) = baton_benches::controllers(&baton, args.base_port, dir.path());
    let port = |id: i32| args.base_port + id as u16 - 1;
    let addr = |id: i32| format!("127.0.0.1:{}", port(id));
    let start_broker = |id: i32| {
        spawn(
            &baton,
            &broker_args(id, port(id), &quorum, dir.path()),
            "baton listening",
        )
    };
    let mut brokers: Vec<Option<Node>> = (1..=3).map(|id| Some(start_broker(id))).collect();
    let bootstrap = (1..=3).map(addr).collect::<Vec<_>>().join(",");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut admin = client::Admin::connect(&bootstrap).await.expect("admin");
    admin
        .create_topic(TOPIC, PARTITIONS, 3, &[])
        .await
        .expect("create topic");

    let mut member_death = Histogram::<u64>::new(3).unwrap();
    for run in 0..args.runs {
        let group = format!("member-death-{run}");
        let seen: Vec<_> = (0..3)
            .map(|_| Arc::new(Mutex::new(Seen::default())))
            .collect();
        let mut tasks: Vec<_> = seen
            .iter()
            .map(|s| member(&bootstrap, &group, s.clone()))
            .collect();
        until(&seen, Instant::now(), settled).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        tasks.remove(0).abort();
        let killed = Instant::now();
        let took = until(&seen[1..], killed, settled).await;
        member_death.record(took.as_millis() as u64).unwrap();
        println!(
            "member death {}: survivors own all partitions after {} ms",
            run + 1,
            took.as_millis()
        );
        tasks.iter().for_each(|t| t.abort());
    }

    let mut coordinator_death = Histogram::<u64>::new(3).unwrap();
    for run in 0..args.runs {
        let group = format!("coordinator-death-{run}");
        let seen: Vec<_> = (0..3)
            .map(|_| Arc::new(Mutex::new(Seen::default())))
            .collect();
        let tasks: Vec<_> = seen
            .iter()
            .map(|s| member(&bootstrap, &group, s.clone()))
            .collect();
        until(&seen, Instant::now(), settled).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let victim = coordinator(&mut admin, &group).await;
        drop(brokers[victim as usize - 1].take());
        let killed = Instant::now();
        let took = until(&seen, killed, |s| {
            settled(s) && s.iter().all(|m| m.committed_at.is_some_and(|t| t > killed))
        })
        .await;
        coordinator_death.record(took.as_millis() as u64).unwrap();
        println!("coordinator death {}: broker {victim} killed, every member committed again after {} ms", run + 1, took.as_millis());
        tasks.iter().for_each(|t| t.abort());
        brokers[victim as usize - 1] = Some(start_broker(victim));
        admin = client::Admin::connect(&bootstrap).await.expect("admin");
        tokio::time::sleep(Duration::from_secs(3)).await; // back in the ISRs
    }
    println!(
        "member session timeout {} ms, broker session timeout 800 ms (default)",
        SESSION.as_millis()
    );
    report(
        "member death -> survivors own every partition",
        &member_death,
    );
    report(
        "coordinator death -> every member committed through the new coordinator",
        &coordinator_death,
    );
}
