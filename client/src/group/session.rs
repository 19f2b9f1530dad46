//! The member's background session: a tokio task with its own connection
//! to the coordinator that sends a Heartbeat every `heartbeat.interval.ms`
//! while the member is in a generation, so the member stays alive however
//! long the application takes between polls, and that sends commits in the
//! order they were asked for. Answers that end the generation or ask for a
//! rebalance go into the shared [`Membership`](super::membership) and wake
//! `poll`.

use super::commit::OFFSET_COMMIT_VERSION;
use super::commit::{commit_error_code, commit_request, commit_result, CommitOffset};
use super::coordinator::CoordinatorLink;
use super::membership::{MemberGeneration, Reaction, Shared};
use crate::connection::ClientError;
use kafka_protocol::messages::HeartbeatRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Heartbeat version (v3+ carries the instance id).
const HEARTBEAT_VERSION: i16 = 4;
/// Commits that may wait for the task before `commit_async` waits.
const COMMITS_QUEUED_MAX: usize = 64;

/// A commit for the task to send.
#[derive(Debug)]
struct Commit {
    offsets: Vec<CommitOffset>,
    member: MemberGeneration,
    reply: oneshot::Sender<Result<(), ClientError>>,
}

/// The running session: a heartbeat task and a commit task, each with its
/// own link to the coordinator, so a commit stuck on a failing coordinator
/// never holds back the heartbeats that keep the member in the group.
#[derive(Debug)]
pub struct Session {
    commits: mpsc::Sender<Commit>,
    heartbeats: JoinHandle<()>,
    committer: JoinHandle<()>,
}

/// Resolves when a commit was answered.
pub type CommitReply = oneshot::Receiver<Result<(), ClientError>>;

impl Session {
    /// Starts the task for the group `link` serves, heartbeating every
    /// `interval` and ending the generation when no heartbeat was answered
    /// within `session_timeout`.
    pub fn start(
        link: CoordinatorLink,
        shared: Arc<Shared>,
        interval: Duration,
        session_timeout: Duration,
    ) -> Session {
        let (commits, rx) = mpsc::channel(COMMITS_QUEUED_MAX);
        let timing = Timing {
            interval,
            session_timeout,
        };
        let commit_link = CoordinatorLink::new(&link.bootstrap(), link.group_id());
        let heartbeats = tokio::spawn(heartbeat_loop(link, shared.clone(), timing));
        let committer = tokio::spawn(commit_loop(commit_link, shared, rx));
        Session {
            commits,
            heartbeats,
            committer,
        }
    }

    /// Queues a commit of `offsets` as `member`, without waiting: commits
    /// are sent in the order they were queued.
    pub fn commit(
        &self,
        offsets: Vec<CommitOffset>,
        member: MemberGeneration,
    ) -> Result<CommitReply, ClientError> {
        let (reply, answer) = oneshot::channel();
        let commit = Commit {
            offsets,
            member,
            reply,
        };
        self.commits.try_send(commit).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ClientError::Protocol(format!(
                "more than {COMMITS_QUEUED_MAX} commits waiting for the coordinator"
            )),
            mpsc::error::TrySendError::Closed(_) => {
                ClientError::Protocol("group session stopped".into())
            }
        })?;
        Ok(answer)
    }
}

impl Drop for Session {
    /// A dropped consumer stops heartbeating at once, so the coordinator
    /// expires it after the session timeout.
    fn drop(&mut self) {
        self.heartbeats.abort();
        self.committer.abort();
    }
}

/// The session's clocks.
#[derive(Debug, Clone, Copy)]
struct Timing {
    interval: Duration,
    session_timeout: Duration,
}

async fn heartbeat_loop(mut link: CoordinatorLink, shared: Arc<Shared>, timing: Timing) {
    let mut tick = tokio::time::interval(timing.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let lead = session_check_lead(timing.interval, timing.session_timeout);
        let ahead = std::time::Instant::now() + lead;
        if shared.expire_session(ahead, timing.session_timeout) {
            continue;
        }
        // A frozen coordinator accepts the bytes and never answers: give up
        // on a heartbeat after one interval (dropping its connection), so
        // the session check above keeps running.
        let answered = tokio::time::timeout(timing.interval, heartbeat(&mut link, &shared)).await;
        if answered.is_err() {
            link.forget();
        }
    }
}

/// How far ahead of now the heartbeat task's session check looks. The next
/// check comes up to one interval later (a heartbeat is given up after one
/// interval, and the tick that follows is then already due), and `poll`
/// needs time after the check to report the partitions lost, which must
/// happen before the coordinator can expire the member and hand them to
/// another: one interval for each. Looking only one interval ahead left no
/// margin at all when a check came just short of it (found by the fault
/// campaign: a member reported its partitions lost 24 ms after another had
/// been given them). Capped at half the session timeout, so a member heard
/// at every heartbeat is never taken for expired; the margin holds while
/// `heartbeat.interval.ms` is at most a quarter of the session timeout
/// (Kafka advises a third; its defaults are a fifteenth).
pub fn session_check_lead(interval: Duration, session_timeout: Duration) -> Duration {
    (2 * interval).min(session_timeout / 2)
}

/// Sends queued commits one at a time, in order.
async fn commit_loop(
    mut link: CoordinatorLink,
    shared: Arc<Shared>,
    mut commits: mpsc::Receiver<Commit>,
) {
    while let Some(c) = commits.recv().await {
        let result = send_commit(&mut link, &shared, &c.offsets, &c.member).await;
        // The caller may have stopped waiting (commit_async).
        let _ = c.reply.send(result);
    }
}

/// One heartbeat, if the member is in a generation.
async fn heartbeat(link: &mut CoordinatorLink, shared: &Shared) {
    let Some(member) = shared.lock().heartbeat_target() else {
        return;
    };
    let sent_at = std::time::Instant::now();
    let request = HeartbeatRequest::default()
        .with_group_id(super::commit::group_id(link.group_id()))
        .with_generation_id(member.generation_id)
        .with_member_id(StrBytes::from_string(member.member_id.clone()))
        .with_group_instance_id(member.group_instance_id.clone().map(StrBytes::from_string));
    match link
        .call(&request, HEARTBEAT_VERSION, |r| r.error_code)
        .await
    {
        Ok(response) => {
            let error = ResponseError::try_from_code(response.error_code);
            if matches!(error, None | Some(ResponseError::RebalanceInProgress)) {
                shared.lock().heartbeat_answered(&member, sent_at);
            }
            if let Some(error) = error {
                on_group_error(shared, error, &member, "heartbeat");
            }
        }
        Err(e) => tracing::warn!(group = link.group_id(), error = %e, "heartbeat failed"),
    }
}

/// Sends one commit; a refusal that ends the generation or asks for a
/// rebalance is applied to the membership before the caller hears of it.
async fn send_commit(
    link: &mut CoordinatorLink,
    shared: &Shared,
    offsets: &[CommitOffset],
    member: &MemberGeneration,
) -> Result<(), ClientError> {
    let request = commit_request(link.group_id(), Some(member), offsets);
    let response = link
        .call(&request, OFFSET_COMMIT_VERSION, commit_error_code)
        .await?;
    let result = commit_result(link.group_id(), &response);
    if let Some(error) = result.as_ref().err().and_then(ClientError::kafka_error) {
        on_group_error(shared, error, member, "commit");
    }
    result
}

fn on_group_error(shared: &Shared, error: ResponseError, member: &MemberGeneration, what: &str) {
    let reaction = shared.on_error(error, member);
    if reaction != Reaction::None {
        tracing::info!(
            generation = member.generation_id,
            member = member.member_id,
            ?error,
            ?reaction,
            "{what} answer: rejoining"
        );
    } else {
        tracing::debug!(?error, "{what} refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_check_lead_table() {
        let ms = Duration::from_millis;
        // (interval, session, lead)
        let cases = [
            (ms(600), ms(3000), ms(1200)),
            (ms(3000), ms(45000), ms(6000)),
            (ms(100), ms(1000), ms(200)),
            (ms(400), ms(1000), ms(500)),
            (ms(900), ms(1000), ms(500)),
        ];
        for (interval, session, lead) in cases {
            assert_eq!(
                session_check_lead(interval, session),
                lead,
                "{interval:?} {session:?}"
            );
        }
    }

    /// Checks come at most one interval apart, plus up to a tenth of one
    /// for scheduling. Whatever their phase, the first check that finds the
    /// member overdue comes at least one interval, less that slack, before
    /// the coordinator's deadline: the time `poll` has to report the loss.
    #[test]
    fn the_first_overdue_check_leaves_poll_an_interval() {
        let interval = 600u64;
        let session = 3000u64;
        let lead = session_check_lead(
            Duration::from_millis(interval),
            Duration::from_millis(session),
        );
        let lead = lead.as_millis() as u64;
        for gap in 1..=interval + interval / 10 {
            for phase in (0..gap).step_by(7) {
                let first = (0..)
                    .map(|k| phase + k * gap)
                    .find(|t| t + lead >= session)
                    .expect("some check is overdue");
                assert!(
                    first + interval - interval / 10 <= session,
                    "gap {gap}, phase {phase}: first overdue check at {first}"
                );
            }
        }
    }
}
