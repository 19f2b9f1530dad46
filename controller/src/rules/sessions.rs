//! Broker sessions as the active controller sees them: which heartbeat it
//! last received from each broker epoch, and which sessions have expired.
//! Pure: every instant is a parameter (the controller's monotonic ms).
//!
//! A controller that becomes active starts a new tracker with
//! `active_since`: it knows nothing its predecessor received, so it fences
//! nobody before a full session timeout has passed (claim 2).

use super::lease::{session_expired, LeaseConfig};
use crate::metadata::{BrokerId, ClusterMetadata};
use std::collections::BTreeMap;

/// Why a heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// No broker with that id is registered.
    #[error("unknown broker {0}")]
    UnknownBroker(BrokerId),
    /// The epoch is not the broker's current one: it must re-register.
    #[error("broker {id} epoch {sent} is stale (current {current})")]
    StaleEpoch {
        /// Broker id.
        id: BrokerId,
        /// Epoch sent.
        sent: u64,
        /// Current epoch.
        current: u64,
    },
    /// The broker is fenced: it must re-register before it may lead again.
    #[error("broker {0} is fenced; register again")]
    Fenced(BrokerId),
}

/// The active controller's view of broker sessions.
#[derive(Debug, Clone)]
pub struct SessionTracker {
    config: LeaseConfig,
    active_since_ms: u64,
    /// Broker -> (epoch, when its last heartbeat was received).
    received: BTreeMap<BrokerId, (u64, u64)>,
}

impl SessionTracker {
    /// A tracker for a controller that became active at `active_since_ms`.
    pub fn new(config: LeaseConfig, active_since_ms: u64) -> SessionTracker {
        SessionTracker {
            config,
            active_since_ms,
            received: BTreeMap::new(),
        }
    }

    /// Records a heartbeat received at `now_ms`, if it belongs to the
    /// broker's current, unfenced registration.
    pub fn heartbeat(
        &mut self,
        meta: &ClusterMetadata,
        id: BrokerId,
        epoch: u64,
        now_ms: u64,
    ) -> Result<(), HeartbeatError> {
        let broker = meta
            .brokers
            .get(&id)
            .ok_or(HeartbeatError::UnknownBroker(id))?;
        if broker.epoch != epoch {
            return Err(HeartbeatError::StaleEpoch {
                id,
                sent: epoch,
                current: broker.epoch,
            });
        }
        if broker.fenced {
            return Err(HeartbeatError::Fenced(id));
        }
        self.received.insert(id, (epoch, now_ms));
        Ok(())
    }

    /// Unfenced brokers whose session has expired at `now_ms`, with the
    /// epoch to fence (proposed as `Command::FenceBroker`).
    pub fn expired(&self, meta: &ClusterMetadata, now_ms: u64) -> Vec<(BrokerId, u64)> {
        meta.brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let received = self
                    .received
                    .get(&b.id)
                    .filter(|(e, _)| *e == b.epoch)
                    .map(|&(_, at)| at);
                session_expired(&self.config, received, self.active_since_ms, now_ms)
            })
            .map(|b| (b.id, b.epoch))
            .collect()
    }

    /// Milliseconds since the broker's last heartbeat, for `cluster describe`.
    pub fn heartbeat_age_ms(&self, id: BrokerId, now_ms: u64) -> Option<u64> {
        self.received
            .get(&id)
            .map(|&(_, at)| now_ms.saturating_sub(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{apply, Command};

    const C: LeaseConfig = LeaseConfig {
        session_timeout_ms: 1000,
        max_clock_drift_ppm: 10_000,
    };

    fn meta_with(brokers: &[BrokerId]) -> ClusterMetadata {
        let mut meta = ClusterMetadata::default();
        for &id in brokers {
            apply(
                &mut meta,
                &Command::RegisterBroker {
                    id,
                    endpoint: String::new(),
                    incarnation: 0,
                },
                false,
            );
        }
        meta
    }

    /// Step by step: heartbeats keep a session alive; silence expires it
    /// exactly one session timeout after the last one received.
    #[test]
    fn sessions_expire_after_the_timeout() {
        let meta = meta_with(&[1, 2]);
        let mut t = SessionTracker::new(C, 0);
        t.heartbeat(&meta, 1, 1, 100).unwrap();
        t.heartbeat(&meta, 2, 2, 500).unwrap();
        assert_eq!(t.expired(&meta, 1_099), vec![]);
        assert_eq!(t.expired(&meta, 1_100), vec![(1, 1)]);
        assert_eq!(t.expired(&meta, 1_500), vec![(1, 1), (2, 2)]);
        t.heartbeat(&meta, 1, 1, 1_200).unwrap();
        assert_eq!(t.expired(&meta, 1_500), vec![(2, 2)]);
    }

    /// A controller that takes over mid-session fences nobody for a full
    /// timeout, even brokers it never heard from.
    #[test]
    fn new_active_controller_waits_a_full_timeout() {
        let meta = meta_with(&[1]);
        let t = SessionTracker::new(C, 5_000);
        assert_eq!(t.expired(&meta, 5_999), vec![]);
        assert_eq!(t.expired(&meta, 6_000), vec![(1, 1)]);
    }

    #[test]
    fn bad_heartbeats_are_refused() {
        let mut meta = meta_with(&[1]);
        let mut t = SessionTracker::new(C, 0);
        assert_eq!(
            t.heartbeat(&meta, 9, 1, 0),
            Err(HeartbeatError::UnknownBroker(9))
        );
        assert_eq!(
            t.heartbeat(&meta, 1, 7, 0),
            Err(HeartbeatError::StaleEpoch {
                id: 1,
                sent: 7,
                current: 1
            })
        );
        apply(&mut meta, &Command::FenceBroker { id: 1, epoch: 1 }, false);
        assert_eq!(t.heartbeat(&meta, 1, 1, 0), Err(HeartbeatError::Fenced(1)));
        assert_eq!(
            t.expired(&meta, 10_000),
            vec![],
            "fenced brokers are not fenced again"
        );
        // Re-registration: a new epoch, a new session.
        apply(
            &mut meta,
            &Command::RegisterBroker {
                id: 1,
                endpoint: String::new(),
                incarnation: 0,
            },
            false,
        );
        assert_eq!(
            t.heartbeat(&meta, 1, 1, 0),
            Err(HeartbeatError::StaleEpoch {
                id: 1,
                sent: 1,
                current: 2
            })
        );
        t.heartbeat(&meta, 1, 2, 10_000).unwrap();
        assert_eq!(t.expired(&meta, 10_500), vec![]);
    }
}
