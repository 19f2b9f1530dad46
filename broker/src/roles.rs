//! How a `baton` process runs a broker: on its own, joining the controller
//! quorum named by `--controllers` (`baton broker`), or in combined mode
//! (`baton` with no `--controllers`) beside a one-member controller quorum
//! in the same process, as Kafka's combined mode does.

use crate::config::BrokerConfig;
use crate::state::Broker;
use controller::broker_session::BrokerSession;
use controller::raft::node::ControllerConfig;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The address a combined-mode controller records for itself in its Raft
/// membership. A one-member quorum never dials itself, and a fixed name
/// keeps the recorded quorum the same across restarts whatever port
/// `--controller-listen` binds (a controller refuses to start with a quorum
/// other than the one its log records).
pub const COMBINED_QUORUM_ADDRESS: &str = "in-process";

/// How long a starting broker waits to be registered and to see itself in
/// the metadata before giving up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a broker (and in combined mode its controller) until `shutdown`.
/// `ready` is called with the bound Kafka address once the broker is
/// registered and has its first metadata.
pub async fn run(
    mut config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let bound = listener.local_addr()?;
    if config.advertised_port == 0 {
        // --listen HOST:0 picks a free port: advertise the one we got.
        config.advertised_port = bound.port();
    }
    let embedded = match config.controllers.is_empty() {
        true => Some(start_combined_controller(&mut config).await?),
        false => None,
    };
    let endpoint = format!("{}:{}", config.advertised_host, config.advertised_port);
    let addrs: Vec<String> = config.controllers.iter().map(|(_, a)| a.clone()).collect();
    let session = BrokerSession::new(config.node_id, endpoint.clone(), addrs, config.lease);
    let broker = Broker::open(config, session.clone())?;
    let session_task = tokio::spawn(session.clone().run());
    let feed_task = tokio::spawn(crate::controller_link::follow_metadata(broker.clone()));
    join(&broker).await?;
    tracing::info!(listen = %bound, advertised = %endpoint,
        data_dir = %broker.config.data_dir.display(), "baton broker ready");
    ready(bound);
    let controlled_shutdown = async {
        shutdown.await;
        // Stop leading first, then hand the partitions over at once.
        session.shutdown().await;
    };
    crate::server::serve(broker, listener, controlled_shutdown).await;
    session_task.abort();
    feed_task.abort();
    if let Some(controller) = embedded {
        controller.shutdown().await;
    }
    Ok(())
}

/// Starts the in-process controller of combined mode and points the
/// broker at it.
async fn start_combined_controller(
    config: &mut BrokerConfig,
) -> anyhow::Result<controller::service::Running> {
    let listener = tokio::net::TcpListener::bind(config.controller_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen for the controller on {}: {e}",
                config.controller_listen
            )
        })?;
    let addr = listener.local_addr()?.to_string();
    let id = u64::try_from(config.node_id)
        .map_err(|_| anyhow::anyhow!("node id {} must not be negative", config.node_id))?;
    let quorum = BTreeMap::from([(id, COMBINED_QUORUM_ADDRESS.to_string())]);
    let controller_config = ControllerConfig::new(id, quorum, config.data_dir.join("controller"));
    let running = controller::service::start(controller_config, config.lease, listener).await?;
    tracing::info!(controller = %addr, "combined mode: in-process controller started");
    config.controllers = vec![(Some(id), addr)];
    Ok(running)
}

/// Waits until this broker is registered and its image shows it unfenced
/// in its current broker epoch (Kafka brokers likewise catch up on
/// metadata before they serve).
async fn join(broker: &Arc<Broker>) -> anyhow::Result<()> {
    let id = broker.id();
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let epoch = broker.session.epoch();
        let image = broker.image();
        let joined = epoch.is_some_and(|epoch| {
            image
                .brokers
                .get(&id)
                .is_some_and(|b| b.epoch == epoch && !b.fenced)
        });
        if joined && !image.cluster_id.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "broker {id} could not join the controller quorum at {:?} within {JOIN_TIMEOUT:?}",
                broker.session.controllers()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
