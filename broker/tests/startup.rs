//! How a broker starts when something is wrong, as an operator sees it: a
//! data directory it cannot use is named in the error, and a broker whose
//! controllers are unreachable says so every few seconds and refuses
//! connections (clients try another broker) until it has registered.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn a_data_directory_error_names_the_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let data_dir = file.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["--data-dir", data_dir.to_str().expect("utf-8")])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run baton");
    assert!(!out.status.success(), "started on a file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&data_dir.display().to_string()),
        "the error does not name {}: {stderr}",
        data_dir.display()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_broker_without_controllers_says_so_and_refuses_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let nobody = format!("1=127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["broker", "--node-id", "1", "--controllers", &nobody])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", tmp.path().to_str().expect("utf-8")])
        .env_remove("BATON_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start baton broker");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // Within a few seconds it says what it waits for, at the default level.
    let started = Instant::now();
    let said = next_waiting_line(&rx);
    assert!(started.elapsed() < Duration::from_secs(8), "{said}");
    assert!(said.contains(&nobody[2..]), "names its controllers: {said}");

    // Meanwhile its port refuses connections rather than accepting clients
    // it cannot answer.
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ());
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "a broker that has not registered accepted a connection"
    );
    // And it keeps saying so.
    next_waiting_line(&rx);
    let _ = child.kill();
    let _ = child.wait();
}

/// The next line saying the broker waits for its controllers, within 10 s.
fn next_waiting_line(lines: &std::sync::mpsc::Receiver<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("no waiting line within 10 s while the controllers are unreachable");
        if line.contains("not serving clients yet") {
            return line;
        }
    }
}
