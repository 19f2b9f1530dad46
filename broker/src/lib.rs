//! The Baton broker: serves Baton's partition logs over the Apache Kafka wire
//! protocol, so Kafka clients work against it unchanged.
//!
//! `server` accepts connections and reads frames (`frame`); `dispatch`
//! decodes each request with the `kafka-protocol` crate, checks it against
//! the advertised versions (`versions`) and routes it to `handlers`, which
//! work on the shared `state`: the metadata image (`image`, followed from
//! the controller quorum by `controller_link`) and the partition replicas
//! (`partition`). `roles` runs a broker alone or beside an in-process
//! controller (combined mode).

pub mod acting;
pub mod admin_cli;
pub mod admin_groups_cli;
pub mod admin_topic_io;
pub mod clock;
pub mod config;
pub mod controller_cli;
pub mod controller_link;
pub mod coordinator;
pub mod dispatch;
pub mod durable_end;
pub mod fetch_sessions;
pub mod fetcher;
pub mod frame;
pub mod handlers;
pub mod image;
pub mod local_cluster;
pub mod partition;
pub mod producer_ids;
pub mod purgatory;
pub mod replica_manager;
pub mod replica_wait;
pub mod roles;
pub mod serve_windows;
pub mod server;
pub mod state;
pub mod versions;

pub use config::{BrokerConfig, Settings};
pub use state::Broker;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
    tracing::info!("shutting down");
}
