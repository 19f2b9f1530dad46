//! The broker's link to the controller quorum: it follows committed
//! metadata (long poll, `controller::metadata_feed`) into the image, and
//! forwards topic changes to the active controller, answering the client
//! only once its own image shows the change, so a Metadata request that
//! follows on the same broker sees it. It also asks for producer-id blocks
//! (AllocateProducerIds), whose answer is the committed block itself.

use crate::image::{validate_topic_name, MetadataImage};
use crate::partition::log_config_for;
use crate::state::{Broker, Refusal};
use controller::commands::CommandResult;
use controller::service::{call_active, ControllerRequest, ControllerResponse};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long a forwarded change may take to commit and reach this broker.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows the quorum's committed metadata forever, installing each newer
/// image.
pub async fn follow_metadata(broker: Arc<Broker>) {
    let controllers = broker.session.controllers().to_vec();
    let (tx, mut rx) = tokio::sync::watch::channel((0, Default::default()));
    tokio::spawn(controller::metadata_feed::follow(controllers, tx));
    while rx.changed().await.is_ok() {
        let (applied, metadata) = rx.borrow_and_update().clone();
        let image = MetadataImage::new(applied, metadata);
        if let Err(e) = broker.apply_image(image) {
            tracing::error!(error = %e, "could not apply metadata");
        }
    }
}

/// Waits until the image satisfies `done`, up to [`CHANGE_TIMEOUT`].
pub async fn wait_for_image(broker: &Broker, done: impl Fn(&MetadataImage) -> bool) -> bool {
    let mut images = broker.subscribe_image();
    let waited = tokio::time::timeout(CHANGE_TIMEOUT, async {
        loop {
            if done(&images.borrow_and_update()) {
                return;
            }
            if images.changed().await.is_err() {
                return;
            }
        }
    });
    waited.await.is_ok() && done(&broker.image())
}

async fn ask(broker: &Broker, request: ControllerRequest) -> Result<CommandResult, Refusal> {
    ask_controllers(broker.session.controllers(), request).await
}

async fn ask_controllers(
    controllers: &[String],
    request: ControllerRequest,
) -> Result<CommandResult, Refusal> {
    match call_active(controllers, request, CHANGE_TIMEOUT).await {
        Some(ControllerResponse::Committed(CommandResult::Refused(why)))
        | Some(ControllerResponse::Refused(why)) => Err((ResponseError::InvalidRequest, why)),
        Some(ControllerResponse::Committed(result)) => Ok(result),
        Some(other) => Err((
            ResponseError::UnknownServerError,
            format!("unexpected controller answer {other:?}"),
        )),
        None => Err((
            ResponseError::RequestTimedOut,
            "no active controller answered".into(),
        )),
    }
}

/// A topic created (or that would be, with `validate_only`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Topic id (nil when only validated).
    pub id: Uuid,
    /// Partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
}

/// Checks a topic creation against the image and, unless `validate_only`,
/// has the controller commit it. `partitions` and `replication_factor` of -1
/// mean the broker defaults (`num.partitions`; `default.replication.factor`,
/// at most the number of registered brokers, so a smaller cluster such as
/// the one-process default still works).
pub async fn create_topic(
    broker: &Broker,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Created, Refusal> {
    validate_topic_name(name).map_err(|e| (ResponseError::InvalidTopicException, e.to_string()))?;
    let image = broker.image();
    let partitions = if partitions == -1 {
        broker.config.num_partitions
    } else {
        partitions
    };
    if partitions < 1 {
        let why = format!("number of partitions must be at least 1, got {partitions}");
        return Err((ResponseError::InvalidPartitions, why));
    }
    let replication_factor = if replication_factor == -1 {
        let registered = image.brokers.len().max(1) as i16;
        broker.config.default_replication_factor.min(registered)
    } else {
        replication_factor
    };
    // Whether enough brokers are live is the controller's call: this
    // broker's image may not show one that registered a moment ago. An
    // empty image (no controller reachable yet) refuses at once.
    let live = image.live_brokers().count();
    if replication_factor < 1 || live == 0 {
        let why = format!(
            "replication factor {replication_factor} needs that many live brokers; {live} are live"
        );
        return Err((ResponseError::InvalidReplicationFactor, why));
    }
    log_config_for(&broker.config.log, &configs).map_err(|e| (ResponseError::InvalidConfig, e))?;
    if image.topics.contains_key(name) {
        let why = format!("topic {name} already exists");
        return Err((ResponseError::TopicAlreadyExists, why));
    }
    let created = |id| Created {
        id,
        partitions,
        replication_factor,
    };
    if validate_only {
        return Ok(created(Uuid::nil()));
    }
    let request = ControllerRequest::CreateTopic {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs,
    };
    ask(broker, request).await.map_err(|(e, why)| {
        if why.contains("already exists") {
            (ResponseError::TopicAlreadyExists, why)
        } else if why.contains("replication factor") {
            (ResponseError::InvalidReplicationFactor, why)
        } else {
            (e, why)
        }
    })?;
    let id = wait_topic(broker, name, |t| t.is_some()).await?;
    Ok(created(id.unwrap_or_default()))
}

/// Waits until the image has (or lacks) topic `name` as `done` wants;
/// returns its id.
async fn wait_topic(
    broker: &Broker,
    name: &str,
    done: impl Fn(Option<&controller::metadata::Topic>) -> bool,
) -> Result<Option<Uuid>, Refusal> {
    if wait_for_image(broker, |i| done(i.topics.get(name))).await {
        Ok(broker.image().topics.get(name).map(|t| t.id))
    } else {
        let why = "the change committed but has not reached this broker yet".to_string();
        Err((ResponseError::RequestTimedOut, why))
    }
}

/// Raises a topic's partition count to `count`.
pub async fn create_partitions(
    broker: &Broker,
    name: &str,
    count: i32,
    validate_only: bool,
) -> Result<(), Refusal> {
    let image = broker.image();
    let Some(topic) = image.topics.get(name) else {
        let why = format!("topic {name} does not exist");
        return Err((ResponseError::UnknownTopicOrPartition, why));
    };
    let existing = topic.partitions.len() as i32;
    if count <= existing {
        let why = format!("topic {name} has {existing} partitions; {count} would not add any");
        return Err((ResponseError::InvalidPartitions, why));
    }
    if validate_only {
        return Ok(());
    }
    let request = ControllerRequest::CreatePartitions {
        name: name.to_string(),
        count,
    };
    ask(broker, request).await?;
    wait_topic(broker, name, |t| {
        t.is_some_and(|t| t.partitions.len() as i32 >= count)
    })
    .await
    .map(|_| ())
}

/// Deletes a topic; returns its id.
pub async fn delete_topic(broker: &Broker, name: &str) -> Result<Uuid, Refusal> {
    let Some(id) = broker.image().topics.get(name).map(|t| t.id) else {
        let why = format!("topic {name} does not exist");
        return Err((ResponseError::UnknownTopicOrPartition, why));
    };
    let request = ControllerRequest::DeleteTopic {
        name: name.to_string(),
    };
    ask(broker, request).await.map_err(|(e, why)| {
        if why.contains("does not exist") {
            (ResponseError::UnknownTopicOrPartition, why)
        } else {
            (e, why)
        }
    })?;
    wait_topic(broker, name, |t| t.is_none_or(|t| t.id != id)).await?;
    Ok(id)
}

/// Asks the controller to change `partition`'s ISR to `isr` (Kafka's
/// AlterPartition), as its leader in `leader_epoch`. The change counts once
/// the image shows it; a refusal (stale, or the leader moved) lets the rules
/// propose again.
pub async fn alter_isr(
    broker: Arc<Broker>,
    partition: Arc<crate::partition::Partition>,
    leader_epoch: i32,
    isr: Vec<i32>,
) {
    let image = broker.image();
    let state = image.partition(&partition.topic, partition.index);
    let (Some(state), Some(broker_epoch)) = (state, broker.session.epoch()) else {
        partition.isr_refused(leader_epoch);
        return;
    };
    let command = controller::commands::Command::AlterPartition {
        topic: partition.topic.clone(),
        partition: partition.index,
        leader: broker.id(),
        leader_epoch,
        partition_epoch: state.partition_epoch,
        isr: isr.clone(),
    };
    tracing::info!(
        "partition {}-{} leader {} epoch {leader_epoch}: proposing isr {isr:?} (now {:?})",
        partition.topic,
        partition.index,
        broker.id(),
        state.isr
    );
    let request = ControllerRequest::AlterPartition {
        broker_epoch,
        command,
    };
    match ask(&broker, request).await {
        Ok(CommandResult::Ok { .. }) => {
            let committed = wait_for_image(&broker, |i| {
                i.partition(&partition.topic, partition.index)
                    .is_some_and(|p| p.partition_epoch > state.partition_epoch)
            })
            .await;
            if !committed {
                partition.isr_refused(leader_epoch);
            }
        }
        Ok(_) | Err(_) => partition.isr_refused(leader_epoch),
    }
}

/// Asks the active controller for a block of producer ids (Kafka's
/// AllocateProducerIds, KIP-730) for `broker` in its session's current
/// epoch. The block is in the committed result, so no image wait. No
/// controller in time, or a refusal (fenced, stale epoch, ids exhausted;
/// logged), is COORDINATOR_NOT_AVAILABLE, which InitProducerId clients
/// retry. Takes the session rather than the
/// `Broker` so a background prefetch can own what it needs.
pub async fn allocate_producer_ids(
    session: &controller::broker_session::BrokerSession,
    broker: controller::metadata::BrokerId,
) -> Result<crate::producer_ids::ProducerIdBlock, Refusal> {
    let Some(broker_epoch) = session.epoch() else {
        let why = "not registered with the controller yet".to_string();
        return Err((ResponseError::CoordinatorNotAvailable, why));
    };
    let request = ControllerRequest::AllocateProducerIds {
        broker,
        broker_epoch,
    };
    match ask_controllers(session.controllers(), request).await {
        Ok(CommandResult::ProducerIds { first, count }) => {
            tracing::info!(first, count, broker_epoch, "producer id block allocated");
            Ok(crate::producer_ids::ProducerIdBlock { first, count })
        }
        Err((ResponseError::RequestTimedOut, why)) => {
            Err((ResponseError::CoordinatorNotAvailable, why))
        }
        Ok(other) => {
            let why = format!("unexpected answer to AllocateProducerIds: {other:?}");
            tracing::warn!(%why, "no producer id block");
            Err((ResponseError::UnknownServerError, why))
        }
        Err((_, why)) => {
            // A stale epoch right after a re-registration, or a quorum in
            // failover, passes: COORDINATOR_NOT_AVAILABLE is what clients
            // retry InitProducerId on.
            tracing::warn!(%why, broker_epoch, "the controller refused a producer id block");
            Err((ResponseError::CoordinatorNotAvailable, why))
        }
    }
}
