//! The `baton` binary. With no arguments it runs combined mode: a broker
//! and a one-member controller quorum in one process, data in `./data`, the
//! Kafka listener on 127.0.0.1:9092.

mod logging;

use broker::Settings;
use clap::Parser;
use std::path::PathBuf;

// jemalloc maps huge requests lazily: a hostile array count that makes the
// Kafka decoder reserve gigabytes cannot abort the process (with the system
// allocator it does; see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Baton: a Kafka-protocol broker with leader election you can trust.
///
/// With no subcommand, runs a broker and, unless --controllers names a
/// quorum, its own one-member controller quorum (combined mode). Settings:
/// defaults, then --config FILE, then BATON_* variables such as
/// BATON_DATA_DIR, then flags.
#[derive(Parser)]
#[command(name = "baton", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// A TOML file of settings (the same names as the flags, with '_').
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Administer topics and the cluster through a running broker.
    Admin(broker::admin_cli::AdminArgs),
    /// Run one member of the controller quorum (Raft).
    Controller(broker::controller_cli::ControllerArgs),
    /// Run a broker that joins the controller quorum named by --controllers.
    Broker(Box<BrokerArgs>),
    /// Run a cluster of separate processes on loopback: controllers and
    /// brokers, until Ctrl-C.
    LocalCluster(broker::local_cluster::LocalClusterArgs),
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// A TOML file of settings.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

fn main() -> anyhow::Result<()> {
    logging::init()?;
    let cli = Cli::parse();
    match cli.command {
        // Its own exit codes (0 ok, 1 failure, 3 not found; 2 is clap's).
        Some(Command::Admin(args)) => std::process::exit(broker::admin_cli::main(args)),
        Some(Command::Controller(args)) => {
            return multi_thread()?.block_on(broker::controller_cli::run(args));
        }
        Some(Command::LocalCluster(args)) => {
            return multi_thread()?.block_on(broker::local_cluster::run(args));
        }
        Some(Command::Broker(args)) => {
            let config = resolve(args.config.as_deref(), args.settings)?;
            if config.controllers.is_empty() {
                anyhow::bail!(
                    "baton broker needs --controllers (the controller quorum's addresses)"
                );
            }
            return multi_thread()?.block_on(run(config));
        }
        None => {}
    }
    let config = resolve(cli.config.as_deref(), cli.settings)?;
    multi_thread()?.block_on(run(config))
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Defaults, then the file, then `BATON_*`, then flags.
fn resolve(
    file: Option<&std::path::Path>,
    flags: Settings,
) -> anyhow::Result<broker::BrokerConfig> {
    let mut settings = Settings::default();
    if let Some(path) = file {
        settings = settings.overridden_by(Settings::from_file(path)?);
    }
    let env = std::env::vars().filter(|(k, _)| k != "BATON_LOG");
    let settings = settings
        .overridden_by(Settings::from_env(env)?)
        .overridden_by(flags);
    Ok(settings.resolve()?)
}

async fn run(config: broker::BrokerConfig) -> anyhow::Result<()> {
    broker::roles::run(config, broker::shutdown_signal(), |bound| {
        // One plain line on stdout that tools and tests can wait for. A
        // closed stdout (some supervisors close it) is no reason to stop:
        // the line is for whoever listens, and nobody does.
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "baton listening on {bound}");
    })
    .await
}
