//! Random sequences of requests from four clients (two static, two
//! dynamic) with time moving forward; the invariants hold after each step
//! and, once the clients fall silent, every waiter is answered and the
//! group empties.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// What a simulated client knows, as a real one would.
#[derive(Debug, Clone, Default)]
struct Client {
    /// "" before it has an id (or after UNKNOWN_MEMBER_ID).
    member_id: String,
    /// Ids it had before: sent now and then as a stale client would.
    old_ids: Vec<String>,
    generation: i32,
    /// The members from its last join reply as leader.
    members: Vec<String>,
    instance: Option<String>,
}

/// One step: (kind, client, a parameter, time to let pass first).
type Step = (u8, usize, u8, u64);

struct Sim {
    g: Group,
    config: GroupConfig,
    now: Ms,
    clients: Vec<Client>,
    /// Waiter → client, for every request not yet answered.
    outstanding: BTreeMap<Waiter, usize>,
    next_waiter: Waiter,
    next_id: u32,
}

impl Sim {
    fn new(initial_delay_ms: i32) -> Sim {
        let clients = (0..4)
            .map(|c| Client {
                instance: (c < 2).then(|| format!("i{c}")),
                ..Client::default()
            })
            .collect();
        Sim {
            g: Group::new("g"),
            config: GroupConfig {
                max_size: 3,
                initial_rebalance_delay_ms: initial_delay_ms,
                ..cfg()
            },
            now: 0,
            clients,
            outstanding: BTreeMap::new(),
            next_waiter: 0,
            next_id: 0,
        }
    }

    /// The id client `c` sends: its own, or (if `stale`) an old one.
    fn id(&self, c: usize, stale: bool) -> String {
        let client = &self.clients[c];
        match (stale, client.old_ids.last()) {
            (true, Some(old)) => old.clone(),
            _ => client.member_id.clone(),
        }
    }

    fn waiter(&mut self, c: usize) -> Waiter {
        self.next_waiter += 1;
        self.outstanding.insert(self.next_waiter, c);
        self.next_waiter
    }

    /// Runs one step and checks what can be checked about it.
    fn step(&mut self, (kind, c, param, dt): Step) -> Result<(), TestCaseError> {
        self.now += dt;
        let before = self.g.clone();
        let stale = param % 5 == 0;
        let id = self.id(c, stale);
        let instance = self.clients[c].instance.clone();
        let stranger = !id.is_empty()
            && before.validate_member(&id, instance.as_deref()).is_err()
            && !(instance.is_none() && before.pending.contains_key(&id));
        let fx = match kind {
            0..=2 => self.join(c, &id, param),
            3..=6 => self.sync(c, &id),
            7 | 8 => {
                let generation = self.clients[c].generation;
                let _ = self
                    .g
                    .heartbeat(self.now, &id, instance.as_deref(), generation);
                Effects::default()
            }
            9 => self.g.leave(self.now, &[(id.clone(), instance.clone())]).1,
            _ => self.g.tick(self.now, &self.config),
        };
        if kind <= 9 && stranger {
            prop_assert_eq!(&self.g, &before, "a stranger's request changed the group");
        }
        if kind == 10 {
            let generation = self.clients[c].generation;
            let _ = self.g.validate_commit(&id, instance.as_deref(), generation);
        }
        self.absorb(fx)?;
        self.check(&before)
    }

    fn join(&mut self, c: usize, id: &str, param: u8) -> Effects {
        self.next_id += 1;
        let timeouts = [10_000, 3_000, 10_000, 1_000];
        let names: &[&str] = match param % 3 {
            0 => &["range"],
            1 => &["range", "roundrobin"],
            _ => &["roundrobin", "range"],
        };
        let req = JoinRequest {
            member_id: id.to_string(),
            new_member_id: format!("m{}", self.next_id),
            group_instance_id: self.clients[c].instance.clone(),
            session_timeout_ms: timeouts[usize::from(param / 3) % 4],
            rebalance_timeout_ms: timeouts[usize::from(param / 12) % 4],
            protocols: protocols(names),
            require_known_member_id: param % 2 == 0,
            ..jreq("", "")
        };
        let w = self.waiter(c);
        self.g.join(self.now, &self.config, req, w)
    }

    fn sync(&mut self, c: usize, id: &str) -> Effects {
        let client = &self.clients[c];
        let tag = client.generation.to_be_bytes();
        let assignments = client
            .members
            .iter()
            .map(|m| (m.clone(), [&tag[..], m.as_bytes()].concat()))
            .collect();
        let req = SyncRequest {
            group_instance_id: client.instance.clone(),
            assignments,
            ..sreq_sync(id, client.generation)
        };
        let w = self.waiter(c);
        self.g.sync(self.now, req, w)
    }

    /// Each reply answers exactly one outstanding waiter; clients learn
    /// from it as real ones do.
    fn absorb(&mut self, fx: Effects) -> Result<(), TestCaseError> {
        let mut seen = BTreeSet::new();
        for (w, reply) in fx.replies {
            prop_assert!(seen.insert(w), "waiter {} answered twice in one step", w);
            let c = self.outstanding.remove(&w);
            prop_assert!(c.is_some(), "waiter {} was not outstanding", w);
            let client = &mut self.clients[c.unwrap()];
            match reply {
                Reply::Join(r) => learn_join(client, r, &self.g)?,
                Reply::Sync(r) if r.error == Some(GroupError::UnknownMemberId) => forget(client),
                Reply::Sync(_) => {}
            }
        }
        Ok(())
    }

    /// The invariants after a step.
    fn check(&self, before: &Group) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.g.check(), Ok(()));
        prop_assert!(
            self.g.generation() >= before.generation(),
            "generation went down"
        );
        let outstanding: Vec<Waiter> = self.outstanding.keys().copied().collect();
        prop_assert_eq!(self.g.parked_waiters(), outstanding, "a waiter was lost");
        if self.g.state() == GroupState::Stable {
            let tag = self.g.generation().to_be_bytes();
            for m in self.g.members.values() {
                let assignment = m.assignment.as_deref().unwrap_or_default();
                prop_assert!(
                    assignment.starts_with(&tag),
                    "{:?} not from this generation's sync",
                    m
                );
            }
        }
        Ok(())
    }
}

/// A join reply: success joins the generation; an error the client reacts
/// to as Kafka's does.
fn learn_join(client: &mut Client, r: JoinResponse, g: &Group) -> Result<(), TestCaseError> {
    match r.error {
        None => {
            prop_assert_eq!(
                r.generation_id,
                g.generation(),
                "answered with another generation"
            );
            if client.member_id != r.member_id && !client.member_id.is_empty() {
                client.old_ids.push(client.member_id.clone());
            }
            client.member_id = r.member_id.clone();
            client.generation = r.generation_id;
            if r.leader == r.member_id {
                client.members = r.members.into_iter().map(|m| m.member_id).collect();
                let mut ids = client.members.clone();
                ids.sort();
                prop_assert_eq!(ids, g.member_ids(), "the leader must see every member");
            }
        }
        Some(GroupError::MemberIdRequired) => client.member_id = r.member_id,
        Some(GroupError::UnknownMemberId | GroupError::FencedInstanceId) => forget(client),
        Some(_) => {}
    }
    Ok(())
}

/// The client starts over with no member id.
fn forget(client: &mut Client) {
    if !client.member_id.is_empty() {
        client.old_ids.push(std::mem::take(&mut client.member_id));
    }
    client.generation = -1;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the clients do and whenever, the invariants hold after every
    /// step; once they fall silent every waiter is answered and the group
    /// ends Empty.
    #[test]
    fn invariants_hold(
        initial_delay_ms in prop::sample::select(vec![0, 500]),
        steps in prop::collection::vec((0u8..12, 0usize..4, any::<u8>(), prop::sample::select(vec![0u64, 0, 0, 10, 400, 2_000, 6_000])), 1..120)
    ) {
        let mut sim = Sim::new(initial_delay_ms);
        for step in steps {
            sim.step(step)?;
        }
        for _ in 0..20 {
            sim.step((11, 0, 1, 20_000))?;
        }
        prop_assert_eq!(sim.outstanding.len(), 0);
        prop_assert_eq!(sim.g.state(), GroupState::Empty);
    }
}
