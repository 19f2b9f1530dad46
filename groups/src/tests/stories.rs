//! Step-by-step stories, asserting on the effects of each step.

use super::*;

/// A full rebalance: the leader's answer lists everyone with metadata for
/// the chosen protocol, followers wait for the leader's sync, members the
/// leader left out get an empty assignment.
#[test]
fn rebalance_then_sync() {
    let mut g = stable(&["a", "b"], false);
    // c joins: parked; the old members learn of it by heartbeat.
    assert!(g.join(100, &cfg(), jreq("", "c"), 1).replies.is_empty());
    assert_eq!(
        g.heartbeat(100, "b", None, 2),
        Err(GroupError::RebalanceInProgress)
    );
    assert!(g.join(100, &cfg(), jreq("b", ""), 2).replies.is_empty());
    // The last one in completes the phase: three answers, generation 3.
    let fx = g.join(100, &cfg(), jreq("a", ""), 3);
    assert_eq!(fx.replies.len(), 3);
    let leader = join_reply(&fx, 3).unwrap();
    assert_eq!((leader.generation_id, leader.leader.as_str()), (3, "a"));
    assert_eq!(leader.protocol_name.as_deref(), Some("range"));
    let metas: Vec<_> = leader
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m.metadata.as_slice()))
        .collect();
    assert_eq!(
        metas,
        [
            ("a", &b"meta-range"[..]),
            ("b", b"meta-range"),
            ("c", b"meta-range")
        ]
    );
    assert!(
        join_reply(&fx, 1).unwrap().members.is_empty(),
        "only the leader gets the members"
    );
    assert_eq!(
        g.member_assignment("a"),
        None,
        "the new generation has no assignment yet"
    );
    // c syncs: parked. The leader syncs assigning only itself and c.
    assert!(g.sync(100, sreq_sync("c", 3), 4).replies.is_empty());
    let sync = SyncRequest {
        assignments: vec![("a".into(), b"pa".to_vec()), ("c".into(), b"pc".to_vec())],
        ..sreq_sync("a", 3)
    };
    let fx = g.sync(100, sync, 5);
    assert!(fx.persist);
    assert_eq!(sync_reply(&fx, 4).unwrap().assignment, b"pc");
    assert_eq!(sync_reply(&fx, 5).unwrap().assignment, b"pa");
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.member_assignment("b"), Some(&b""[..]));
    // b syncs late: its (empty) assignment at once.
    let fx = g.sync(100, sreq_sync("b", 3), 6);
    assert_eq!(sync_reply(&fx, 6).unwrap().error, None);
}

/// A rebalance during the sync phase tells parked syncs to rejoin; a
/// member leaving while parked gets UNKNOWN_MEMBER_ID.
#[test]
fn parked_requests_on_rebalance_and_leave() {
    let mut g = completing(&["a", "b", "c"], false);
    assert!(g.sync(0, sreq_sync("b", 2), 1).replies.is_empty());
    assert!(g.sync(0, sreq_sync("c", 2), 2).replies.is_empty());
    let (results, fx) = g.leave(0, &[("c".into(), None)]);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(
        sync_reply(&fx, 2).unwrap().error,
        Some(GroupError::UnknownMemberId)
    );
    assert_eq!(
        sync_reply(&fx, 1).unwrap().error,
        Some(GroupError::RebalanceInProgress)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // b rejoins (parked), then leaves: its parked join is answered.
    assert!(g.join(0, &cfg(), jreq("b", ""), 3).replies.is_empty());
    let (_, fx) = g.leave(0, &[("b".into(), None)]);
    assert_eq!(
        join_reply(&fx, 3).unwrap().error,
        Some(GroupError::UnknownMemberId)
    );
    // Only a remains and has not rejoined; its rejoin completes the phase.
    let fx = g.join(0, &cfg(), jreq("a", ""), 4);
    assert_eq!(join_reply(&fx, 4).unwrap().generation_id, 3);
}

/// Sessions: a silent member expires and the group rebalances; a member
/// with a parked join does not expire; the join phase ends at its deadline
/// without the member that never rejoined.
#[test]
fn session_expiry_and_join_deadline() {
    let t = T as u64;
    let mut g = stable(&["a", "b", "c"], false);
    assert_eq!(g.next_deadline(), Some(t));
    // a and b heartbeat at 5000; c stays silent.
    g.heartbeat(5_000, "a", None, 2).unwrap();
    g.heartbeat(5_000, "b", None, 2).unwrap();
    assert!(g.tick(t - 1, &cfg()).replies.is_empty());
    assert_eq!(g.state(), GroupState::Stable);
    g.tick(t, &cfg());
    assert_eq!(g.member_ids(), ["a", "b"], "c expired");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // a rejoins at once and is parked; b never does.
    assert!(g.join(t, &cfg(), jreq("a", ""), 1).replies.is_empty());
    assert_eq!(
        g.next_deadline(),
        Some(t + 5_000),
        "b's session comes first"
    );
    g.tick(t + 5_000, &cfg());
    assert_eq!(
        g.member_ids(),
        ["a"],
        "b expired; a kept alive by its parked join"
    );
    // b's expiry left only a, who had joined: the phase ended.
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.generation(), 3);
}

/// A member that never rejoins is dropped at the join phase's deadline
/// (dynamic), but a static one stays until its session expires.
#[test]
fn join_deadline_drops_dynamic_keeps_static() {
    let t = T as u64;
    let mut g = stable(&["a", "b"], true);
    let mut d = g.clone();
    g.join(0, &cfg(), jreq("", "c"), 1);
    // Keep a and b's sessions alive past the join deadline.
    g.heartbeat(9_000, "a", Some("ia"), 2).unwrap_err();
    g.heartbeat(9_000, "b", Some("ib"), 2).unwrap_err();
    assert_eq!(g.next_deadline(), Some(t));
    let fx = g.tick(t, &cfg());
    assert_eq!(
        join_reply(&fx, 1).unwrap().leader,
        "c",
        "the old leader did not rejoin"
    );
    assert_eq!(g.member_ids(), ["a", "b", "c"], "static members stay");
    // Dynamic members are removed instead.
    d.leave(0, &[("".into(), Some("ia".into()))]);
    let mut dynamic = stable(&["a", "b"], false);
    dynamic.join(0, &cfg(), jreq("", "c"), 1);
    dynamic.heartbeat(9_000, "a", None, 2).unwrap_err();
    dynamic.tick(t, &cfg());
    assert_eq!(dynamic.member_ids(), ["c"]);
    // Only static members left and none rejoins: the phase waits again.
    assert_eq!(
        d.heartbeat(5_000, "b", Some("ib"), 2),
        Err(GroupError::RebalanceInProgress)
    );
    d.tick(t, &cfg());
    assert_eq!(
        (d.state(), d.generation()),
        (GroupState::PreparingRebalance, 2)
    );
    assert_eq!(d.member_ids(), ["b"]);
    // Until b's session runs out: then the group is Empty.
    assert_eq!(d.next_deadline(), Some(5_000 + t));
    let fx = d.tick(5_000 + t, &cfg());
    assert_eq!(
        (d.state(), d.generation(), fx.persist),
        (GroupState::Empty, 3, true)
    );
}

/// KIP-394: the handed-out id is pending; it holds the join phase open
/// until it joins or lapses.
#[test]
fn pending_member_ids() {
    let t = T as u64;
    let mut g = stable(&["a"], false);
    let required = JoinRequest {
        require_known_member_id: true,
        ..jreq("", "p")
    };
    let fx = g.join(0, &cfg(), required, 1);
    assert_eq!(join_reply(&fx, 1).unwrap().member_id, "p");
    assert_eq!(
        g.state(),
        GroupState::Stable,
        "a pending id changes nothing yet"
    );
    // a rejoins (leader): the phase waits for p.
    assert!(g.join(0, &cfg(), jreq("a", ""), 2).replies.is_empty());
    // p lapses: the phase ends with a alone.
    let fx = g.tick(t, &cfg());
    assert_eq!(join_reply(&fx, 2).unwrap().generation_id, 3);
    let fx = g.join(t, &cfg(), jreq("p", ""), 3);
    assert_eq!(
        join_reply(&fx, 3).unwrap().error,
        Some(GroupError::UnknownMemberId)
    );
}

/// KIP-345: a restarted static member takes its instance's place; the old
/// id's parked and later requests are fenced and change nothing.
#[test]
fn static_replacement_fences_the_old_id() {
    let mut g = completing(&["a", "b"], true);
    let old_sync = SyncRequest {
        group_instance_id: Some("ib".into()),
        ..sreq_sync("b", 2)
    };
    assert!(g.sync(0, old_sync.clone(), 1).replies.is_empty());
    let fx = g.join(0, &cfg(), sreq("", "b2", "ib"), 2);
    assert_eq!(
        sync_reply(&fx, 1).unwrap().error,
        Some(GroupError::FencedInstanceId)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let before = g.clone();
    let fx = g.sync(0, old_sync, 3);
    assert_eq!(
        sync_reply(&fx, 3).unwrap().error,
        Some(GroupError::FencedInstanceId)
    );
    assert_eq!(
        g.heartbeat(0, "b", Some("ib"), 2),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        g.leave(0, &[("b".into(), Some("ib".into()))]).0,
        vec![Err(GroupError::FencedInstanceId)]
    );
    assert_eq!(g, before);
}

/// A static leader restarting in a Stable group keeps its place without a
/// rebalance: persisted, members listed, assignment skipped (KIP-814).
#[test]
fn static_leader_restart_without_rebalance() {
    let mut g = stable(&["a", "b"], true);
    let fx = g.join(0, &cfg(), sreq("", "a2", "ia"), 1);
    assert!(fx.persist);
    let reply = join_reply(&fx, 1).unwrap();
    assert_eq!((reply.leader.as_str(), reply.generation_id), ("a2", 2));
    assert!(reply.skip_assignment);
    assert_eq!(reply.members.len(), 2);
    assert_eq!(
        g.member_assignment("a2"),
        Some(&b"Aa"[..]),
        "keeps its assignment"
    );
    assert_eq!(g.state(), GroupState::Stable);
}

/// KIP-134: the first join phase waits the initial delay, again for each
/// new arrival, and not past the rebalance timeout.
#[test]
fn initial_rebalance_delay() {
    let config = GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..cfg()
    };
    let mut g = Group::new("g");
    assert!(g.join(0, &config, jreq("", "a"), 1).replies.is_empty());
    assert_eq!(g.next_deadline(), Some(3_000));
    // Everyone has joined, but the delay holds.
    assert!(g.tick(2_999, &config).replies.is_empty());
    assert!(g.join(2_000, &config, jreq("", "b"), 2).replies.is_empty());
    // At 3000 a new member had come: wait another 3000.
    assert!(g.tick(3_000, &config).replies.is_empty());
    assert_eq!(g.next_deadline(), Some(6_000));
    let fx = g.tick(6_000, &config);
    assert_eq!(fx.replies.len(), 2);
    assert_eq!(g.generation(), 1);
}

/// The last member leaving empties the group with a new generation, to be
/// persisted; the protocol type is kept.
#[test]
fn last_member_leaves() {
    let mut g = stable(&["a"], false);
    let (_, fx) = g.leave(0, &[("a".into(), None)]);
    assert!(fx.persist);
    assert_eq!(
        (g.state(), g.generation(), g.leader()),
        (GroupState::Empty, 3, None)
    );
    assert_eq!(g.protocol_type(), Some("consumer"));
    assert_eq!(g.protocol(), None);
    assert_eq!(g.next_deadline(), None);
}

/// A member's second join while the first is parked: the first is told to
/// rejoin, so every waiter has exactly one answer.
#[test]
fn superseded_waiters() {
    let mut g = preparing(&["a", "b"]);
    g.join(0, &cfg(), jreq("b", ""), 1);
    let fx = g.join(0, &cfg(), jreq("b", ""), 2);
    assert_eq!(
        join_reply(&fx, 1).unwrap().error,
        Some(GroupError::RebalanceInProgress)
    );
    assert_eq!(g.parked_waiters(), [2, 60]);
}

/// The protocol is voted among those every member supports.
#[test]
fn protocol_vote_at_join_end() {
    let mut g = Group::new("g");
    let with = |id: &str, names: &[&str]| JoinRequest {
        protocols: protocols(names),
        ..jreq("", id)
    };
    let delay = GroupConfig {
        initial_rebalance_delay_ms: 100,
        ..cfg()
    };
    g.join(0, &delay, with("a", &["range", "sticky"]), 1);
    g.join(0, &delay, with("b", &["sticky", "range"]), 2);
    g.join(0, &delay, with("c", &["sticky", "range"]), 3);
    g.tick(100, &delay);
    g.tick(200, &delay);
    assert_eq!(g.protocol(), Some("sticky"));
    assert_eq!(
        g.describe().members[0].metadata,
        b"",
        "metadata only shown when Stable"
    );
}

#[test]
fn snapshot_restore_round_trip() {
    let g = stable(&["a", "b"], true);
    let snap = g.snapshot();
    assert_eq!(snap.members[1].assignment, b"Ab");
    assert_eq!(snap.members[1].metadata, b"meta-range");
    let mut r = Group::restore("g", snap.clone(), 1_000);
    assert_eq!(
        (r.state(), r.generation(), r.leader()),
        (GroupState::Stable, 2, Some("a"))
    );
    assert_eq!(r.snapshot(), snap);
    assert_eq!(r.next_deadline(), Some(1_000 + T as u64));
    assert_eq!(r.heartbeat(1_000, "b", Some("ib"), 2), Ok(()));
    assert_eq!(r.describe(), g.describe());
    // An empty snapshot restores an Empty group.
    let mut e = stable(&["a"], false);
    e.leave(0, &[("a".into(), None)]);
    let r = Group::restore("g", e.snapshot(), 0);
    assert_eq!((r.state(), r.generation()), (GroupState::Empty, 3));
}

#[test]
fn describe_stable() {
    let d = stable(&["a", "b"], false).describe();
    assert_eq!(
        (d.state, d.protocol_type.as_str(), d.protocol.as_str()),
        (GroupState::Stable, "consumer", "range")
    );
    assert_eq!(d.members[0].assignment, b"Aa");
    assert_eq!(d.members[0].metadata, b"meta-range");
    assert_eq!(d.members[0].client_host, "/127.0.0.1");
}

/// Unloading answers parked requests NOT_COORDINATOR; a failed persist
/// rebalances.
#[test]
fn mark_dead_and_rebalance() {
    let mut g = completing(&["a", "b"], false);
    g.sync(0, sreq_sync("b", 2), 1);
    let fx = g.rebalance(0);
    assert_eq!(
        sync_reply(&fx, 1).unwrap().error,
        Some(GroupError::RebalanceInProgress)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.join(0, &cfg(), jreq("b", ""), 2);
    let fx = g.mark_dead();
    assert_eq!(
        join_reply(&fx, 2).unwrap().error,
        Some(GroupError::NotCoordinator)
    );
    assert_eq!(g.state(), GroupState::Dead);
    assert!(g.tick(1_000_000, &cfg()).replies.is_empty());
    assert_eq!(g.next_deadline(), None);
}
