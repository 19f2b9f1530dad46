//! The broker's shared state: the metadata image (from the controller
//! quorum), its replica manager (the replicas it holds and their
//! fetchers), and its controller session (and so its lease).

use crate::config::BrokerConfig;
use crate::image::MetadataImage;
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;
use controller::broker_session::BrokerSession;
use controller::metadata::BrokerId;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use tokio::sync::watch;

/// A refusal for an admin operation: the Kafka error and a message.
pub type Refusal = (ResponseError, String);

/// What a request may act on in a partition this broker leads: the replica
/// and the leader epoch it leads in, read from one image.
#[derive(Debug, Clone)]
pub struct Led {
    /// The replica.
    pub partition: Arc<Partition>,
    /// The epoch this broker leads it in.
    pub leader_epoch: i32,
}

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    /// Resolved configuration.
    pub config: BrokerConfig,
    /// The newest applied metadata; replaced whole, never edited.
    image: watch::Sender<Arc<MetadataImage>>,
    /// The replicas this broker holds and their fetchers.
    replicas: ReplicaManager,
    /// The controller session: the broker epoch and the leader lease.
    pub session: BrokerSession,
    /// The groups this broker coordinates (one shard per led offsets
    /// partition).
    pub coordinator: crate::coordinator::Coordinator,
    /// The fetch sessions of the brokers that follow this one (KIP-227).
    pub fetch_sessions: crate::fetch_sessions::FetchSessions,
    /// Where this broker reads time (`crate::clock`).
    clock: Arc<dyn crate::clock::Clock>,
    /// When this broker acted as each partition's leader (claim 2 evidence).
    pub serve_windows: crate::serve_windows::ServeWindows,
    /// Producer-id blocks from the controller (KIP-730); an async lock,
    /// held while a block is fetched, shared with the background prefetch.
    pub producer_ids: Arc<tokio::sync::Mutex<crate::producer_ids::ProducerIdManager>>,
    _lock: storage::fs::DirLock,
}

impl Broker {
    /// Locks the data directory. Partitions (and the groups in them) open
    /// as the metadata names them ([`apply_image`](Self::apply_image)).
    pub fn open(config: BrokerConfig, session: BrokerSession) -> anyhow::Result<Arc<Broker>> {
        let clock = Arc::new(crate::clock::SystemClock::new());
        Broker::open_with(config, session, clock, Arc::new(storage::fs::OsFs))
    }

    /// As [`open`](Self::open), on the given clock and file system (tests:
    /// `ManualClock`, `FaultyFs`).
    pub fn open_with(
        config: BrokerConfig,
        session: BrokerSession,
        clock: Arc<dyn crate::clock::Clock>,
        fs: Arc<dyn storage::fs::FileSystem>,
    ) -> anyhow::Result<Arc<Broker>> {
        let lock = storage::fs::DirLock::acquire(&config.data_dir)?;
        Ok(Arc::new(Broker {
            serve_windows: crate::serve_windows::ServeWindows::load(&config.data_dir),
            replicas: ReplicaManager::new(&config, clock.clone(), fs),
            config,
            image: watch::channel(Arc::new(MetadataImage::default())).0,
            session,
            coordinator: Default::default(),
            fetch_sessions: Default::default(),
            clock,
            producer_ids: Default::default(),
            _lock: lock,
        }))
    }

    /// Milliseconds on this broker's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    /// Wall-clock milliseconds (timestamps, retention, serve windows).
    pub fn wall_ms(&self) -> i64 {
        self.clock.wall_ms()
    }

    /// The clock, for the tasks this broker starts.
    pub fn clock(&self) -> Arc<dyn crate::clock::Clock> {
        self.clock.clone()
    }

    /// This broker's node id.
    pub fn id(&self) -> BrokerId {
        self.config.node_id
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Changes of the image, for waiting on one.
    pub fn subscribe_image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// Installs a newer image (`replica_manager::replicas`): opens the
    /// replicas it gives this broker and starts the epochs it leads in (so
    /// no request sees leadership before the log is ready), then publishes
    /// it, then wakes what moved, hands the fetchers and the group
    /// coordinator their partitions, and closes replicas it no longer
    /// gives (removing a deleted topic's logs).
    pub fn apply_image(self: &Arc<Self>, image: MetadataImage) -> anyhow::Result<()> {
        let transition = self.replicas.transition(&image, &self.image())?;
        let image = Arc::new(image);
        let removed = self.replicas.install(transition, || {
            self.image.send_replace(image.clone());
        });
        self.replicas.follow(&image);
        self.coordinator.on_image(self, &image);
        self.replicas.remove(removed, &image);
        Ok(())
    }

    /// The replica, if this broker holds one.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.replicas.partition(topic, index)
    }

    /// The partition if this broker may act as its leader now: the client's
    /// epoch (`sent_epoch`, 0 or -1 for none) is current (claim 3), the
    /// image names this broker leader and its lease is live (claim 2).
    /// Otherwise the Kafka error the client gets. A check only, so private:
    /// a request acts through [`serve`](Self::serve), which checks again
    /// after acting.
    fn leader(&self, topic: &str, index: i32, sent_epoch: i32) -> Result<Led, ResponseError> {
        let image = self.image();
        let state = image
            .partition(topic, index)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        crate::acting::check_epoch(sent_epoch, state.leader_epoch)?;
        let standing = Standing {
            image_leader: state.leader,
            image_applied: image.applied,
            lease_enabled: self.config.leader_lease_enable,
            lease_valid: self.session.lease_valid(),
            image_index_needed: self.session.image_index_needed(),
        };
        if !standing.may_lead(self.id()) {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let partition = self
            .partition(topic, index)
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        Ok(Led {
            partition,
            leader_epoch: state.leader_epoch,
        })
    }

    /// Runs `act` on the partition as its leader, between two
    /// [`leader`](Self::leader) checks (see [`crate::acting`]): its result
    /// reaches the client only if this broker led in the same epoch on both
    /// sides of it, and only then is it recorded in the serve windows.
    pub fn serve<T>(
        &self,
        topic: &str,
        index: i32,
        sent_epoch: i32,
        act: impl FnOnce(&Led) -> Result<T, ResponseError>,
    ) -> Result<T, ResponseError> {
        crate::acting::between_checks(
            || self.leader(topic, index, sent_epoch),
            || self.wall_ms(),
            act,
            |led, at| {
                self.serve_windows
                    .served(topic, index, led.leader_epoch, at)
            },
        )
    }

    /// Every replica, for maintenance.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.replicas.all_partitions()
    }
}

/// What decides whether a broker may act as a partition's leader right now.
#[derive(Debug, Clone, Copy)]
struct Standing {
    /// The leader its metadata image names.
    image_leader: Option<i32>,
    /// The metadata log index that image includes.
    image_applied: u64,
    /// `leader.lease.enable`.
    lease_enabled: bool,
    /// Whether the session's lease is live.
    lease_valid: bool,
    /// The index the broker's current registration was applied at.
    image_index_needed: u64,
}

impl Standing {
    /// Claim 2: the image names `me`, and (with the lease on) the lease is
    /// live and the image is no older than the registration that gave it.
    /// A broker fenced while cut off from the controllers registers again
    /// the moment it can, and its fresh lease would otherwise let it serve
    /// from the image it had before, which still names it leader of
    /// partitions that moved meanwhile (found by the fault campaign's
    /// isolate-leader fault).
    fn may_lead(&self, me: i32) -> bool {
        let lease = !self.lease_enabled
            || (self.lease_valid && self.image_applied >= self.image_index_needed);
        self.image_leader == Some(me) && lease
    }
}

#[cfg(test)]
mod standing_tests {
    use super::Standing;

    #[test]
    fn a_broker_leads_only_named_with_a_live_lease_and_a_current_image() {
        let base = Standing {
            image_leader: Some(1),
            image_applied: 50,
            lease_enabled: true,
            lease_valid: true,
            image_index_needed: 40,
        };
        let cases = [
            ("named, live lease, image past registration", base, true),
            (
                "image exactly at registration",
                Standing {
                    image_index_needed: 50,
                    ..base
                },
                true,
            ),
            (
                "re-registered, image from before",
                Standing {
                    image_index_needed: 51,
                    ..base
                },
                false,
            ),
            (
                "lease ran out",
                Standing {
                    lease_valid: false,
                    ..base
                },
                false,
            ),
            (
                "another leader named",
                Standing {
                    image_leader: Some(2),
                    ..base
                },
                false,
            ),
            (
                "no leader named",
                Standing {
                    image_leader: None,
                    ..base
                },
                false,
            ),
            (
                "lease off: stale image still serves (Kafka's behaviour)",
                Standing {
                    lease_enabled: false,
                    lease_valid: false,
                    image_index_needed: 99,
                    ..base
                },
                true,
            ),
        ];
        for (name, standing, expected) in cases {
            assert_eq!(standing.may_lead(1), expected, "{name}");
        }
    }
}
