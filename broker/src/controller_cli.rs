//! `baton controller`: runs one member of the controller quorum as its own
//! process.

use clap::Args;
use controller::raft::node::ControllerConfig;
use controller::rules::lease::LeaseConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `baton controller` arguments.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// This controller's id (a key of --quorum).
    #[arg(long)]
    id: u64,
    /// Every controller: id=host:port,id=host:port,... (the same on all).
    #[arg(long, value_parser = parse_quorum)]
    quorum: BTreeMap<u64, String>,
    /// Where the Raft log, vote and snapshots live.
    #[arg(long, default_value = "data/controller")]
    data_dir: PathBuf,
    /// broker.session.timeout.ms.
    #[arg(long, default_value_t = controller::rules::lease::DEFAULT_SESSION_TIMEOUT_MS)]
    session_timeout_ms: u64,
    /// Largest clock-rate error assumed between nodes, in parts per million.
    #[arg(long, default_value_t = 10_000)]
    max_clock_drift_ppm: u64,
}

fn parse_quorum(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut quorum = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("expected id=host:port, got {part:?}"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("controller id {id:?} is not a number"))?;
        if quorum.insert(id, addr.to_string()).is_some() {
            return Err(format!("controller id {id} appears twice"));
        }
    }
    if quorum.is_empty() {
        return Err("the quorum is empty".into());
    }
    Ok(quorum)
}

/// Runs the controller until SIGINT or SIGTERM.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let addr = args
        .quorum
        .get(&args.id)
        .ok_or_else(|| anyhow::anyhow!("controller {} is not in --quorum", args.id))?
        .clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let lease = LeaseConfig {
        session_timeout_ms: args.session_timeout_ms,
        max_clock_drift_ppm: args.max_clock_drift_ppm,
    };
    let config = ControllerConfig::new(args.id, args.quorum, args.data_dir);
    let running = controller::service::start(config, lease, listener).await?;
    // As the broker's ready line: a closed stdout must not stop the process.
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
        "baton controller {} listening on {addr}",
        args.id
    );
    crate::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
