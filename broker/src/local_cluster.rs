//! `baton local-cluster`: a real cluster of separate OS processes on
//! loopback (controllers, then brokers, each its own `baton` process with
//! its own data directory), for users without docker and for the tests.
//! Ctrl-C (or SIGTERM) stops every process it started.
//!
//! It prints one line per process, `controller ID pid PID on ADDR` and
//! `broker ID pid PID on ADDR`, then `bootstrap: ADDR,ADDR,...`; tests read
//! these to find whom to kill or freeze. The processes' own output goes to
//! its stderr, each line prefixed with its node (`[broker 2] ...`).

mod output;

use clap::Args;
use controller::service::{call, ControllerRequest, ControllerResponse};
use output::{Output, Tail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// `baton local-cluster` arguments.
#[derive(Debug, Args)]
pub struct LocalClusterArgs {
    /// Number of brokers (ids 1..=N).
    #[arg(long, default_value_t = 3)]
    brokers: u16,
    /// Number of controllers (ids 1..=N).
    #[arg(long, default_value_t = 3)]
    controllers: u16,
    /// Parent directory of every node's data directory.
    #[arg(long, default_value = "data/local-cluster")]
    data_dir: PathBuf,
    /// Port of broker 1; broker i listens on base-port + i - 1.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Port of controller 1 [default: base-port + 100].
    #[arg(long)]
    controller_base_port: Option<u16>,
    /// leader.lease.enable of the brokers (false: Kafka's behaviour).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_lease_enable: bool,
    /// broker.session.timeout.ms of the controllers.
    #[arg(long, default_value_t = controller::rules::lease::DEFAULT_SESSION_TIMEOUT_MS)]
    session_timeout_ms: u64,
}

/// How long one process may take to report that it is up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One started process.
struct Node {
    name: String,
    child: Child,
}

/// Prints one line on stdout; a closed stdout is no reason to stop the
/// cluster (nobody reads the lines, that is all).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Runs the cluster until SIGINT or SIGTERM.
pub async fn run(args: LocalClusterArgs) -> anyhow::Result<()> {
    if args.brokers == 0 || args.controllers == 0 {
        anyhow::bail!("a cluster needs at least one controller and one broker");
    }
    let exe = std::env::current_exe()?;
    let controller_base = args.controller_base_port.unwrap_or(args.base_port + 100);
    let quorum: Vec<String> = (0..args.controllers)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, controller_base + i))
        .collect();
    let quorum = quorum.join(",");
    let mut nodes = Vec::new();
    let output = Output::start(std::io::stderr());
    let mut started = start_all(&exe, &args, &quorum, controller_base, &output, &mut nodes);
    if started.is_ok() {
        if let Err(e) = wait_for_brokers(&quorum, args.brokers).await {
            started = Err(e);
        }
    }
    match started {
        Ok(bootstrap) => {
            say(&format!("bootstrap: {bootstrap}"));
            tokio::select! {
                () = crate::shutdown_signal() => {}
                () = watch_children(&mut nodes) => {}
            }
        }
        Err(e) => {
            stop_all(&mut nodes);
            return Err(e);
        }
    }
    stop_all(&mut nodes);
    Ok(())
}

/// Starts the controllers, then the brokers; returns the bootstrap list.
fn start_all(
    exe: &Path,
    args: &LocalClusterArgs,
    quorum: &str,
    controller_base: u16,
    output: &Output,
    nodes: &mut Vec<Node>,
) -> anyhow::Result<String> {
    let timeout = args.session_timeout_ms.to_string();
    for i in 0..args.controllers {
        let id = (i + 1).to_string();
        let dir = args.data_dir.join(format!("controller-{id}"));
        let mut command = Command::new(exe);
        command.args(["controller", "--id", &id, "--quorum", quorum]);
        command.args(["--session-timeout-ms", &timeout]);
        command.arg("--data-dir").arg(&dir);
        let addr = format!("127.0.0.1:{}", controller_base + i);
        nodes.push(start(
            command,
            format!("controller {id}"),
            "baton controller",
            &addr,
            output,
        )?);
    }
    let mut bootstrap = Vec::new();
    for i in 0..args.brokers {
        let id = (i + 1).to_string();
        let addr = format!("127.0.0.1:{}", args.base_port + i);
        let dir = args.data_dir.join(format!("broker-{id}"));
        let mut command = Command::new(exe);
        command.args(["broker", "--node-id", &id, "--controllers", quorum]);
        command.args(["--listen", &addr]);
        command.args([
            "--leader-lease-enable",
            &args.leader_lease_enable.to_string(),
        ]);
        command.arg("--data-dir").arg(&dir);
        nodes.push(start(
            command,
            format!("broker {id}"),
            "baton listening on",
            &addr,
            output,
        )?);
        bootstrap.push(addr);
    }
    Ok(bootstrap.join(","))
}

/// Waits until the active controller has every broker registered and
/// unfenced, so the cluster is whole when the bootstrap line is printed.
async fn wait_for_brokers(quorum: &str, brokers: u16) -> anyhow::Result<()> {
    let addrs: Vec<String> = quorum
        .split(',')
        .filter_map(|p| p.split_once('=').map(|(_, a)| a.to_string()))
        .collect();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some((_, live)) = active_view(&addrs).await {
            if live >= usize::from(brokers) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the brokers did not all register within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The active controller's address and its count of unfenced brokers.
async fn active_view(addrs: &[String]) -> Option<(String, usize)> {
    for addr in addrs {
        if let Ok(ControllerResponse::Quorum {
            controller,
            brokers,
        }) = call(addr, ControllerRequest::DescribeQuorum).await
        {
            if controller.leader == Some(controller.id) {
                return Some((addr.clone(), brokers.iter().filter(|b| !b.fenced).count()));
            }
        }
    }
    None
}

/// Starts one process, its output forwarded through `output`, and waits
/// for its stdout line starting with `ready`. A process that exits first is
/// reported at once, with its exit status and last lines.
fn start(
    mut command: Command,
    name: String,
    ready: &str,
    addr: &str,
    output: &Output,
) -> anyhow::Result<Node> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let tail = Tail::default();
    let stderr_done = output.forward(name.clone(), stderr, tail.clone(), |_| true);
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    // The ready line is this process's protocol with local-cluster; any
    // other stdout line is output like its log.
    output.forward(name.clone(), stdout, tail.clone(), move |line| {
        let is_ready = line.starts_with(&ready);
        if is_ready {
            let _ = tx.send(());
        }
        !is_ready
    });
    let mut node = Node { name, child };
    if let Err(e) = wait_until_up(&mut node, &rx) {
        let _ = node.child.kill();
        let _ = node.child.wait();
        // Its last words are on their way through the pipe (which ends
        // with the process, unless something it started keeps it open).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stderr_done.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let last = tail.lines();
        let last = match last.is_empty() {
            true => "(it wrote nothing)".to_string(),
            false => last.join("\n"),
        };
        anyhow::bail!("{e}; its last lines:\n{last}");
    }
    say(&format!("{} pid {} on {addr}", node.name, node.child.id()));
    Ok(node)
}

/// Waits for `ready` from `node`, noticing at once if it exits instead.
fn wait_until_up(node: &mut Node, ready: &std::sync::mpsc::Receiver<()>) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match ready.recv_timeout(Duration::from_millis(20)) {
            Ok(()) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => {}
            // Its stdout closed: it is exiting, or will never say it is up.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(20)),
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            anyhow::bail!(
                "{} exited before it was up: {}",
                node.name,
                describe(status)
            );
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{} did not start within {START_TIMEOUT:?}", node.name);
        }
    }
}

/// An exit status as an operator reads it.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Reports processes that exit (a test may kill them on purpose); returns
/// only when all have.
async fn watch_children(nodes: &mut [Node]) {
    let mut reported = vec![false; nodes.len()];
    loop {
        for (node, seen) in nodes.iter_mut().zip(reported.iter_mut()) {
            if let (false, Ok(Some(status))) = (*seen, node.child.try_wait()) {
                say(&format!("{} exited: {}", node.name, describe(status)));
                *seen = true;
            }
        }
        if reported.iter().all(|r| *r) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM to every process (brokers first, so they hand over their
/// partitions while the controllers still run), then SIGKILL to any still
/// running after five seconds.
fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter_mut().rev() {
        if let Ok(pid) = i32::try_from(node.child.id()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        wait_or_kill(node, Duration::from_secs(5));
    }
}

fn wait_or_kill(node: &mut Node, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !matches!(node.child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = node.child.kill();
    let _ = node.child.wait();
}
