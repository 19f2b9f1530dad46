//! `baton admin` against a running broker: tables, JSON, and clear errors
//! with exit codes that say what failed (0 ok, 1 failure, 2 usage, 3 not
//! found).

mod common;

use common::Baton;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn admin(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["admin", "--bootstrap", addr])
        .args(args)
        .env_remove("BATON_BOOTSTRAP")
        .output()
        .expect("run baton admin")
}

/// `baton` with `args` as given and `env` set.
fn baton(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env_remove("BATON_BOOTSTRAP")
        .envs(env.iter().copied())
        .output()
        .expect("run baton")
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
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
    assert_eq!(json[0]["partitions"].as_array().unwrap().len(), 3);

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

/// Exit codes: 3 for a topic, partition or group that does not exist, 1
/// for other failures, 2 for bad usage.
#[test]
fn exit_codes_say_not_found() {
    let baton = Baton::start(&[]);
    let a = &baton.addr;
    stdout(&admin(a, &["topic", "create", "dup"]));
    let cases: [(&[&str], i32); 7] = [
        (&["topic", "describe", "missing"], 3),
        (&["topic", "delete", "missing"], 3),
        (&["group", "describe", "nobody"], 3),
        (
            &[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "dup:9",
                "--to-earliest",
            ],
            3,
        ),
        (&["topic", "create", "dup"], 1),
        (&["topic", "list", "--no-such-flag"], 2),
        (&["topic", "create", "x", "--config", "nonsense"], 2),
    ];
    for (args, expected) in cases {
        let out = admin(a, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), expected, "{args:?}: {err}");
    }
    let out = admin(a, &["group", "describe", "nobody"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("consumer group 'nobody' does not exist"),
        "{err}"
    );
}

/// A topic is the same object in `topic list` and `topic describe`
/// (`topic create` prints its subset), a group the same in `group list`
/// and `group describe`; errors under --json are one JSON document on
/// stdout.
#[test]
fn json_shapes_agree_and_errors_are_json() {
    let baton = Baton::start(&[]);
    let a = &baton.addr;
    let created = json(&admin(
        a,
        &["topic", "create", "orders", "--partitions", "2", "--json"],
    ));
    let listed = json(&admin(a, &["topic", "list", "--json"]));
    let described = json(&admin(a, &["topic", "describe", "orders", "--json"]));
    assert_eq!(listed[0], described, "list and describe differ");
    assert_eq!(described["partitions"][1]["isr"], serde_json::json!([1]));
    assert_eq!(
        (&created["name"], &created["id"]),
        (&described["name"], &described["id"])
    );
    assert_eq!(created["partitions"][1]["partition"], 1, "{created}");

    // A group exists once offsets are committed for it.
    let reset = ["group", "reset-offsets", "app", "--topic", "orders"];
    stdout(&admin(
        a,
        &[&reset[..], &["--to-earliest", "--execute"]].concat(),
    ));
    let groups = json(&admin(a, &["group", "list", "--json"]));
    let group = json(&admin(a, &["group", "describe", "app", "--json"]));
    for (key, value) in groups[0].as_object().unwrap() {
        assert_eq!(&group[key], value, "{key}: {groups} vs {group}");
    }

    let out = admin(a, &["topic", "describe", "missing", "--json"]);
    assert_eq!(code(&out), 3);
    let error = json(&out);
    assert_eq!(
        error["error"]["code"], "UNKNOWN_TOPIC_OR_PARTITION",
        "{error}"
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{error}"
    );
    let out = admin("127.0.0.1:1", &["topic", "list", "--json"]);
    assert_eq!(code(&out), 1);
    assert_eq!(json(&out)["error"]["code"], "NETWORK_EXCEPTION");
}

/// --bootstrap and --json after the subcommand; BATON_BOOTSTRAP when no
/// flag says otherwise.
#[test]
fn bootstrap_from_anywhere_and_the_environment() {
    let broker = Baton::start(&[]);
    let a = broker.addr.as_str();
    stdout(&admin(a, &["topic", "create", "t"]));
    let after = baton(&["admin", "topic", "list", "--bootstrap", a, "--json"], &[]);
    assert_eq!(json(&after)[0]["name"], "t", "{after:?}");
    let from_env = baton(&["admin", "topic", "list"], &[("BATON_BOOTSTRAP", a)]);
    assert!(stdout(&from_env).contains("t "), "{from_env:?}");
    let flag_wins = baton(
        &["admin", "topic", "list", "--bootstrap", a],
        &[("BATON_BOOTSTRAP", "127.0.0.1:1")],
    );
    stdout(&flag_wins);
    let env_used = baton(
        &["admin", "topic", "list"],
        &[("BATON_BOOTSTRAP", "127.0.0.1:1")],
    );
    assert!(
        String::from_utf8_lossy(&env_used.stderr).contains("cannot reach 127.0.0.1:1"),
        "{env_used:?}"
    );
}

#[test]
fn version_names_baton() {
    let version = baton(&["--version"], &[]);
    assert_eq!(stdout(&version).trim(), "baton 0.1.0");
}

/// A broker ignores BATON_BOOTSTRAP (set for `baton admin` in the same
/// shell) instead of refusing it as an unknown setting.
#[test]
fn broker_starts_with_baton_bootstrap_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("BATON_BOOTSTRAP", "127.0.0.1:9092")
        .env("BATON_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start baton");
    let listening = listening_line(&mut child);
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(
        listening.is_some(),
        "broker did not start: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The "baton listening on" line, if it comes within 30 s.
fn listening_line(child: &mut Child) -> Option<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("baton listening on ") {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).ok()
}

/// Output to a reader that went away ends the command quietly.
#[test]
fn closed_stdout_does_not_panic() {
    let baton = Baton::start(&[]);
    stdout(&admin(&baton.addr, &["topic", "create", "t"]));
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["admin", "--bootstrap", &baton.addr, "topic", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// reset-offsets plans without --execute and commits with it; a target
/// outside the log is clamped with a warning and marked in the plan.
#[test]
fn reset_offsets_is_a_dry_run_until_executed() {
    let baton = Baton::start(&[]);
    let a = &baton.addr;
    stdout(&admin(a, &["topic", "create", "jobs"]));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer = client::Producer::new(client::ProducerConfig::new(a))
            .await
            .unwrap();
        for i in 0..10 {
            let record = client::Record::new("jobs", format!("{i}"));
            producer.send(record).await.unwrap().await.unwrap();
        }
    });
    let committed = || {
        let group = json(&admin(a, &["group", "describe", "app", "--json"]));
        group["offsets"][0]["committed"].as_i64().unwrap()
    };
    let reset = ["group", "reset-offsets", "app", "--topic", "jobs"];
    let with = |extra: &[&str]| admin(a, &[&reset[..], extra].concat());
    stdout(&with(&["--to-offset", "3", "--execute"]));
    assert_eq!(committed(), 3);

    let dry = with(&["--to-offset", "7"]);
    let plan = stdout(&dry);
    let row: Vec<&str> = plan.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["app", "jobs", "0", "3", "7"], "{plan}");
    assert!(String::from_utf8_lossy(&dry.stderr).contains("dry run"));
    assert_eq!(committed(), 3, "a dry run changes nothing");
    stdout(&with(&["--to-offset", "7", "--dry-run"]));
    assert_eq!(committed(), 3, "nor does --dry-run");

    stdout(&with(&["--shift-by", "-2", "--execute"]));
    assert_eq!(committed(), 1, "3 moved back by 2");

    let clamped = with(&["--to-offset", "500", "--execute", "--json"]);
    let plan = json(&clamped);
    let row = &plan["partitions"][0];
    assert_eq!(
        (&row["requested"], &row["new_offset"], &row["clamped"]),
        (&Value::from(500), &Value::from(10), &Value::from(true)),
        "{plan}"
    );
    assert_eq!(plan["executed"], true);
    let warning = String::from_utf8_lossy(&clamped.stderr);
    assert!(
        warning.contains("New offset (500) is higher than latest offset for topic partition jobs-0. Value will be set to 10"),
        "{warning}"
    );
    assert_eq!(committed(), 10);

    let all = json(&admin(
        a,
        &[
            "group",
            "reset-offsets",
            "app",
            "--all-topics",
            "--to-earliest",
            "--json",
        ],
    ));
    let row = &all["partitions"][0];
    assert_eq!(
        (&row["topic"], &row["committed"], &row["new_offset"]),
        (&Value::from("jobs"), &Value::from(10), &Value::from(0)),
        "{all}"
    );
    assert_eq!(all["executed"], false);

    // ListOffsets by timestamp: every record is after 2001; none is
    // after 2999, so the high watermark, with a warning.
    let new_offset = |datetime: &str| {
        let plan = json(&with(&["--to-datetime", datetime, "--json"]));
        plan["partitions"][0]["new_offset"].as_i64().unwrap()
    };
    assert_eq!(new_offset("2001-01-01T00:00:00.000Z"), 0);
    assert_eq!(new_offset("2999-01-01T00:00:00.000+02:00"), 10);
}
