//! Tests: tables of transitions and error codes, step-by-step stories, and
//! a proptest of the invariants. This file holds the shared builders.

mod invariants;
mod stories;
mod tables;

use crate::*;

/// The session and rebalance timeout every test member uses.
const T: i32 = 10_000;

/// The default config (min session 1000) without the initial delay, so a
/// story's first generation forms at once unless it asks for the delay.
fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

/// A dynamic member's join: `member_id` "" for a new member, who gets
/// `new_id`. Protocols [range, roundrobin], metadata naming the member.
fn jreq(member_id: &str, new_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        new_member_id: new_id.to_string(),
        group_instance_id: None,
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: T,
        rebalance_timeout_ms: T,
        protocol_type: "consumer".to_string(),
        protocols: protocols(&["range", "roundrobin"]),
        require_known_member_id: false,
    }
}

/// The same, static with `instance`.
fn sreq(member_id: &str, new_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.to_string()),
        ..jreq(member_id, new_id)
    }
}

/// Protocols with metadata naming them.
fn protocols(names: &[&str]) -> Vec<(String, Vec<u8>)> {
    names
        .iter()
        .map(|n| (n.to_string(), format!("meta-{n}").into_bytes()))
        .collect()
}

/// A sync from `member_id` in `generation` with no assignments.
fn sreq_sync(member_id: &str, generation: i32) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_string(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments: Vec::new(),
    }
}

/// The join reply to `waiter` in `fx`, if any.
fn join_reply(fx: &Effects, waiter: Waiter) -> Option<&JoinResponse> {
    fx.replies.iter().find_map(|(w, r)| match r {
        Reply::Join(j) if *w == waiter => Some(j),
        _ => None,
    })
}

/// The sync reply to `waiter` in `fx`, if any.
fn sync_reply(fx: &Effects, waiter: Waiter) -> Option<&SyncResponse> {
    fx.replies.iter().find_map(|(w, r)| match r {
        Reply::Sync(s) if *w == waiter => Some(s),
        _ => None,
    })
}

/// Members `ids` (static with instance `i<id>` if `statik`) joined and the
/// group is in CompletingRebalance at generation 2, `ids[0]` leading.
/// Time is 0; waiters used are below 100.
fn completing(ids: &[&str], statik: bool) -> Group {
    let mut g = Group::new("g");
    let req = |m: &str, new: &str| match statik {
        true => sreq(m, new, &format!("i{new}{m}")),
        false => jreq(m, new),
    };
    // The first member alone: generation 1 at once (no initial delay).
    // It joins with one protocol so its rejoin below, with two, is a change
    // that rebalances even when it is alone.
    let first = JoinRequest {
        protocols: protocols(&["range"]),
        ..req("", ids[0])
    };
    g.join(0, &cfg(), first, 1);
    // The others join (parked); the first rejoins, which completes the phase.
    for (n, id) in ids.iter().enumerate().skip(1) {
        g.join(0, &cfg(), req("", id), 10 + n as u64);
    }
    let fx = g.join(0, &cfg(), req(ids[0], ""), 2);
    assert_eq!(fx.replies.len(), ids.len(), "{fx:?}");
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.generation(), 2);
    g
}

/// As [`completing`], then the leader synced assigning `A<id>`: Stable.
fn stable(ids: &[&str], statik: bool) -> Group {
    let mut g = completing(ids, statik);
    let leader = g.leader().unwrap().to_string();
    let sync = SyncRequest {
        group_instance_id: statik.then(|| format!("i{leader}")),
        assignments: ids
            .iter()
            .map(|id| (id.to_string(), format!("A{id}").into_bytes()))
            .collect(),
        ..sreq_sync(&leader, 2)
    };
    let fx = g.sync(0, sync, 50);
    assert!(fx.persist);
    assert_eq!(g.state(), GroupState::Stable);
    g
}

/// As [`stable`], then a new member "z" joined: PreparingRebalance.
fn preparing(ids: &[&str]) -> Group {
    let mut g = stable(ids, false);
    g.join(0, &cfg(), jreq("", "z"), 60);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g
}
