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
    // Bound now (a taken port fails at once, and `HOST:0` learns its port
    // for the registration), listening only once registered: until then a
    // client's connect is refused and it tries another broker, instead of
    // being accepted by a broker that cannot answer yet.
    let socket = bind(config.listen)?;
    let bound = socket.local_addr()?;
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
    let listener = socket
        .listen(LISTEN_BACKLOG)
        .map_err(|e| anyhow::anyhow!("cannot listen on {bound}: {e}"))?;
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

/// The accept queue of the Kafka listener (what `std`'s listeners use).
const LISTEN_BACKLOG: u32 = 1024;

/// How often a broker that has not joined yet says what it waits for.
const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(3);

/// A socket bound to `addr` but not yet listening.
fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpSocket> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }?;
    // As `std`'s listeners do: a restarted broker rebinds at once even
    // while its old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    Ok(socket)
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
/// Says every few seconds what it still waits for, so a broker whose
/// controllers are unreachable is not silent.
async fn join(broker: &Arc<Broker>) -> anyhow::Result<()> {
    let id = broker.id();
    let controllers = broker.session.controllers().join(",");
    let started = tokio::time::Instant::now();
    let deadline = started + JOIN_TIMEOUT;
    let mut next_report = started + WAITING_LOG_INTERVAL;
    loop {
        let waiting = join_wait(id, broker.session.epoch(), &broker.image());
        let Some(waiting) = waiting else {
            return Ok(());
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            anyhow::bail!(
                "broker {id} could not join the controller quorum at {controllers} within \
                 {JOIN_TIMEOUT:?}: {waiting}"
            );
        }
        if now >= next_report {
            next_report = now + WAITING_LOG_INTERVAL;
            tracing::warn!(broker = id, %controllers, waited = ?started.elapsed(),
                gives_up_in = ?deadline - now,
                "not serving clients yet: {waiting}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a starting broker still waits for before it may serve, or `None`
/// once it has joined: registered (a broker epoch), and an image from the
/// quorum that shows it unfenced in that epoch.
fn join_wait(
    id: i32,
    epoch: Option<u64>,
    image: &crate::image::MetadataImage,
) -> Option<&'static str> {
    let Some(epoch) = epoch else {
        return Some("no controller has registered it (none reachable, or no active one)");
    };
    if image.cluster_id.is_empty() {
        return Some("registered, waiting for the first metadata from the controllers");
    }
    match image.brokers.get(&id) {
        Some(b) if b.epoch == epoch && !b.fenced => None,
        _ => Some("registered, waiting for metadata that shows its registration"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::metadata::BrokerRegistration;

    #[test]
    fn join_wait_table() {
        let image = |cluster: &str, broker: Option<(u64, bool)>| {
            let mut image = crate::image::MetadataImage {
                cluster_id: cluster.into(),
                ..Default::default()
            };
            if let Some((epoch, fenced)) = broker {
                let registration = BrokerRegistration {
                    id: 1,
                    epoch,
                    endpoint: "b1:9092".into(),
                    fenced,
                    incarnation: 7,
                };
                image.brokers.insert(1, registration);
            }
            image
        };
        let cases = [
            ("not registered", None, image("c", Some((5, false))), false),
            ("no metadata yet", Some(5), image("", None), false),
            (
                "image predates the registration",
                Some(5),
                image("c", None),
                false,
            ),
            (
                "image shows an older epoch",
                Some(5),
                image("c", Some((4, false))),
                false,
            ),
            (
                "image shows it fenced",
                Some(5),
                image("c", Some((5, true))),
                false,
            ),
            ("joined", Some(5), image("c", Some((5, false))), true),
        ];
        for (name, epoch, image, joined) in cases {
            assert_eq!(join_wait(1, epoch, &image).is_none(), joined, "{name}");
        }
    }
}
