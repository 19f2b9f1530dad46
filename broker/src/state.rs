//! The broker's shared state: the metadata image, the partitions it leads,
//! and the signal that wakes long-polling fetches.

use crate::config::BrokerConfig;
use crate::image::{partition_dir, validate_topic_name, MetadataImage, TopicMeta};
use crate::partition::{log_config_for, Partition};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

/// A refusal for an admin operation: the Kafka error and a message.
pub type Refusal = (ResponseError, String);

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    /// Resolved configuration.
    pub config: BrokerConfig,
    image: Mutex<MetadataImage>,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    /// Bumped whenever a high watermark moves: long-poll fetches wait on it
    /// instead of polling.
    pub data_version: watch::Sender<u64>,
    /// Committed consumer-group offsets.
    pub group_offsets: crate::groups::GroupOffsets,
    _lock: storage::fs::DirLock,
}

impl Broker {
    /// Loads the image and opens (recovering) every partition's log.
    pub fn open(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let lock = storage::fs::DirLock::acquire(&config.data_dir)?;
        let image = MetadataImage::load_or_create(&config.data_dir)?;
        let mut partitions = HashMap::new();
        for (name, topic) in &image.topics {
            let log_config = log_config_for(&config.log, &topic.configs)
                .map_err(|e| anyhow::anyhow!("topic {name}: {e}"))?;
            for p in 0..topic.partitions {
                let dir = partition_dir(&config.data_dir, name, p);
                let partition = Partition::open(dir, name, p, topic.id, log_config.clone())?;
                partitions.insert((name.clone(), p), Arc::new(partition));
            }
        }
        let group_offsets = crate::groups::GroupOffsets::load(&config.data_dir)?;
        Ok(Arc::new(Broker {
            config,
            image: Mutex::new(image),
            partitions: RwLock::new(partitions),
            data_version: watch::channel(0).0,
            group_offsets,
            _lock: lock,
        }))
    }

    /// The metadata image.
    pub fn image(&self) -> MutexGuard<'_, MetadataImage> {
        self.image.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partition, if this broker leads it.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        partitions.get(&(topic.to_string(), index)).cloned()
    }

    /// Every partition, for maintenance.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        partitions.values().cloned().collect()
    }

    /// Wakes long-poll fetches after a high watermark moved.
    pub fn notify_data(&self) {
        self.data_version.send_modify(|v| *v += 1);
    }

    /// Creates a topic (or only checks that it could be, with
    /// `validate_only`). `partitions` of -1 means `num_partitions`.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, Refusal> {
        validate_topic_name(name)
            .map_err(|e| (ResponseError::InvalidTopicException, e.to_string()))?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions < 1 {
            let why = format!("number of partitions must be at least 1, got {partitions}");
            return Err((ResponseError::InvalidPartitions, why));
        }
        if replication_factor != -1 && replication_factor != 1 {
            let why = format!(
                "replication factor {replication_factor} is larger than the 1 available broker"
            );
            return Err((ResponseError::InvalidReplicationFactor, why));
        }
        let log_config = log_config_for(&self.config.log, &configs)
            .map_err(|e| (ResponseError::InvalidConfig, e))?;
        let mut image = self.image();
        if image.topics.contains_key(name) {
            return Err((
                ResponseError::TopicAlreadyExists,
                format!("topic {name} already exists"),
            ));
        }
        let meta = TopicMeta {
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(meta);
        }
        self.open_partitions(name, &meta, 0, &log_config)?;
        image.topics.insert(name.to_string(), meta.clone());
        image.save(&self.config.data_dir).map_err(storage_refusal)?;
        Ok(meta)
    }

    fn open_partitions(
        &self,
        name: &str,
        meta: &TopicMeta,
        from: i32,
        log_config: &storage::LogConfig,
    ) -> Result<(), Refusal> {
        let mut opened = Vec::new();
        for p in from..meta.partitions {
            let dir = partition_dir(&self.config.data_dir, name, p);
            let partition = Partition::open(dir, name, p, meta.id, log_config.clone())
                .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))?;
            opened.push(((name.to_string(), p), Arc::new(partition)));
        }
        let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        partitions.extend(opened);
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let mut image = self.image();
        let Some(meta) = image.topics.get(name).cloned() else {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ));
        };
        if count <= meta.partitions {
            let why = format!(
                "topic {name} has {} partitions; {count} would not add any",
                meta.partitions
            );
            return Err((ResponseError::InvalidPartitions, why));
        }
        if validate_only {
            return Ok(());
        }
        let log_config = log_config_for(&self.config.log, &meta.configs)
            .map_err(|e| (ResponseError::InvalidConfig, e))?;
        let grown = TopicMeta {
            partitions: count,
            ..meta.clone()
        };
        self.open_partitions(name, &grown, meta.partitions, &log_config)?;
        image.topics.insert(name.to_string(), grown);
        image.save(&self.config.data_dir).map_err(storage_refusal)
    }

    /// Deletes a topic: first from the image (durably), then its logs.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid, Refusal> {
        let mut image = self.image();
        let Some(meta) = image.topics.remove(name) else {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ));
        };
        image.save(&self.config.data_dir).map_err(storage_refusal)?;
        let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        for p in 0..meta.partitions {
            partitions.remove(&(name.to_string(), p));
            let dir = partition_dir(&self.config.data_dir, name, p);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted topic's log");
            }
        }
        Ok(meta.id)
    }
}

fn storage_refusal(e: std::io::Error) -> Refusal {
    (ResponseError::KafkaStorageError, e.to_string())
}
