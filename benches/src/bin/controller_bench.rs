//! Metadata propagation: from the moment a change is committed (the
//! proposer's call returns) until every broker's metadata feed shows it, for
//! three in-process controllers and three feeds on loopback. Next to it, in
//! the same run, the controller's own round trip (a DescribeQuorum), the
//! floor for anything pushed over the network. Target (issue 5): < 50 ms.

use clap::Parser;
use controller::metadata::ClusterMetadata;
use controller::raft::node::ControllerConfig;
use controller::rules::lease::LeaseConfig;
use controller::service::{call, ControllerRequest as Req, ControllerResponse as Resp};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Commit-to-broker metadata latency next to the controller round trip")]
struct Args {
    /// Changes to commit and time.
    #[arg(long, default_value_t = 300)]
    changes: usize,
    /// Broker feeds following the controllers.
    #[arg(long, default_value_t = 3)]
    feeds: usize,
}

fn line(name: &str, h: &Histogram<u64>) {
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.len()
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut quorum = BTreeMap::new();
    for id in 1..=3u64 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        quorum.insert(id, probe.local_addr().expect("addr").to_string());
    }
    let lease = LeaseConfig {
        session_timeout_ms: 60_000,
        max_clock_drift_ppm: 10_000,
    };
    let mut nodes = Vec::new();
    for (&id, addr) in &quorum {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let config = ControllerConfig::new(id, quorum.clone(), dir.path().join(format!("c{id}")));
        nodes.push(
            controller::service::start(config, lease, listener)
                .await
                .expect("start"),
        );
    }
    let addrs: Vec<String> = quorum.values().cloned().collect();
    let leader = loop {
        if let Some(l) = nodes.iter().find_map(|n| n.service.controller.leader()) {
            break quorum[&l].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let registered = call(
        &leader,
        Req::RegisterBroker {
            id: 1,
            endpoint: "b1:9092".into(),
            incarnation: 1,
        },
    )
    .await;
    assert!(
        matches!(registered, Ok(Resp::Registered { .. })),
        "{registered:?}"
    );
    let mut feeds = Vec::new();
    for _ in 0..args.feeds {
        let (tx, rx) = tokio::sync::watch::channel((0, ClusterMetadata::default()));
        tokio::spawn(controller::metadata_feed::follow(addrs.clone(), tx));
        feeds.push(rx);
    }
    let mut rtt = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    let mut propagation = rtt.clone();
    for i in 0..args.changes {
        let start = Instant::now();
        let _ = call(&leader, Req::DescribeQuorum).await.expect("describe");
        rtt.record(start.elapsed().as_micros().max(1) as u64)
            .expect("record");
        let name = format!("t{i}");
        let committed = call(
            &leader,
            Req::CreateTopic {
                name: name.clone(),
                partitions: 1,
                replication_factor: 1,
                configs: Default::default(),
            },
        )
        .await;
        assert!(matches!(committed, Ok(Resp::Committed(_))), "{committed:?}");
        let committed_at = Instant::now();
        for rx in &mut feeds {
            rx.wait_for(|(_, m)| m.topics.contains_key(&name))
                .await
                .expect("feed");
        }
        propagation
            .record(committed_at.elapsed().as_micros().max(1) as u64)
            .expect("record");
    }
    println!(
        "controller-bench: 3 controllers, {} broker feeds, {} changes, loopback",
        args.feeds, args.changes
    );
    line("controller round trip (same run, the floor)", &rtt);
    line("commit to every broker feed", &propagation);
    for n in nodes {
        n.shutdown().await;
    }
}
