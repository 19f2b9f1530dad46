//! The classic group protocol on the one-process default, by raw requests:
//! bad input gets the right error and changes nothing; a member that stops
//! heartbeating (as a frozen process does) is removed and its later commits
//! are refused; a static member replaced by a new instance is fenced; groups
//! and offsets survive a restart (reloaded from `__consumer_offsets`).

mod common;

use common::group::*;
use common::{create_topic, s, Baton};
use kafka_protocol::messages::*;
use std::time::Duration;

const TOPIC: &str = "jobs";

async fn started() -> (Baton, client::Connection) {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    create_topic(&mut conn, TOPIC, 2).await;
    fill(&mut conn).await;
    (baton, conn)
}

/// Partition 0 gets 20 records (high watermark 20); partition 1 stays
/// empty: commits are checked against the high watermark.
async fn fill(conn: &mut client::Connection) {
    let values: Vec<Vec<u8>> = (0..20).map(|i| format!("r{i}").into_bytes()).collect();
    let values: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    let batch = storage::batch::build_batch(&values, 1_000);
    assert_eq!(common::produce(conn, TOPIC, 0, batch.into()).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_input_gets_the_right_error_and_changes_nothing() {
    let (_baton, mut conn) = started().await;
    let group = "bad-input";
    let (leader, generation) = sole_member(&mut conn, group, TOPIC, &[0, 1]).await;
    assert_eq!(
        commit(&mut conn, group, &leader, generation, TOPIC, &[(0, 3)]).await,
        vec![0]
    );

    // Malformed group ids: INVALID_GROUP_ID (24) everywhere.
    for bad in ["", "bad\u{7}bell", &"x".repeat(256)] {
        let r = join(&mut conn, bad, 10_000, 7).await;
        assert_eq!(r.error_code, 24, "join {bad:?}");
        assert_eq!(
            commit(&mut conn, bad, "", -1, TOPIC, &[(0, 1)]).await,
            vec![24],
            "commit {bad:?}"
        );
        assert_eq!(
            heartbeat(&mut conn, bad, "m", 1, 4).await,
            24,
            "heartbeat {bad:?}"
        );
    }
    // A join with another protocol type: INCONSISTENT_GROUP_PROTOCOL (23).
    let mut other = join_request(group, "", 10_000);
    other.protocol_type = s("connect");
    let r = conn.send(&other, 7).await.expect("join");
    assert_eq!(r.error_code, 23, "{r:?}");
    // A session timeout below group.min.session.timeout.ms: 26.
    let r = conn
        .send(&join_request(group, "", 10), 7)
        .await
        .expect("join");
    assert_eq!(r.error_code, 26, "{r:?}");
    // Commits: unknown member 25, wrong generation 22, unknown partition 3,
    // negative offset or one past the high watermark 1.
    assert_eq!(
        commit(&mut conn, group, "stranger", generation, TOPIC, &[(0, 9)]).await,
        vec![25]
    );
    assert_eq!(
        commit(&mut conn, group, &leader, generation + 5, TOPIC, &[(0, 9)]).await,
        vec![22]
    );
    assert_eq!(
        commit(&mut conn, group, &leader, generation, TOPIC, &[(7, 9)]).await,
        vec![3]
    );
    assert_eq!(
        commit(&mut conn, group, &leader, generation, TOPIC, &[(0, -5)]).await,
        vec![1]
    );
    assert_eq!(
        commit(&mut conn, group, "", -1, TOPIC, &[(0, 9)]).await,
        vec![25],
        "a standalone commit to a live group"
    );
    // Heartbeats: wrong generation 22, unknown member 25.
    assert_eq!(
        heartbeat(&mut conn, group, &leader, generation + 1, 4).await,
        22
    );
    assert_eq!(
        heartbeat(&mut conn, group, "stranger", generation, 4).await,
        25
    );
    // Deleting a group with members: NON_EMPTY_GROUP (68).
    let del = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let r = conn.send(&del, 2).await.expect("delete");
    assert_eq!(r.results[0].error_code, 68);
    // Nothing changed: the one commit that was valid is the committed one,
    // the member is still Stable in its generation.
    assert_eq!(
        committed(&mut conn, group, TOPIC, &[0, 1]).await,
        vec![3, -1]
    );
    assert_eq!(heartbeat(&mut conn, group, &leader, generation, 4).await, 0);
}

/// Two members; the non-leader's sync carries assignments of its own,
/// which are ignored; a commit for a partition the other member owns is
/// refused (ILLEGAL_GENERATION: the committer's view is stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_leader_sync_and_foreign_commits_change_nothing() {
    let (baton, mut a) = started().await;
    let mut b = baton.connect().await;
    let group = "two-members";
    let first = join(&mut a, group, 10_000, 7).await;
    let leader = first.member_id.to_string();
    let sync_first = sync(
        &mut a,
        group,
        &leader,
        first.generation_id,
        vec![(leader.clone(), assignment(TOPIC, &[0, 1]))],
        5,
    )
    .await;
    assert_eq!(sync_first.error_code, 0);
    // B joins: a rebalance; A learns by heartbeat and rejoins.
    let b_join = tokio::spawn(async move {
        let r = join(&mut b, group, 10_000, 7).await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        heartbeat(&mut a, group, &leader, first.generation_id, 4).await,
        27,
        "REBALANCE_IN_PROGRESS"
    );
    let rejoin = conn_join(&mut a, group, &leader).await;
    let (mut b, b_joined) = b_join.await.expect("b joins");
    assert_eq!((rejoin.error_code, b_joined.error_code), (0, 0));
    assert_eq!(rejoin.leader.as_str(), leader, "the leader stays");
    let follower = b_joined.member_id.to_string();
    let generation = rejoin.generation_id;
    // B (not the leader) syncs first, claiming both partitions: ignored.
    let greedy = vec![(follower.clone(), assignment(TOPIC, &[0, 1]))];
    let b_sync = tokio::spawn(async move {
        let r = sync(&mut b, group, &follower, generation, greedy, 5).await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let follower = b_joined.member_id.to_string();
    let plan = vec![
        (leader.clone(), assignment(TOPIC, &[1])),
        (follower.clone(), assignment(TOPIC, &[0])),
    ];
    assert_eq!(
        sync(&mut a, group, &leader, generation, plan, 5)
            .await
            .error_code,
        0
    );
    let (mut b, b_synced) = b_sync.await.expect("b syncs");
    assert_eq!(b_synced.error_code, 0);
    assert_eq!(
        b_synced.assignment,
        assignment(TOPIC, &[0]),
        "the leader's plan, not B's"
    );
    // A commits for partition 0, which B owns: refused, nothing stored.
    assert_eq!(
        commit(&mut a, group, &leader, generation, TOPIC, &[(0, 4)]).await,
        vec![22]
    );
    assert_eq!(
        commit(&mut b, group, &follower, generation, TOPIC, &[(0, 2)]).await,
        vec![0]
    );
    assert_eq!(committed(&mut a, group, TOPIC, &[0]).await, vec![2]);
}

async fn conn_join(conn: &mut client::Connection, group: &str, member: &str) -> JoinGroupResponse {
    conn.send(&join_request(group, member, 10_000), 7)
        .await
        .expect("rejoin")
}

/// A member that stops heartbeating (a frozen process) is removed after its
/// session timeout; its commits with the old generation are then refused
/// and change nothing. A static member replaced by a new instance with the
/// same `group.instance.id` is fenced (FENCED_INSTANCE_ID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_members_are_removed_and_fenced() {
    let (_baton, mut conn) = started().await;
    let group = "frozen";
    let joined = join(&mut conn, group, 1_000, 7).await;
    let zombie = joined.member_id.to_string();
    let a = vec![(zombie.clone(), assignment(TOPIC, &[0, 1]))];
    assert_eq!(
        sync(&mut conn, group, &zombie, joined.generation_id, a, 5)
            .await
            .error_code,
        0
    );
    assert_eq!(
        commit(
            &mut conn,
            group,
            &zombie,
            joined.generation_id,
            TOPIC,
            &[(0, 10)]
        )
        .await,
        vec![0]
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await; // no heartbeats: "frozen"
    let codes = commit(
        &mut conn,
        group,
        &zombie,
        joined.generation_id,
        TOPIC,
        &[(0, 15)],
    )
    .await;
    assert!(
        codes == vec![25] || codes == vec![22],
        "UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION, got {codes:?}"
    );
    assert_ne!(
        heartbeat(&mut conn, group, &zombie, joined.generation_id, 4).await,
        0
    );
    assert_eq!(
        committed(&mut conn, group, TOPIC, &[0]).await,
        vec![10],
        "the zombie's commit changed nothing"
    );

    // Static membership: a new instance with the same instance id fences
    // the old member id.
    let static_group = "static";
    let mut req = join_request(static_group, "", 10_000);
    req.group_instance_id = Some(s("worker-1"));
    let old =
        retry!(r = conn.send(&req, 7).await; r.as_ref().map_or(0, |r| r.error_code)).expect("join");
    assert_eq!(old.error_code, 0, "{old:?}");
    let old_id = old.member_id.to_string();
    let plan = vec![(old_id.clone(), assignment(TOPIC, &[0]))];
    let synced = sync_static(
        &mut conn,
        static_group,
        &old_id,
        "worker-1",
        old.generation_id,
        plan,
    )
    .await;
    assert_eq!(synced.error_code, 0, "{synced:?}");
    let new = conn.send(&req, 7).await.expect("join again");
    assert_eq!(new.error_code, 0, "{new:?}");
    assert_ne!(new.member_id.to_string(), old_id);
    let mut hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s(static_group)))
        .with_member_id(s(&old_id))
        .with_generation_id(old.generation_id);
    hb.group_instance_id = Some(s("worker-1"));
    assert_eq!(
        conn.send(&hb, 4).await.expect("heartbeat").error_code,
        82,
        "FENCED_INSTANCE_ID"
    );
}

/// Offsets and membership are in `__consumer_offsets`: after a restart the
/// broker loads them from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (member, generation) = {
        let baton = Baton::start_in(&data, &[]);
        let mut conn = baton.connect().await;
        create_topic(&mut conn, TOPIC, 2).await;
        fill(&mut conn).await;
        let (member, generation) = sole_member(&mut conn, "durable", TOPIC, &[0, 1]).await;
        assert_eq!(
            commit(
                &mut conn,
                "durable",
                &member,
                generation,
                TOPIC,
                &[(0, 4), (1, 0)]
            )
            .await,
            vec![0, 0]
        );
        (member, generation)
    };
    let baton = Baton::start_in(&data, &[]);
    let mut conn = baton.connect().await;
    assert_eq!(
        committed(&mut conn, "durable", TOPIC, &[0, 1]).await,
        vec![4, 0]
    );
    let code = retry!(c = heartbeat(&mut conn, "durable", &member, generation, 4).await; c);
    assert_eq!(code, 0, "the member is restored in its generation");
    let r = conn
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("durable"))]),
            5,
        )
        .await
        .expect("describe");
    assert_eq!(r.groups[0].group_state.as_str(), "Stable");
}
