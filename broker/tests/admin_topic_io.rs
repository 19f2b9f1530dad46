//! `baton admin topic produce`, `consume` and `add-partitions`, run as the
//! real binary against a real broker: records with keys and headers go in
//! from stdin and come back out in kcat formats and as JSON; a topic grows
//! and refuses to shrink with Kafka's INVALID_PARTITIONS.

mod common;

use common::Baton;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `baton admin --bootstrap <broker> <args>` with `stdin`; fails the test
/// if it runs past `within` (a consume that does not stop).
fn admin(baton: &Baton, args: &[&str], stdin: &str, within: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["admin", "--bootstrap", &baton.addr])
        .args(args)
        .env("BATON_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run baton admin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let deadline = Instant::now() + within;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "baton admin {args:?} still running after {within:?}; printed {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// As `admin`, expecting success within 30 s; its stdout.
fn ok(baton: &Baton, args: &[&str], stdin: &str) -> String {
    let out = admin(baton, args, stdin, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "baton admin {args:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[test]
fn produced_lines_come_back_with_keys_headers_and_formats() {
    let baton = Baton::start(&[]);
    ok(
        &baton,
        &["topic", "create", "orders", "--partitions", "2"],
        "",
    );
    let stored = ok(
        &baton,
        &[
            "--json",
            "topic",
            "produce",
            "orders",
            "--key-delimiter",
            ":",
            "--header",
            "trace=abc",
            "--header",
            "app=cli",
        ],
        "k1:v1\nk2:v2:with colon\nno key here\n",
    );
    let stored = json_lines(&stored);
    assert_eq!(stored.len(), 3, "one line per record stored: {stored:?}");
    assert!(stored
        .iter()
        .all(|s| s["topic"] == "orders" && s["offset"].as_i64().is_some()));
    ok(
        &baton,
        &[
            "topic",
            "produce",
            "orders",
            "--key",
            "fixed",
            "--partition",
            "1",
        ],
        "p1\n",
    );

    // kcat's format tokens, to the ends seen at start.
    let format = "%p %k=%s %K %S [%h]\\n";
    let out = ok(
        &baton,
        &["topic", "consume", "orders", "--exit", "-f", format],
        "",
    );
    let headers = "[trace=abc,app=cli]";
    let p1 = |line: &str| format!("{} {line}", stored_partition(&stored, line));
    assert_eq!(
        sorted_lines(&out),
        sorted_lines(&format!(
            "{}\n{}\n{}\n1 fixed=p1 5 2 []\n",
            p1(&format!("k1=v1 2 2 {headers}")),
            p1(&format!("k2=v2:with colon 2 13 {headers}")),
            p1(&format!("=no key here -1 11 {headers}")),
        ))
    );

    // JSON, one partition.
    let out = ok(
        &baton,
        &["--json", "topic", "consume", "orders", "--exit", "-p", "1"],
        "",
    );
    let records = json_lines(&out);
    let fixed = records
        .iter()
        .find(|r| r["value"] == "p1")
        .unwrap_or_else(|| panic!("p1 on partition 1: {records:?}"));
    assert_eq!(fixed["key"], "fixed");
    assert_eq!(fixed["topic"], "orders");
    assert_eq!(fixed["partition"], 1);
    assert!(fixed["timestamp"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(fixed["headers"], serde_json::json!([]));
    assert!(records.iter().all(|r| r["partition"] == 1));
    let no_key = json_lines(&ok(
        &baton,
        &["--json", "topic", "consume", "orders", "--exit"],
        "",
    ))
    .into_iter()
    .find(|r| r["value"] == "no key here")
    .expect("the line without a delimiter");
    assert_eq!(no_key["key"], Value::Null);
    assert_eq!(
        no_key["headers"],
        serde_json::json!([{ "key": "trace", "value": "abc" }, { "key": "app", "value": "cli" }])
    );

    // --num stops early; --offset starts later.
    let out = ok(
        &baton,
        &[
            "topic", "consume", "orders", "-n", "1", "-p", "1", "-f", "%o\\n",
        ],
        "",
    );
    assert_eq!(out, "0\n");
    let out = ok(
        &baton,
        &[
            "topic", "consume", "orders", "--exit", "-p", "1", "-o", "1", "-f", "%o\\n",
        ],
        "",
    );
    let last = records.len() - 1;
    let want: String = (1..=last).map(|o| format!("{o}\n")).collect();
    assert_eq!(out, want);
}

/// The partition `produce --json` said the record with `line`'s key
/// went to.
fn stored_partition(stored: &[Value], line: &str) -> i64 {
    // Records were produced in input order: k1, k2, the keyless one.
    let index = ["k1=", "k2=", "=no key"]
        .iter()
        .position(|k| line.starts_with(k))
        .expect("a produced line");
    stored[index]["partition"].as_i64().expect("partition")
}

#[test]
fn add_partitions_grows_a_topic_and_refuses_to_shrink_it() {
    let baton = Baton::start(&[]);
    ok(&baton, &["topic", "create", "orders"], "");
    let grown: Value = serde_json::from_str(&ok(
        &baton,
        &[
            "--json",
            "topic",
            "add-partitions",
            "orders",
            "--total",
            "3",
        ],
        "",
    ))
    .expect("json");
    assert_eq!(grown["partitions"].as_array().map(Vec::len), Some(3));
    ok(
        &baton,
        &["topic", "add-partitions", "orders", "--num", "2"],
        "",
    );
    let described: Value =
        serde_json::from_str(&ok(&baton, &["--json", "topic", "describe", "orders"], ""))
            .expect("json");
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 5, "{described}");
    assert_eq!(partitions[4]["partition"], 4);

    let within = Duration::from_secs(30);
    let args = [
        "--json",
        "topic",
        "add-partitions",
        "orders",
        "--total",
        "4",
    ];
    let out = admin(&baton, &args, "", within);
    assert!(!out.status.success(), "fewer partitions accepted");
    let error: Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert_eq!(error["error"]["code"], "INVALID_PARTITIONS", "{error}");
    let out = admin(
        &baton,
        &["topic", "add-partitions", "orders", "--total", "5"],
        "",
        within,
    );
    assert!(!out.status.success(), "same count accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("code 37"));
}
