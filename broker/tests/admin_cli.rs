//! `baton admin` against a running broker: tables, JSON, and clear errors
//! with non-zero exits.

mod common;

use common::Baton;
use std::process::{Command, Output};

fn admin(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["admin", "--bootstrap", addr])
        .args(args)
        .output()
        .expect("run baton admin")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn topic_and_cluster_commands() {
    let baton = Baton::start(&[]);
    let a = &baton.addr;
    let created = stdout(&admin(
        a,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
        ],
    ));
    assert!(
        created.starts_with("created topic orders (3 partitions"),
        "{created}"
    );

    let list = stdout(&admin(a, &["topic", "list"]));
    assert!(list.lines().next().unwrap().starts_with("TOPIC"), "{list}");
    assert!(list.contains("orders  3"), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&admin(a, &["topic", "list", "--json"]))).unwrap();
    assert_eq!(json[0]["name"], "orders");
    assert_eq!(json[0]["partitions"], 3);

    let described = stdout(&admin(a, &["topic", "describe", "orders"]));
    assert!(
        described.contains("PARTITION  LEADER  LEADER_EPOCH  REPLICAS  ISR"),
        "{described}"
    );
    assert_eq!(
        described
            .lines()
            .filter(|l| l.ends_with("1             1         1"))
            .count(),
        3,
        "{described}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&admin(
        a,
        &["topic", "describe", "orders", "--json"],
    )))
    .unwrap();
    assert_eq!(json["partitions"][2]["leader_epoch"], 1);

    let cluster: serde_json::Value =
        serde_json::from_str(&stdout(&admin(a, &["cluster", "describe", "--json"]))).unwrap();
    assert_eq!(cluster["controller"], 1);
    assert_eq!(
        cluster["brokers"][0]["port"].to_string(),
        a.rsplit(':').next().unwrap()
    );
    assert_eq!(
        cluster["cluster_id"].as_str().unwrap().len(),
        22,
        "{cluster}"
    );
    // Combined mode: one controller, active, found through the broker.
    assert_eq!(cluster["controllers"][0]["role"], "Leader", "{cluster}");
    assert!(
        cluster["controllers"][0]["last_log_index"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(cluster["brokers"][0]["fenced"], false, "{cluster}");
    assert!(cluster["brokers"][0]["epoch"].as_u64().unwrap() >= 1);
    let table = stdout(&admin(a, &["cluster", "describe"]));
    let headers: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("CONTROLLER") || l.starts_with("BROKER"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        headers,
        [
            vec!["CONTROLLER", "ADDRESS", "ROLE", "TERM", "LAST_LOG_INDEX"],
            vec!["BROKER", "EPOCH", "ENDPOINT", "FENCED", "LAST_HEARTBEAT"]
        ],
        "{table}"
    );
    let elected = stdout(&admin(a, &["elect-leaders", "--preferred"]));
    assert_eq!(
        elected.trim(),
        "preferred-leader election: 0 partitions changed leader",
        "every partition already has its preferred leader"
    );

    assert!(stdout(&admin(a, &["topic", "delete", "orders"])).contains("deleted topic orders"));
    assert_eq!(stdout(&admin(a, &["topic", "list", "--json"])).trim(), "[]");
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let baton = Baton::start(&[]);
    let a = &baton.addr;
    stdout(&admin(a, &["topic", "create", "dup"]));
    let cases: [(&[&str], &str); 6] = [
        (
            &["topic", "create", "big", "--replication-factor", "3"],
            "InvalidReplicationFactor",
        ),
        (&["topic", "create", "dup"], "TopicAlreadyExists"),
        (&["topic", "create", "bad name"], "InvalidTopicException"),
        (&["topic", "describe", "missing"], "UnknownTopicOrPartition"),
        (&["topic", "delete", "missing"], "UnknownTopicOrPartition"),
        (
            &["topic", "create", "x", "--config", "nonsense"],
            "expected name=value",
        ),
    ];
    for (args, message) in cases {
        let out = admin(a, args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let out = admin("127.0.0.1:1", &["topic", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach 127.0.0.1:1"));
}

/// `baton admin producers describe`: the Rust client's default producer
/// (idempotent) shows up on each partition it wrote, with its last
/// sequence.
#[test]
fn producers_describe_lists_idempotent_producers() {
    let baton = Baton::start(&[]);
    let a = &baton.addr;
    stdout(&admin(
        a,
        &["topic", "create", "payments", "--partitions", "2"],
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer = client::Producer::new(client::ProducerConfig::new(a))
            .await
            .unwrap();
        for i in 0..3 {
            let record = client::Record::new("payments", format!("{i}")).with_partition(1);
            producer.send(record).await.unwrap().await.unwrap();
        }
    });
    let table = stdout(&admin(a, &["producers", "describe", "payments"]));
    let header = "PARTITION  LEADER  PRODUCER_ID  EPOCH  LAST_SEQUENCE  LAST_TIMESTAMP";
    assert!(table.starts_with(header), "{table}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "one producer, on partition 1 only: {table}");
    let cells: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        (cells[0], cells[1], cells[3], cells[4]),
        ("1", "1", "0", "2"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&admin(
        a,
        &["producers", "describe", "payments", "--json"],
    )))
    .unwrap();
    assert_eq!(json[0]["last_sequence"], 2);
}
