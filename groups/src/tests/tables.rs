//! One row per transition or error code of each request.

use super::*;

/// (case, group, member id, instance id, generation, outcome)
type MemberRow<'a> = (
    &'a str,
    Group,
    &'a str,
    Option<&'a str>,
    i32,
    Result<(), GroupError>,
);
/// (case, group, request, immediate assignment (None = parked), state, persist)
type SyncRow<'a> = (
    &'a str,
    Group,
    SyncRequest,
    Option<&'a [u8]>,
    GroupState,
    bool,
);
/// (case, group, (member id, instance id), outcome, state after)
type LeaveRow<'a> = (
    &'a str,
    Group,
    (&'a str, Option<String>),
    Result<(), GroupError>,
    GroupState,
);

fn dead() -> Group {
    let mut g = stable(&["a", "b"], false);
    g.mark_dead();
    g
}

fn empty_after_leave() -> Group {
    let mut g = stable(&["a"], false);
    g.leave(0, &[("a".to_string(), None)]);
    assert_eq!(g.state(), GroupState::Empty);
    g
}

#[test]
#[rustfmt::skip]
fn error_codes_are_kafkas() {
    use GroupError::*;
    let cases = [
        (CoordinatorNotAvailable, 15),
        (NotCoordinator, 16),
        (IllegalGeneration, 22),
        (InconsistentGroupProtocol, 23),
        (UnknownMemberId, 25),
        (InvalidSessionTimeout, 26),
        (RebalanceInProgress, 27),
        (NonEmptyGroup, 68),
        (MemberIdRequired, 79),
        (GroupMaxSizeReached, 81),
        (FencedInstanceId, 82),
    ];
    for (e, code) in cases {
        assert_eq!(e.code(), code, "{e}");
    }
}

#[test]
#[rustfmt::skip]
fn state_names_are_kafkas() {
    use GroupState::*;
    let cases = [
        (Empty, "Empty"),
        (PreparingRebalance, "PreparingRebalance"),
        (CompletingRebalance, "CompletingRebalance"),
        (Stable, "Stable"),
        (Dead, "Dead"),
    ];
    for (s, name) in cases {
        assert_eq!(s.name(), name);
    }
}

/// Joins refused, and the id the refusal carries.
#[test]
#[rustfmt::skip]
fn join_errors() {
    use GroupError::*;
    let small = GroupConfig {
        max_size: 2,
        ..cfg()
    };
    let other_type = JoinRequest {
        protocol_type: "connect".into(),
        ..jreq("", "c")
    };
    let no_common = JoinRequest {
        protocols: protocols(&["sticky"]),
        ..jreq("", "c")
    };
    // (case, group, config, request, error, member id in the reply)
    let cases: Vec<(&str, Group, GroupConfig, JoinRequest, GroupError, &str)> = vec![
        ("dead", dead(), cfg(), jreq("", "c"), CoordinatorNotAvailable, ""),
        ("session below min", Group::new("g"), cfg(), JoinRequest { session_timeout_ms: 999, ..jreq("", "c") }, InvalidSessionTimeout, ""),
        ("session above max", Group::new("g"), cfg(), JoinRequest { session_timeout_ms: 1_800_001, ..jreq("", "c") }, InvalidSessionTimeout, ""),
        ("no protocols", Group::new("g"), cfg(), JoinRequest { protocols: vec![], ..jreq("", "c") }, InconsistentGroupProtocol, ""),
        ("no protocol type", Group::new("g"), cfg(), JoinRequest { protocol_type: "".into(), ..jreq("", "c") }, InconsistentGroupProtocol, ""),
        ("other protocol type", stable(&["a"], false), cfg(), other_type, InconsistentGroupProtocol, ""),
        ("no common protocol", stable(&["a"], false), cfg(), no_common, InconsistentGroupProtocol, ""),
        ("known member changes to no common", stable(&["a", "b"], false), cfg(), JoinRequest { protocols: protocols(&["sticky"]), ..jreq("b", "") }, InconsistentGroupProtocol, "b"),
        ("full", stable(&["a", "b"], false), small.clone(), jreq("", "c"), GroupMaxSizeReached, ""),
        ("full, static newcomer", stable(&["a", "b"], false), small, sreq("", "c", "ic"), GroupMaxSizeReached, ""),
        ("member id required", Group::new("g"), cfg(), JoinRequest { require_known_member_id: true, ..jreq("", "c") }, MemberIdRequired, "c"),
        ("unknown member id", stable(&["a"], false), cfg(), jreq("x", ""), UnknownMemberId, "x"),
        ("unknown member, empty group", Group::new("g"), cfg(), jreq("x", ""), UnknownMemberId, "x"),
        ("instance held by another member", stable(&["a", "b"], true), cfg(), sreq("a", "", "ib"), FencedInstanceId, "a"),
        ("dynamic id with unknown instance", stable(&["a"], false), cfg(), sreq("a", "", "ia"), UnknownMemberId, "a"),
        ("static id without its instance", stable(&["a"], true), cfg(), jreq("a", ""), UnknownMemberId, "a"),
    ];
    for (case, mut g, config, req, error, member_id) in cases {
        let before = g.clone();
        let fx = g.join(0, &config, req, 99);
        let reply = join_reply(&fx, 99).unwrap_or_else(|| panic!("{case}: parked"));
        assert_eq!(reply.error, Some(error), "{case}");
        assert_eq!(reply.member_id, member_id, "{case}");
        assert_eq!(reply.generation_id, -1, "{case}");
        if error != MemberIdRequired {
            assert_eq!(g, before, "{case}: a refused join changes nothing");
        }
    }
}

/// Joins accepted: parked or answered, and the state after.
#[test]
#[rustfmt::skip]
fn join_transitions() {
    use GroupState::*;
    let changed = |id: &str| JoinRequest {
        protocols: protocols(&["roundrobin"]),
        ..jreq(id, "")
    };
    let mut pending = Group::new("g");
    pending.join(
        0,
        &cfg(),
        JoinRequest {
            require_known_member_id: true,
            ..jreq("", "p")
        },
        1,
    );
    // (case, group, request, answered now with this generation (None = parked), state after)
    let cases: Vec<(&str, Group, JoinRequest, Option<i32>, GroupState)> = vec![
        ("first member of an Empty group", Group::new("g"), jreq("", "c"), Some(1), CompletingRebalance),
        ("first member after the group emptied", empty_after_leave(), jreq("", "c"), Some(4), CompletingRebalance),
        ("pending member comes back", pending, jreq("p", ""), Some(1), CompletingRebalance),
        ("new member, Stable", stable(&["a", "b"], false), jreq("", "c"), None, PreparingRebalance),
        ("new member, Completing", completing(&["a", "b"], false), jreq("", "c"), None, PreparingRebalance),
        ("new member, Preparing", preparing(&["a", "b"]), jreq("", "c"), None, PreparingRebalance),
        ("follower unchanged, Stable", stable(&["a", "b"], false), jreq("b", ""), Some(2), Stable),
        ("leader unchanged, Stable", stable(&["a", "b"], false), jreq("a", ""), None, PreparingRebalance),
        ("follower changed, Stable", stable(&["a", "b"], false), changed("b"), None, PreparingRebalance),
        ("follower unchanged, Completing", completing(&["a", "b"], false), jreq("b", ""), Some(2), CompletingRebalance),
        ("leader unchanged, Completing", completing(&["a", "b"], false), jreq("a", ""), Some(2), CompletingRebalance),
        ("follower changed, Completing", completing(&["a", "b"], false), changed("b"), None, PreparingRebalance),
        ("member rejoins, Preparing", preparing(&["a", "b"]), jreq("b", ""), None, PreparingRebalance),
        ("static restart unchanged, Stable", stable(&["a", "b"], true), sreq("", "b2", "ib"), Some(2), Stable),
        ("static restart changed, Stable", stable(&["a", "b"], true), JoinRequest { protocols: protocols(&["roundrobin"]), ..sreq("", "b2", "ib") }, None, PreparingRebalance),
        ("static restart, Completing", completing(&["a", "b"], true), sreq("", "b2", "ib"), None, PreparingRebalance),
        ("static member rejoins with its id, Stable", stable(&["a", "b"], true), sreq("b", "", "ib"), Some(2), Stable),
    ];
    for (case, mut g, req, answered, state) in cases {
        let fx = g.join(0, &cfg(), req, 99);
        let reply = join_reply(&fx, 99);
        assert_eq!(reply.map(|r| r.generation_id), answered, "{case}: {fx:?}");
        if let Some(r) = reply {
            assert_eq!(r.error, None, "{case}");
        }
        assert_eq!(g.state(), state, "{case}");
    }
}

/// Syncs refused.
#[test]
#[rustfmt::skip]
fn sync_errors() {
    use GroupError::*;
    let typed = |t: &str, p: &str| SyncRequest {
        protocol_type: Some(t.into()),
        protocol_name: Some(p.into()),
        ..sreq_sync("b", 2)
    };
    let as_static = |id: &str, instance: &str| SyncRequest {
        group_instance_id: Some(instance.into()),
        ..sreq_sync(id, 2)
    };
    let cases: Vec<(&str, Group, SyncRequest, GroupError)> = vec![
        ("dead", dead(), sreq_sync("b", 2), CoordinatorNotAvailable),
        ("unknown member", stable(&["a", "b"], false), sreq_sync("x", 2), UnknownMemberId),
        ("empty group", Group::new("g"), sreq_sync("x", 0), UnknownMemberId),
        ("fenced instance", stable(&["a", "b"], true), as_static("a", "ib"), FencedInstanceId),
        ("old generation", stable(&["a", "b"], false), sreq_sync("b", 1), IllegalGeneration),
        ("other protocol type", stable(&["a", "b"], false), typed("connect", "range"), InconsistentGroupProtocol),
        ("other protocol", stable(&["a", "b"], false), typed("consumer", "roundrobin"), InconsistentGroupProtocol),
        ("join phase", preparing(&["a", "b"]), sreq_sync("b", 2), RebalanceInProgress),
    ];
    for (case, mut g, req, error) in cases {
        let before = g.clone();
        let fx = g.sync(0, req, 99);
        let reply = sync_reply(&fx, 99).unwrap_or_else(|| panic!("{case}: parked"));
        assert_eq!(reply.error, Some(error), "{case}");
        assert_eq!(g, before, "{case}: a refused sync changes nothing");
    }
}

/// Syncs accepted.
#[test]
#[rustfmt::skip]
fn sync_transitions() {
    use GroupState::*;
    let leader_sync = SyncRequest {
        assignments: vec![("a".into(), b"x".to_vec())],
        ..sreq_sync("a", 2)
    };
    let follower_sync = SyncRequest {
        assignments: vec![("b".into(), b"ignored".to_vec())],
        ..sreq_sync("b", 2)
    };
    let typed = SyncRequest {
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        ..sreq_sync("b", 2)
    };
    // (case, group, request, immediate assignment (None = parked), state, persist)
    let cases: Vec<SyncRow> = vec![
        ("follower, Completing", completing(&["a", "b"], false), follower_sync, None, CompletingRebalance, false),
        ("leader, Completing", completing(&["a", "b"], false), leader_sync, Some(b"x"), Stable, true),
        ("member, Stable", stable(&["a", "b"], false), sreq_sync("b", 2), Some(b"Ab"), Stable, false),
        ("matching protocol, Stable", stable(&["a", "b"], false), typed, Some(b"Ab"), Stable, false),
    ];
    for (case, mut g, req, assignment, state, persist) in cases {
        let fx = g.sync(0, req, 99);
        let reply = sync_reply(&fx, 99);
        assert_eq!(reply.map(|r| r.assignment.as_slice()), assignment, "{case}");
        assert_eq!(g.state(), state, "{case}");
        assert_eq!(fx.persist, persist, "{case}");
    }
}

#[test]
#[rustfmt::skip]
fn heartbeats() {
    use GroupError::*;
    // (case, group, member, instance, generation, outcome)
    let cases: Vec<MemberRow> = vec![
        ("dead", dead(), "a", None, 2, Err(CoordinatorNotAvailable)),
        ("empty", Group::new("g"), "a", None, 0, Err(UnknownMemberId)),
        ("unknown", stable(&["a"], false), "x", None, 2, Err(UnknownMemberId)),
        ("fenced", stable(&["a", "b"], true), "a", Some("ib"), 2, Err(FencedInstanceId)),
        ("old generation", stable(&["a"], false), "a", None, 1, Err(IllegalGeneration)),
        ("join phase", preparing(&["a", "b"]), "b", None, 2, Err(RebalanceInProgress)),
        ("sync phase", completing(&["a", "b"], false), "b", None, 2, Ok(())),
        ("stable", stable(&["a", "b"], false), "b", None, 2, Ok(())),
        ("stable, static", stable(&["a", "b"], true), "b", Some("ib"), 2, Ok(())),
    ];
    for (case, mut g, member, instance, generation, outcome) in cases {
        let before = g.clone();
        assert_eq!(
            g.heartbeat(500, member, instance, generation),
            outcome,
            "{case}"
        );
        match outcome {
            Ok(()) | Err(RebalanceInProgress) => {
                assert_eq!(
                    g.members[member].session_deadline,
                    500 + T as u64,
                    "{case}: refreshed"
                )
            }
            Err(_) => assert_eq!(g, before, "{case}"),
        }
    }
}

#[test]
#[rustfmt::skip]
fn leaves() {
    use GroupError::*;
    use GroupState::*;
    let mut pending = stable(&["a"], false);
    pending.join(
        0,
        &cfg(),
        JoinRequest {
            require_known_member_id: true,
            ..jreq("", "p")
        },
        1,
    );
    let s = |x: &str| Some(x.to_string());
    // (case, group, (member, instance), outcome, state after)
    let cases: Vec<LeaveRow> = vec![
        ("dead", dead(), ("a", None), Err(CoordinatorNotAvailable), Dead),
        ("unknown", stable(&["a"], false), ("x", None), Err(UnknownMemberId), Stable),
        ("unknown instance", stable(&["a"], true), ("", s("ix")), Err(UnknownMemberId), Stable),
        ("fenced", stable(&["a", "b"], true), ("a", s("ib")), Err(FencedInstanceId), Stable),
        ("static id without instance", stable(&["a"], true), ("a", None), Err(UnknownMemberId), Stable),
        ("dynamic member", stable(&["a", "b"], false), ("b", None), Ok(()), PreparingRebalance),
        ("static by instance only", stable(&["a", "b"], true), ("", s("ib")), Ok(()), PreparingRebalance),
        ("static by both", stable(&["a", "b"], true), ("b", s("ib")), Ok(()), PreparingRebalance),
        ("last member", stable(&["a"], false), ("a", None), Ok(()), Empty),
        ("pending id", pending, ("p", None), Ok(()), Stable),
        ("sync phase", completing(&["a", "b"], false), ("b", None), Ok(()), PreparingRebalance),
    ];
    for (case, mut g, (member, instance), outcome, state) in cases {
        let before = g.clone();
        let (results, _) = g.leave(0, &[(member.to_string(), instance)]);
        assert_eq!(results, vec![outcome], "{case}");
        assert_eq!(g.state(), state, "{case}");
        if outcome.is_err() {
            assert_eq!(g, before, "{case}");
        }
    }
}

#[test]
#[rustfmt::skip]
fn commit_validation() {
    use GroupError::*;
    // (case, group, member, instance, generation, outcome)
    let cases: Vec<MemberRow> = vec![
        ("dead", dead(), "a", None, 2, Err(CoordinatorNotAvailable)),
        ("standalone, empty", Group::new("g"), "", None, -1, Ok(())),
        ("standalone, emptied", empty_after_leave(), "", None, -1, Ok(())),
        ("standalone, group has members", stable(&["a"], false), "", None, -1, Err(UnknownMemberId)),
        ("member id, empty group", Group::new("g"), "a", None, 0, Err(UnknownMemberId)),
        ("fenced", stable(&["a", "b"], true), "a", Some("ib"), 2, Err(FencedInstanceId)),
        ("unknown", stable(&["a"], false), "x", None, 2, Err(UnknownMemberId)),
        ("old generation", stable(&["a"], false), "a", None, 1, Err(IllegalGeneration)),
        ("sync phase", completing(&["a", "b"], false), "a", None, 2, Err(RebalanceInProgress)),
        ("join phase, current generation", preparing(&["a", "b"]), "a", None, 2, Ok(())),
        ("stable", stable(&["a", "b"], false), "b", None, 2, Ok(())),
        ("stable, static", stable(&["a", "b"], true), "b", Some("ib"), 2, Ok(())),
    ];
    for (case, g, member, instance, generation, outcome) in cases {
        assert_eq!(
            g.validate_commit(member, instance, generation),
            outcome,
            "{case}"
        );
    }
}

#[test]
#[rustfmt::skip]
fn can_delete() {
    let cases = [
        ("new", Group::new("g"), Ok(())),
        ("emptied", empty_after_leave(), Ok(())),
        ("dead", dead(), Ok(())),
        ("stable", stable(&["a"], false), Err(GroupError::NonEmptyGroup)),
        ("preparing", preparing(&["a"]), Err(GroupError::NonEmptyGroup)),
        ("completing", completing(&["a", "b"], false), Err(GroupError::NonEmptyGroup)),
    ];
    for (case, g, outcome) in cases {
        assert_eq!(g.can_delete(), outcome, "{case}");
    }
}
