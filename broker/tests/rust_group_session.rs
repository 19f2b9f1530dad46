//! Our Rust `GroupConsumer` on the one-process default, when its rebalance
//! round goes unanswered. A cooperative member keeps its partitions
//! through a round; if the round's JoinGroup never reaches a live
//! coordinator (here: the coordinator is frozen), the member must report
//! them lost before the coordinator could expire it and give them to
//! another member, not go on owning them with no deadline. The fault
//! campaign found the second behaviour (`docs/campaign.md`): a member whose
//! JoinGroup went to a failing coordinator owned its partitions after the
//! new coordinator had given them away.

mod common;

use client::group::TopicPartition;
use client::{Admin, GroupConsumer, GroupConsumerConfig, RebalanceListener};
use common::Baton;
use rustix::process::Signal;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const SESSION: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_millis(600);

/// A rebalance callback: its kind, its partitions, when it ran.
type Event = (&'static str, Vec<TopicPartition>, Instant);

struct Events(mpsc::UnboundedSender<Event>);

impl Events {
    fn send(&self, kind: &'static str, partitions: &[TopicPartition]) {
        let _ = self.0.send((kind, partitions.to_vec(), Instant::now()));
    }
}

impl RebalanceListener for Events {
    async fn on_partitions_revoked(&mut self, _: &mut GroupConsumer, ps: &[TopicPartition]) {
        self.send("revoked", ps);
    }
    async fn on_partitions_assigned(&mut self, _: &mut GroupConsumer, ps: &[TopicPartition]) {
        self.send("assigned", ps);
    }
    async fn on_partitions_lost(&mut self, _: &mut GroupConsumer, ps: &[TopicPartition]) {
        self.send("lost", ps);
    }
}

fn tps(topic: &str, partitions: &[i32]) -> Vec<TopicPartition> {
    partitions.iter().map(|p| (topic.to_string(), *p)).collect()
}

/// Polls until the member's assignment is `want`.
async fn poll_until_assigned(
    consumer: &mut GroupConsumer,
    events: &mut Events,
    want: &[TopicPartition],
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment() != want {
        assert!(
            Instant::now() < deadline,
            "assignment {:?}, want {want:?}",
            consumer.assignment()
        );
        let _ = consumer.poll_with(events, Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_round_goes_unanswered_loses_its_partitions_in_time() {
    let baton = Baton::start(&[]);
    let mut admin = Admin::connect(&baton.addr).await.expect("admin");
    admin.create_topic("kept", 2, 1, &[]).await.expect("topic");
    admin.create_topic("added", 1, 1, &[]).await.expect("topic");
    let mut config = GroupConsumerConfig::new(&baton.addr, "unanswered");
    config.session_timeout = SESSION;
    config.heartbeat_interval = HEARTBEAT;
    let mut consumer = GroupConsumer::new(config).await.expect("consumer");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut events = Events(tx);
    consumer.subscribe(&["kept"]);
    poll_until_assigned(&mut consumer, &mut events, &tps("kept", &[0, 1])).await;
    while rx.try_recv().is_ok() {}

    // The coordinator freezes; a new subscription starts a round whose
    // JoinGroup it cannot answer. The member keeps "kept" into the round.
    baton.signal(Signal::STOP);
    let frozen_at = Instant::now();
    consumer.subscribe(&["added", "kept"]);
    let member = tokio::spawn(async move {
        let _ = consumer
            .poll_with(&mut events, Duration::from_millis(100))
            .await;
        (consumer, events)
    });
    let (kind, partitions, at) = tokio::time::timeout(2 * SESSION, rx.recv())
        .await
        .expect("no rebalance callback within twice the session timeout of the freeze")
        .expect("listener alive");
    assert_eq!((kind, partitions), ("lost", tps("kept", &[0, 1])));
    // The coordinator last heard the member before the freeze, so it may
    // expire it from `frozen_at + SESSION` on: the loss must come first.
    let after = at - frozen_at;
    assert!(
        after < SESSION,
        "partitions reported lost {after:?} after the freeze, past the session timeout"
    );

    // Thawed, the coordinator answers the member's next round.
    baton.signal(Signal::CONT);
    let (mut consumer, mut events) = tokio::time::timeout(Duration::from_secs(30), member)
        .await
        .expect("the poll returns once the coordinator is back")
        .expect("member task");
    let mut all = tps("added", &[0]);
    all.extend(tps("kept", &[0, 1]));
    poll_until_assigned(&mut consumer, &mut events, &all).await;
}
