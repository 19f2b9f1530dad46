//! Real Kafka clients against the real binary: kcat (librdkafka),
//! confluent-kafka (librdkafka), kafka-python and aiokafka (each producer
//! idempotent: kafka-python by default, the others switched on) produce and consume
//! 10,000 records with keys and headers under every compression codec, and
//! the exact round trip is checked. `scripts/setup-test-deps.sh` installs
//! them (scripts/test.sh runs it first).

mod common;

use common::Baton;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const RECORDS: usize = 10_000;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let python = workspace().join("target/test-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-test-deps.sh",
        python.display()
    );
    python
}

fn kcat() -> Command {
    let found = Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "kcat is missing: run scripts/setup-test-deps.sh");
    Command::new("kcat")
}

#[test]
fn python_clients_round_trip_every_codec() {
    let baton = Baton::start(&[]);
    let script = workspace().join("scripts/clients/roundtrip.py");
    for client in ["confluent", "kafka-python", "aiokafka"] {
        for codec in CODECS {
            let topic = format!("{client}-{codec}");
            let out = Command::new(python())
                .arg(&script)
                .args([client, &baton.addr, &topic, codec, &RECORDS.to_string()])
                .output()
                .expect("run python");
            assert!(
                out.status.success(),
                "{client} {codec} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn kcat_round_trips_every_codec_and_lists_metadata() {
    let baton = Baton::start(&["--num-partitions", "3"]);
    for codec in CODECS {
        let topic = format!("kcat-{codec}");
        let mut producer = kcat()
            .args([
                "-b",
                &baton.addr,
                "-P",
                "-t",
                &topic,
                "-p",
                "0",
                "-K",
                ":",
                "-z",
                codec,
            ])
            .args(["-H", &format!("codec={codec}"), "-X", "acks=all"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("kcat producer");
        let mut input = String::new();
        for i in 0..RECORDS {
            input.push_str(&format!("key-{i}:value-{i}-{}\n", "x".repeat(i % 13)));
        }
        producer
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(producer.wait().unwrap().success(), "kcat produce {codec}");

        let out = kcat()
            .args([
                "-b",
                &baton.addr,
                "-C",
                "-t",
                &topic,
                "-p",
                "0",
                "-o",
                "beginning",
                "-e",
                "-q",
            ])
            .args(["-f", "%o|%k|%s|%h\n"])
            .output()
            .expect("kcat consumer");
        assert!(out.status.success(), "kcat consume {codec}");
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), RECORDS, "{codec}: record count");
        for (i, line) in lines.iter().enumerate() {
            let expected = format!("{i}|key-{i}|value-{i}-{}|codec={codec}", "x".repeat(i % 13));
            assert_eq!(*line, expected, "{codec}: record {i}");
        }
    }
    let listing = kcat()
        .args(["-b", &baton.addr, "-L"])
        .output()
        .expect("kcat -L");
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing.contains(&format!("broker 1 at {} (controller)", baton.addr)),
        "{listing}"
    );
    assert!(listing.contains(" 5 topics:"), "{listing}");
    assert!(
        listing.contains("topic \"kcat-zstd\" with 3 partitions:"),
        "{listing}"
    );
    for p in 0..3 {
        assert!(
            listing.contains(&format!("partition {p}, leader 1, replicas: 1, isrs: 1")),
            "{listing}"
        );
    }
}
