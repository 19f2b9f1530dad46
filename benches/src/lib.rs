//! What the cluster benchmarks share: `baton` controller and broker
//! processes on loopback, killed when dropped.

pub mod campaign;
pub mod limits;
pub mod procstat;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `baton` process; SIGKILLed when dropped.
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `baton args...` and waits for a stdout line starting with `ready`.
pub fn spawn(baton: &Path, args: &[String], ready: &str) -> Node {
    let mut child = Command::new(baton)
        .args(args)
        .env("BATON_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start baton");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&ready) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("node did not start");
    Node(child)
}

/// `baton broker` arguments for broker `id` on `port`.
pub fn broker_args(id: i32, port: u16, quorum: &str, dir: &Path) -> Vec<String> {
    let data = dir.join(format!("broker-{id}")).display().to_string();
    [
        "broker",
        "--node-id",
        &id.to_string(),
        "--controllers",
        quorum,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data,
    ])
    .collect()
}

/// The `baton` binary: `given`, else the one next to this executable.
pub fn baton_binary(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| std::env::current_exe().unwrap().with_file_name("baton"))
}

/// Three controllers (ports `base_port + 100..`) with data under `dir`;
/// returns them and the `--quorum` string.
pub fn controllers(baton: &Path, base_port: u16, dir: &Path) -> (Vec<Node>, String) {
    let quorum: Vec<String> = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, base_port + 100 + i))
        .collect();
    let quorum = quorum.join(",");
    let nodes = (1..=3)
        .map(|id| {
            let data = dir.join(format!("controller-{id}")).display().to_string();
            let a = [
                "controller",
                "--id",
                &id.to_string(),
                "--quorum",
                &quorum,
                "--data-dir",
                &data,
            ];
            spawn(baton, &a.map(String::from), "baton controller")
        })
        .collect();
    (nodes, quorum)
}
