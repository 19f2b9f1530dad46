//! Leader election when a broker dies or freezes, on a real cluster of
//! processes (`baton local-cluster`: 3 controllers, 3 brokers), seen the way
//! an ordinary Kafka client sees it: through the Metadata API.

mod common;

use common::cluster::LocalCluster;
use common::produce;
use rustix::process::Signal;
use std::time::Duration;

fn record_batch(values: &[&[u8]]) -> bytes::Bytes {
    storage::batch::build_batch(values, 0).into()
}

/// One cluster at a time: two clusters of debug-built processes on a
/// two-core machine starve each other's Raft heartbeats, and this test
/// times elections.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The controllers' default `broker.session.timeout.ms`.
const SESSION_TIMEOUT: Duration =
    Duration::from_millis(controller::rules::lease::DEFAULT_SESSION_TIMEOUT_MS);

/// One record produced (acks=all) through broker `via`; the error code.
async fn produce_via(
    cluster: &LocalCluster,
    via: i32,
    topic: &str,
    partition: i32,
    value: &[u8],
) -> i16 {
    let mut conn = client::Connection::connect(cluster.broker_addr(via))
        .await
        .expect("connect");
    produce(&mut conn, topic, partition, record_batch(&[value]))
        .await
        .0
}

async fn create_topic(cluster: &LocalCluster, name: &str, partitions: i32) {
    let mut admin = client::Admin::connect(cluster.broker_addr(1))
        .await
        .expect("admin");
    admin
        .create_topic(name, partitions, 3, &[])
        .await
        .expect("create topic");
}

/// kill -9 a broker that leads partitions: each of them gets a new leader
/// from its ISR with a higher leader epoch, visible through Metadata within
/// the session timeout plus 200 ms, and the new leader takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_from_its_isr_within_the_session_timeout() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = LocalCluster::start(3, 3);
    create_topic(&cluster, "orders", 6).await;
    let before = cluster.describe(2, "orders").await;
    let led_by_1: Vec<_> = before.iter().filter(|p| p.leader == 1).cloned().collect();
    assert_eq!(led_by_1.len(), 2, "replicas are spread: {before:?}");

    cluster.signal_broker(1, Signal::KILL);
    let elapsed = cluster
        .wait_for_topic(2, "orders", Duration::from_secs(10), |t| {
            led_by_1
                .iter()
                .all(|old| t[old.partition as usize].leader != 1)
        })
        .await;
    eprintln!("new leaders visible {elapsed:?} after the kill");
    assert!(
        elapsed <= SESSION_TIMEOUT + Duration::from_millis(200),
        "new leaders visible after {elapsed:?}"
    );

    let after = cluster.describe(3, "orders").await;
    // An ordinary client sees the same: kcat (librdkafka) lists the new
    // leaders.
    let kcat = std::process::Command::new("kcat")
        .args(["-b", cluster.broker_addr(3), "-L", "-t", "orders"])
        .output()
        .expect("run kcat (scripts/setup-test-deps.sh installs it)");
    let listing = String::from_utf8_lossy(&kcat.stdout);
    for p in &after {
        let line = format!("partition {}, leader {},", p.partition, p.leader);
        assert!(listing.contains(&line), "kcat shows {line}: {listing}");
    }
    for old in &led_by_1 {
        let now = &after[old.partition as usize];
        assert!(
            old.isr.contains(&now.leader),
            "{now:?} from the ISR {old:?}"
        );
        assert!(now.leader_epoch > old.leader_epoch, "{old:?} -> {now:?}");
        assert!(
            !now.isr.contains(&1),
            "the dead broker left the ISR: {now:?}"
        );
        // The new leader takes writes in its epoch.
        let code = produce_via(&cluster, now.leader, "orders", now.partition, b"after").await;
        assert_eq!(code, 0, "produce to the new leader of {now:?}");
    }
    for p in &before {
        if p.leader != 1 {
            let now = &after[p.partition as usize];
            assert_eq!(
                (now.leader, now.leader_epoch),
                (p.leader, p.leader_epoch),
                "partitions the dead broker did not lead keep their leader and epoch"
            );
        }
    }
}

/// A broker frozen (SIGSTOP) past its session timeout is fenced and its
/// partitions move; thawed, it serves nothing as leader (its lease ended),
/// registers again with a new broker epoch, and leads nothing until the
/// controller says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_broker_is_fenced_and_rejoins_with_a_new_epoch_leading_nothing() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = LocalCluster::start(3, 3);
    create_topic(&cluster, "frozen", 3).await;
    let before = cluster.describe(1, "frozen").await;
    let led_by_2 = before
        .iter()
        .find(|p| p.leader == 2)
        .cloned()
        .expect("broker 2 leads a partition");
    let epoch_before = cluster.broker_sessions().await[&2].epoch;

    cluster.signal_broker(2, Signal::STOP);
    cluster
        .wait_for_topic(1, "frozen", Duration::from_secs(10), |t| {
            t.iter().all(|p| p.leader != 2)
        })
        .await;
    assert!(
        cluster.broker_sessions().await[&2].fenced,
        "broker 2 is fenced"
    );
    tokio::time::sleep(SESSION_TIMEOUT).await;
    cluster.signal_broker(2, Signal::CONT);

    // At once after thawing, it refuses writes for the partition it led
    // (its lease ran out; the lease alone is tested below, with the
    // controllers frozen, since here the newer metadata may arrive first).
    let mut conn = client::Connection::connect(cluster.broker_addr(2))
        .await
        .expect("connect");
    let (code, _) = produce(
        &mut conn,
        "frozen",
        led_by_2.partition,
        record_batch(&[b"zombie"]),
    )
    .await;
    assert_eq!(
        code,
        kafka_protocol::ResponseError::NotLeaderOrFollower.code(),
        "a thawed broker whose lease ended does not lead"
    );

    // It registers again, with a new broker epoch.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rejoined = loop {
        let sessions = cluster.broker_sessions().await;
        let b = &sessions[&2];
        if !b.fenced {
            break b.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broker 2 did not register again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        rejoined.epoch > epoch_before,
        "{} -> {}",
        epoch_before,
        rejoined.epoch
    );

    // It leads nothing, for as long as the controller gives it nothing.
    tokio::time::sleep(2 * SESSION_TIMEOUT).await;
    let after = cluster.describe(2, "frozen").await;
    assert!(after.iter().all(|p| p.leader != 2), "{after:?}");
    let now = &after[led_by_2.partition as usize];
    assert!(now.leader_epoch > led_by_2.leader_epoch, "{now:?}");
    // KIP-951: at Produce v10+ the refusal says where the leader is now.
    let request =
        common::produce_request("frozen", led_by_2.partition, record_batch(&[b"hint"]), -1);
    let response = conn.send(&request, 11).await.expect("produce v11");
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(
        answer.error_code,
        kafka_protocol::ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(
        (
            answer.current_leader.leader_id.0,
            answer.current_leader.leader_epoch
        ),
        (now.leader, now.leader_epoch),
        "the hint names the current leader and epoch"
    );
    let endpoint = response
        .node_endpoints
        .iter()
        .find(|e| e.node_id.0 == now.leader)
        .expect("the leader's endpoint");
    assert_eq!(
        format!("{}:{}", endpoint.host, endpoint.port),
        cluster.broker_addr(now.leader)
    );
    // And so does a refused Fetch from v12 (KIP-951).
    let request = common::fetch_request("frozen", led_by_2.partition, 0, 0);
    let response = conn.send(&request, 12).await.expect("fetch v12");
    let answer = &response.responses[0].partitions[0];
    assert_eq!(
        (
            answer.error_code,
            answer.current_leader.leader_id.0,
            answer.current_leader.leader_epoch
        ),
        (
            kafka_protocol::ResponseError::NotLeaderOrFollower.code(),
            now.leader,
            now.leader_epoch
        ),
        "a refused fetch names the current leader and epoch"
    );
    let (code, _) = produce(
        &mut conn,
        "frozen",
        led_by_2.partition,
        record_batch(&[b"zombie"]),
    )
    .await;
    assert_eq!(
        code,
        kafka_protocol::ResponseError::NotLeaderOrFollower.code()
    );
}

/// The lease (claim 2) and its documented cost: with the whole controller
/// quorum frozen, nothing changes in the metadata, yet every leader stops
/// serving once its session timeout has passed, because no heartbeat is
/// acknowledged. When the quorum returns, writes resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_stop_serving_when_the_controller_quorum_is_unreachable() {
    let _one = ONE_CLUSTER.lock().await;
    lease_with_controllers_frozen(true).await;
}

/// `leader.lease.enable=false` is Kafka's behaviour: with the controller
/// quorum frozen, leaders go on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lease_leaders_serve_with_the_controllers_gone() {
    let _one = ONE_CLUSTER.lock().await;
    lease_with_controllers_frozen(false).await;
}

async fn lease_with_controllers_frozen(lease: bool) {
    let flag = lease.to_string();
    let cluster = LocalCluster::start_with(3, 3, &["--leader-lease-enable", &flag]);
    create_topic(&cluster, "leased", 3).await;
    let before = cluster.describe(1, "leased").await;
    let produce_all = || async {
        let mut codes = Vec::new();
        for p in &before {
            codes.push(produce_via(&cluster, p.leader, "leased", p.partition, b"leased").await);
        }
        codes
    };
    assert_eq!(produce_all().await, vec![0, 0, 0], "leaders serve");

    cluster.signal_controllers(Signal::STOP);
    tokio::time::sleep(SESSION_TIMEOUT + Duration::from_millis(100)).await;
    let not_leader = kafka_protocol::ResponseError::NotLeaderOrFollower.code();
    let expected = if lease {
        vec![not_leader; 3]
    } else {
        vec![0; 3]
    };
    assert_eq!(
        produce_all().await,
        expected,
        "with the lease, no leader serves past it; without, all go on"
    );
    let during = cluster.describe(1, "leased").await;
    assert_eq!(
        during, before,
        "the metadata did not change: the lease alone stopped them"
    );

    cluster.signal_controllers(Signal::CONT);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = cluster.describe(1, "leased").await;
        let mut ok = 0;
        for p in now.iter().filter(|p| p.leader > 0) {
            let code = produce_via(&cluster, p.leader, "leased", p.partition, b"back").await;
            ok += usize::from(code == 0);
        }
        if ok == now.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not resume: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
