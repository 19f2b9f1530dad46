//! The way to a group's coordinator: FindCoordinator through any broker,
//! then a connection to the broker it names, re-found when the coordinator
//! moves (it is the leader of the group's `__consumer_offsets` partition,
//! so it moves with that leadership). Every group request goes through
//! [`CoordinatorLink::call`], which owns that retry loop.

use crate::cluster::Cluster;
use crate::connection::{ClientError, Connection};
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use std::time::Duration;

/// FindCoordinator version: v4 batches keys (KIP-699).
const FIND_COORDINATOR_VERSION: i16 = 4;
/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// Attempts per call before giving up.
const ATTEMPTS_MAX: u32 = 20;
/// First wait between attempts; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What to do with an answer, by its coordinator-level error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorAction {
    /// The coordinator handled it (successfully or not): the caller looks
    /// at the answer.
    Done,
    /// Not (or no longer) the coordinator: find it again and resend.
    Rediscover,
    /// The coordinator is loading the group: wait and resend to it.
    Wait,
}

/// Classifies a response's error code (Kafka's coordinator errors).
pub fn coordinator_action(code: i16) -> CoordinatorAction {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
            CoordinatorAction::Rediscover
        }
        Some(ResponseError::CoordinatorLoadInProgress) => CoordinatorAction::Wait,
        _ => CoordinatorAction::Done,
    }
}

/// The wait before attempt `attempt` (0-based): 50 ms doubling to 1 s.
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1 << attempt.min(10))
        .min(BACKOFF_MAX)
}

/// A group's coordinator and a connection to it.
#[derive(Debug)]
pub struct CoordinatorLink {
    group_id: String,
    cluster: Cluster,
    /// The coordinator's broker id and the connection to it, once found.
    coordinator: Option<(i32, Connection)>,
}

impl CoordinatorLink {
    /// A link for `group_id`, finding the coordinator through `bootstrap`.
    pub fn new(bootstrap: &str, group_id: &str) -> CoordinatorLink {
        CoordinatorLink {
            group_id: group_id.to_string(),
            cluster: Cluster::new(bootstrap),
            coordinator: None,
        }
    }

    /// The group this link serves.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The coordinator's broker id, if known.
    pub fn coordinator(&self) -> Option<i32> {
        self.coordinator.as_ref().map(|(id, _)| *id)
    }

    /// Forgets the coordinator: the next call finds it again.
    pub fn forget(&mut self) {
        self.coordinator = None;
    }

    /// Sends `request` to the coordinator and returns its answer, finding
    /// the coordinator again when the answer's coordinator-level error
    /// (read by `error_of`) says it moved, and waiting while it loads.
    /// Connection failures also send it looking again.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        error_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response, ClientError> {
        let mut last = None;
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            let conn = match self.connection().await {
                Ok(conn) => conn,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let response = match conn.send(request, version).await {
                Ok(r) => r,
                Err(e) => {
                    self.forget();
                    last = Some(e);
                    continue;
                }
            };
            let code = error_of(&response);
            match coordinator_action(code) {
                CoordinatorAction::Done => return Ok(response),
                CoordinatorAction::Rediscover => self.forget(),
                CoordinatorAction::Wait => {}
            }
            last = ClientError::check(code, || format!("group {}", self.group_id), None).err();
        }
        Err(ClientError::Exhausted {
            attempts: ATTEMPTS_MAX,
            last: Box::new(last.unwrap_or_else(|| ClientError::Protocol("no attempt".into()))),
        })
    }

    async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        if self.coordinator.is_none() {
            let (id, addr) = self.find().await?;
            let conn = Connection::connect(&addr).await?;
            self.coordinator = Some((id, conn));
        }
        Ok(&mut self.coordinator.as_mut().expect("set above").1)
    }

    /// One FindCoordinator through any broker: the coordinator's id and
    /// address. A retriable refusal comes back as an error for `call` to
    /// retry.
    async fn find(&mut self) -> Result<(i32, String), ClientError> {
        let request = FindCoordinatorRequest::default()
            .with_key_type(KEY_TYPE_GROUP)
            .with_coordinator_keys(vec![StrBytes::from_string(self.group_id.clone())]);
        let sent = async {
            let conn = self.cluster.any_connection().await?;
            conn.send(&request, FIND_COORDINATOR_VERSION).await
        }
        .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                // The broker we asked may be gone: learn the brokers anew,
                // skipping the addresses that just failed.
                self.cluster.relearn();
                return Err(e);
            }
        };
        let c = response
            .coordinators
            .first()
            .ok_or_else(|| ClientError::Protocol("empty FindCoordinator response".into()))?;
        ClientError::check(
            c.error_code,
            || format!("find coordinator of group {}", self.group_id),
            c.error_message.as_ref(),
        )?;
        Ok((c.node_id.0, format!("{}:{}", c.host, c.port)))
    }

    /// The bootstrap list this link finds the coordinator through.
    pub fn bootstrap(&self) -> String {
        self.cluster_bootstrap()
    }

    fn cluster_bootstrap(&self) -> String {
        self.cluster.bootstrap().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_errors_table() {
        let code = |e: ResponseError| e.code();
        let cases = [
            (0, CoordinatorAction::Done),
            (
                code(ResponseError::NotCoordinator),
                CoordinatorAction::Rediscover,
            ),
            (
                code(ResponseError::CoordinatorNotAvailable),
                CoordinatorAction::Rediscover,
            ),
            (
                code(ResponseError::CoordinatorLoadInProgress),
                CoordinatorAction::Wait,
            ),
            (
                code(ResponseError::RebalanceInProgress),
                CoordinatorAction::Done,
            ),
            (
                code(ResponseError::UnknownMemberId),
                CoordinatorAction::Done,
            ),
        ];
        for (code, want) in cases {
            assert_eq!(coordinator_action(code), want, "code {code}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let ms: Vec<u128> = (0..7).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, vec![50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
