//! Starting under conditions a supervisor or a typo creates: nobody
//! reading stdout, an invalid `BATON_LOG`, and a `local-cluster` node that
//! dies at once. (A stdout closed outright, `>&-`, is reopened on
//! /dev/null by Rust's runtime before `main`; a pipe whose reader is gone
//! is what made the ready line panic.)

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Waits until `port` accepts a connection and `child` is still running a
/// second later; returns its stderr if it exited.
fn serves(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("never accepted a connection".into());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The ready line is written right after the port opens.
    std::thread::sleep(Duration::from_secs(1));
    match child.try_wait() {
        Ok(Some(status)) => Err(format!("exited after it served: {status}")),
        _ => Ok(()),
    }
}

/// Stops `child` and returns what it wrote on stderr.
fn stop(mut child: Child) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    stderr
}

fn broker(port: u16, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .env("BATON_LOG", "warn")
        .stderr(Stdio::piped());
    command
}

#[test]
fn a_broker_whose_stdout_nobody_reads_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // A pipe whose reading end is closed before the ready line: writing it
    // fails with EPIPE, as under a supervisor that closed its end.
    let mut child = broker(port, tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start baton");
    drop(child.stdout.take());
    let served = serves(&mut child, port);
    let stderr = stop(child);
    assert!(served.is_ok(), "{served:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_invalid_baton_log_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = broker(free_port(), tmp.path())
        .env("BATON_LOG", "info,openraft=loud")
        .spawn()
        .expect("run baton");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stderr = stop(child);
    assert!(
        status.is_some_and(|s| !s.success()),
        "started anyway ({status:?}): {stderr}"
    );
    assert!(
        stderr.contains("BATON_LOG") && stderr.contains("openraft=loud"),
        "the error does not name BATON_LOG and its value: {stderr}"
    );
    assert!(
        std::fs::read_dir(tmp.path()).expect("dir").next().is_none(),
        "it created data before refusing"
    );
}

#[test]
fn local_cluster_reports_a_node_that_dies_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Controller 1's data directory is a file: it exits at once.
    std::fs::write(tmp.path().join("controller-1"), b"not a directory").expect("write");
    let base = free_port().saturating_sub(200).max(1024);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["local-cluster", "--base-port", &base.to_string()])
        .args(["--controllers", "1", "--brokers", "1"])
        .arg("--data-dir")
        .arg(tmp.path())
        .env_remove("BATON_LOG")
        .output()
        .expect("run local-cluster");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    assert!(
        stderr.contains("controller 1 exited before it was up: exit status 1"),
        "{stderr}"
    );
    // Its own last words (the error it exited with) are repeated.
    let last = stderr.split_once("its last lines:\n").map(|(_, l)| l);
    assert!(
        last.is_some_and(|l| l.lines().any(|l| l.starts_with("Error: "))),
        "its last lines are not shown: {stderr}"
    );
}

#[test]
fn a_local_cluster_whose_stdout_nobody_reads_keeps_running() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["local-cluster", "--base-port", &port.to_string()])
        .args(["--controller-base-port", &free_port().to_string()])
        .args(["--controllers", "1", "--brokers", "1"])
        .arg("--data-dir")
        .arg(tmp.path())
        .env("BATON_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start local-cluster");
    drop(child.stdout.take());
    let served = serves(&mut child, port);
    // Its `bootstrap:` line comes once the broker has registered.
    std::thread::sleep(Duration::from_secs(2));
    let running = matches!(child.try_wait(), Ok(None));
    // SIGTERM, so that local-cluster stops the nodes it started (SIGKILL
    // would leave them running).
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let _ = child.wait();
    let stderr = stop(child);
    assert!(served.is_ok() && running, "{served:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
