//! The `baton` binary. With no arguments it runs one broker with its data in
//! `./data` and a Kafka listener on 127.0.0.1:9092.

use broker::{Broker, Settings};
use clap::Parser;
use std::path::PathBuf;

// jemalloc maps huge requests lazily: a hostile array count that makes the
// Kafka decoder reserve gigabytes cannot abort the process (with the system
// allocator it does; see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Baton: a Kafka-protocol broker with leader election you can trust.
///
/// With no subcommand, runs a broker (settings: defaults, then --config
/// FILE, then BATON_* variables such as BATON_DATA_DIR, then flags).
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Admin(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(broker::admin_cli::run(args));
        }
        Some(Command::Controller(args)) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(broker::controller_cli::run(args));
        }
        None => {}
    }
    let mut settings = Settings::default();
    if let Some(path) = &cli.config {
        settings = settings.overridden_by(Settings::from_file(path)?);
    }
    let env = std::env::vars().filter(|(k, _)| k != "BATON_LOG");
    let settings = settings
        .overridden_by(Settings::from_env(env)?)
        .overridden_by(cli.settings);
    let config = settings.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

async fn run(mut config: broker::BrokerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let bound = listener.local_addr()?;
    if config.advertised_port == 0 {
        // --listen HOST:0 picks a free port: advertise the one we got.
        config.advertised_port = bound.port();
    }
    let broker = Broker::open(config)?;
    // One plain line on stdout that tools and tests can wait for.
    println!("baton listening on {bound}");
    tracing::info!(
        listen = %listener.local_addr()?,
        advertised = %format!("{}:{}", broker.config.advertised_host, broker.config.advertised_port),
        data_dir = %broker.config.data_dir.display(),
        "baton broker ready"
    );
    let shutdown = broker::shutdown_signal();
    broker::server::serve(broker, listener, shutdown).await;
    Ok(())
}
