//! The broker's side of its controller session and of the leader lease
//! (claim 2): register, heartbeat, follow the active controller, register
//! again after being fenced, and know at every instant whether the lease
//! allows serving as leader.
//!
//! The lease is computed from the instant a heartbeat was *sent* (on the
//! broker's monotonic clock), once the controller acknowledged it: see
//! [`crate::rules::lease`].

use crate::metadata::BrokerId;
use crate::rules::lease::{may_serve, LeaseConfig};
use crate::service::{call, ControllerRequest, ControllerResponse};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the broker knows of its session.
#[derive(Debug, Default)]
struct SessionState {
    /// Current broker epoch, once registered.
    epoch: Option<u64>,
    /// Monotonic ms (since `clock`) when the last acknowledged heartbeat was
    /// sent.
    acked_sent_at_ms: Option<u64>,
    /// The controller to talk to first.
    controller: Option<String>,
    /// The lease settings the controller sent at registration; until then,
    /// the configured ones.
    lease: Option<LeaseConfig>,
    /// The metadata index of the current registration: no image older than
    /// this may be served from (see [`BrokerSession::image_index_needed`]).
    registered_at_index: u64,
}

/// A broker's session with the controller quorum; cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerSession {
    id: BrokerId,
    endpoint: String,
    incarnation: u64,
    controllers: Vec<String>,
    lease: LeaseConfig,
    clock: Instant,
    state: Arc<Mutex<SessionState>>,
    /// For tests: stop sending heartbeats, as a frozen process would.
    paused: Arc<AtomicBool>,
    registrations: Arc<AtomicU64>,
}

impl BrokerSession {
    /// A session for broker `id` advertising `endpoint`, with the
    /// controllers' addresses.
    pub fn new(
        id: BrokerId,
        endpoint: String,
        controllers: Vec<String>,
        lease: LeaseConfig,
    ) -> BrokerSession {
        let incarnation = uuid::Uuid::new_v4().as_u64_pair().0;
        BrokerSession {
            id,
            endpoint,
            incarnation,
            controllers,
            lease,
            clock: Instant::now(),
            state: Arc::default(),
            paused: Arc::default(),
            registrations: Arc::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the lease allows serving as leader now.
    pub fn lease_valid(&self) -> bool {
        let (acked, lease) = {
            let state = self.lock();
            (state.acked_sent_at_ms, state.lease.unwrap_or(self.lease))
        };
        may_serve(&lease, acked, self.now_ms())
    }

    /// The oldest metadata image this broker may act as a leader from: the
    /// index its current registration was applied at. A broker fenced while
    /// cut off registers again and gets a fresh lease at once, but its image
    /// still names it leader of partitions the controller moved meanwhile;
    /// those moves are all at or below this index.
    pub fn image_index_needed(&self) -> u64 {
        self.lock().registered_at_index
    }

    /// The current broker epoch, if registered.
    pub fn epoch(&self) -> Option<u64> {
        self.lock().epoch
    }

    /// The controllers' addresses this session was given.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// Ends the session at once (controlled shutdown): the lease is dropped
    /// first, so this broker serves nothing more, then the controller fences
    /// this epoch and moves its partitions without waiting for the timeout.
    /// Heartbeats stop for good.
    pub async fn shutdown(&self) {
        self.set_paused(true);
        let epoch = {
            let mut state = self.lock();
            state.acked_sent_at_ms = None;
            state.epoch.take()
        };
        if let Some(epoch) = epoch {
            let answer = self
                .ask(ControllerRequest::ShutdownBroker { id: self.id, epoch })
                .await;
            match answer {
                Some(ControllerResponse::Committed(_)) => tracing::info!(
                    "broker {} controlled shutdown: broker epoch {epoch} ended",
                    self.id
                ),
                other => tracing::warn!(
                    "broker {} controlled shutdown: broker epoch {epoch} not ended ({other:?}); the controller fences it when its session times out",
                    self.id
                ),
            }
        }
    }

    /// How many times this broker has registered (tests).
    pub fn registrations(&self) -> u64 {
        self.registrations.load(Ordering::Relaxed)
    }

    /// Stops or resumes heartbeats, as SIGSTOP and SIGCONT would (tests).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Sends `request` to the active controller, following redirects.
    async fn ask(&self, request: ControllerRequest) -> Option<ControllerResponse> {
        let first = self.lock().controller.clone();
        let mut candidates: Vec<String> = first.into_iter().collect();
        candidates.extend(self.controllers.iter().cloned());
        for _ in 0..2 {
            for addr in candidates.clone() {
                match call(&addr, request.clone()).await {
                    Ok(ControllerResponse::NotController {
                        leader: Some((_, leader)),
                    }) => {
                        candidates.insert(0, leader);
                    }
                    Ok(ControllerResponse::NotController { leader: None }) | Err(_) => {}
                    Ok(answer) => {
                        let before = self.lock().controller.replace(addr.clone());
                        if before.as_deref() != Some(addr.as_str()) {
                            tracing::info!(
                                "broker {} follows the active controller at {addr}",
                                self.id
                            );
                        }
                        return Some(answer);
                    }
                }
            }
        }
        None
    }

    /// Runs the session forever: registers at once, then heartbeats every
    /// quarter session timeout.
    pub async fn run(self) {
        let mut first = true;
        let mut lease = LeaseLog::default();
        loop {
            if !std::mem::take(&mut first) {
                let lease = self.lock().lease.unwrap_or(self.lease);
                let interval = Duration::from_millis((lease.session_timeout_ms / 4).max(10));
                tokio::time::sleep(interval).await;
            }
            if self.paused.load(Ordering::Relaxed) {
                continue;
            }
            if let Some(change) = lease.observe(self.lease_valid()) {
                match self.epoch() {
                    Some(epoch) => {
                        tracing::info!("broker {} {change} (broker epoch {epoch})", self.id)
                    }
                    None => tracing::info!("broker {} {change} (not registered)", self.id),
                }
            }
            let epoch = self.lock().epoch;
            let Some(epoch) = epoch else {
                self.register().await;
                continue;
            };
            let sent_at = self.now_ms();
            match self
                .ask(ControllerRequest::Heartbeat { id: self.id, epoch })
                .await
            {
                Some(ControllerResponse::HeartbeatOk) => {
                    let mut state = self.lock();
                    state.acked_sent_at_ms =
                        Some(state.acked_sent_at_ms.map_or(sent_at, |a| a.max(sent_at)));
                }
                Some(ControllerResponse::Refused(why)) => {
                    // Fenced or stale: the session is over; the lease
                    // runs out on its own and a new registration starts
                    // a new session with a new epoch.
                    tracing::warn!(
                        "broker {} session ended (broker epoch {epoch}): {why}; registering again",
                        self.id
                    );
                    self.lock().epoch = None;
                }
                _ => {} // no controller reachable: the lease runs out
            }
        }
    }

    async fn register(&self) {
        let sent_at = self.now_ms();
        let request = ControllerRequest::RegisterBroker {
            id: self.id,
            endpoint: self.endpoint.clone(),
            incarnation: self.incarnation,
        };
        if let Some(ControllerResponse::Registered {
            epoch,
            session_timeout_ms,
            max_clock_drift_ppm,
            metadata_index,
        }) = self.ask(request).await
        {
            self.registrations.fetch_add(1, Ordering::Relaxed);
            let mut state = self.lock();
            state.epoch = Some(epoch);
            state.registered_at_index = metadata_index;
            state.lease = Some(LeaseConfig {
                session_timeout_ms,
                max_clock_drift_ppm,
            });
            // Registration counts as the session's first heartbeat.
            state.acked_sent_at_ms = Some(sent_at);
        }
    }
}

/// Says when the lease changes, as the session loop sees it: a leader
/// whose lease lapsed stops serving until a heartbeat is acknowledged.
#[derive(Debug, Default)]
struct LeaseLog {
    /// Whether the lease was valid at the last look.
    valid: bool,
    /// Whether it was ever valid (the first one is acquired, not regained).
    ever: bool,
}

impl LeaseLog {
    fn observe(&mut self, valid: bool) -> Option<&'static str> {
        if valid == std::mem::replace(&mut self.valid, valid) {
            return None;
        }
        Some(match (valid, std::mem::replace(&mut self.ever, true)) {
            (true, false) => "lease acquired: may serve as leader",
            (true, true) => "lease regained: may serve as leader again",
            (false, _) => {
                "lease lost: no heartbeat acknowledged in time; not serving as leader until one is"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LeaseLog;

    #[test]
    fn lease_changes_are_said_once_table() {
        let mut log = LeaseLog::default();
        // (valid at this look, what is said)
        let steps = [
            (false, None),
            (true, Some("lease acquired: may serve as leader")),
            (true, None),
            (false, Some("lease lost: no heartbeat acknowledged in time; not serving as leader until one is")),
            (false, None),
            (true, Some("lease regained: may serve as leader again")),
        ];
        for (i, (valid, said)) in steps.into_iter().enumerate() {
            assert_eq!(log.observe(valid), said, "step {i}");
        }
    }
}
