//! How a broker learns committed metadata: a long poll on a controller
//! (`GetMetadata { after_applied }`), answered as soon as the controller
//! applies a newer entry, so changes arrive within a round trip of their
//! commit, without fixed-interval polling.

use crate::metadata::ClusterMetadata;
use crate::service::{call, ControllerRequest, ControllerResponse};
use std::time::Duration;
use tokio::sync::watch;

/// Longest wait of one poll; the controller answers earlier on any change.
const POLL_WAIT_MS: u64 = 10_000;

/// Keeps `tx` at the newest metadata any of `controllers` has applied,
/// forever. Prefers the active controller (it applies first); on errors it
/// moves to the next address after a short pause.
pub async fn follow(controllers: Vec<String>, tx: watch::Sender<(u64, ClusterMetadata)>) {
    let mut current = active_index(&controllers).await.unwrap_or(0);
    loop {
        let after = tx.borrow().0;
        let addr = &controllers[current % controllers.len()];
        match call(
            addr,
            ControllerRequest::GetMetadata {
                after_applied: after,
                wait_ms: POLL_WAIT_MS,
            },
        )
        .await
        {
            Ok(ControllerResponse::Metadata {
                active,
                applied,
                metadata,
            }) => {
                if applied > after {
                    tx.send_replace((applied, metadata));
                }
                if !active {
                    // A follower learns of commits a heartbeat later than
                    // the active controller: find the active one again.
                    current = active_index(&controllers).await.unwrap_or(current);
                }
            }
            Ok(_) => {}
            Err(_) => {
                current = active_index(&controllers).await.unwrap_or(current + 1);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The position in `controllers` of the one that reports itself active.
async fn active_index(controllers: &[String]) -> Option<usize> {
    for (i, addr) in controllers.iter().enumerate() {
        if let Ok(ControllerResponse::Quorum { controller, .. }) =
            call(addr, ControllerRequest::DescribeQuorum).await
        {
            if controller.leader == Some(controller.id) {
                return Some(i);
            }
        }
    }
    None
}
