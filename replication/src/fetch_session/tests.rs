use super::*;
use proptest::prelude::*;

/// Keys are partition numbers, requests fetch offsets, answers high
/// watermarks.
type Cache = SessionCache<i32, i64, i64>;

fn request(owner: i32, id: i32, epoch: i32, partitions: &[(i32, i64)]) -> SessionRequest<i32, i64> {
    SessionRequest {
        owner,
        id,
        epoch,
        partitions: partitions.to_vec(),
        forgotten: Vec::new(),
    }
}

/// A cache that hands out ids 7, 8, 9, ...
fn ids() -> impl FnMut() -> i32 {
    let mut next = 6;
    move || {
        next += 1;
        next
    }
}

#[test]
fn how_each_fetch_is_resolved() {
    // (case, request's id and epoch, expected)
    type Expected = Result<(Context, Vec<(i32, i64)>), SessionError>;
    let held = [(1, 100), (2, 200)];
    let cases: [(&str, i32, i32, i32, Expected); 7] = [
        (
            "id 0, epoch 0: a new session over what it lists",
            2,
            0,
            0,
            Ok((Context::Full { id: 8 }, vec![(3, 300)])),
        ),
        (
            "id 0, epoch -1: no session, the request as it is",
            2,
            0,
            -1,
            Ok((Context::Sessionless, vec![(3, 300)])),
        ),
        (
            "the next epoch of the session: everything it holds, updated",
            2,
            7,
            1,
            Ok((
                Context::Incremental { id: 7, epoch: 1 },
                vec![(1, 100), (2, 200), (3, 300)],
            )),
        ),
        (
            "an epoch the session does not expect",
            2,
            7,
            2,
            Err(SessionError::InvalidEpoch),
        ),
        (
            "an id nobody holds",
            2,
            99,
            1,
            Err(SessionError::IdNotFound),
        ),
        (
            "another fetcher's session",
            5,
            7,
            1,
            Err(SessionError::IdNotFound),
        ),
        (
            "id 7, epoch 0: closes 7, makes a new one",
            2,
            7,
            0,
            Ok((Context::Full { id: 8 }, vec![(3, 300)])),
        ),
    ];
    for (case, owner, id, epoch, expected) in cases {
        let mut cache = Cache::new(10);
        let mut fresh = ids();
        cache.open(request(2, 0, 0, &held), 0, &mut fresh).unwrap();
        let got = cache.open(request(owner, id, epoch, &[(3, 300)]), 1, &mut fresh);
        assert_eq!(got, expected, "{case}");
        // A new session replaces the owner's old one.
        assert_eq!(cache.len(), 1, "{case}");
    }
}

#[test]
fn a_session_forgets_and_updates() {
    let mut cache = Cache::new(10);
    let (context, _) = cache
        .open(request(2, 0, 0, &[(1, 10), (2, 20)]), 0, ids())
        .unwrap();
    assert_eq!(context, Context::Full { id: 7 });
    let mut next_fetch = request(2, 7, 1, &[(2, 25)]);
    next_fetch.forgotten = vec![1];
    let (_, reads) = cache.open(next_fetch, 1, ids()).unwrap();
    assert_eq!(reads, vec![(2, 25)]);
}

#[test]
fn a_full_cache_evicts_the_least_recently_used_and_zero_slots_decline() {
    let mut cache = Cache::new(2);
    let mut fresh = ids();
    cache.open(request(1, 0, 0, &[]), 0, &mut fresh).unwrap(); // 7
    cache.open(request(2, 0, 0, &[]), 5, &mut fresh).unwrap(); // 8
    cache.open(request(1, 7, 1, &[]), 10, &mut fresh).unwrap(); // 7 used at 10
    cache.open(request(3, 0, 0, &[]), 11, &mut fresh).unwrap(); // 9 evicts 8
    assert_eq!(cache.len(), 2);
    assert_eq!(
        cache.open(request(2, 8, 1, &[]), 12, &mut fresh),
        Err(SessionError::IdNotFound)
    );
    assert!(cache.open(request(1, 7, 2, &[]), 12, &mut fresh).is_ok());

    let mut none = Cache::new(0);
    let got = none.open(request(1, 0, 0, &[(1, 1)]), 0, ids());
    assert_eq!(got, Ok((Context::Sessionless, vec![(1, 1)])));
    assert!(none.is_empty());
}

#[test]
fn a_taken_or_zero_id_is_drawn_again() {
    let mut cache = Cache::new(10);
    let mut draws = [0, 7, 7, 11].into_iter();
    cache.open(request(1, 0, 0, &[]), 0, || 7).unwrap();
    let (context, _) = cache
        .open(request(2, 0, 0, &[]), 0, || draws.next().unwrap())
        .unwrap();
    assert_eq!(context, Context::Full { id: 11 });
}

#[test]
fn an_incremental_answer_carries_only_what_changed() {
    let mut cache = Cache::new(10);
    let (full, _) = cache
        .open(request(2, 0, 0, &[(1, 0), (2, 0)]), 0, ids())
        .unwrap();
    // The full answer carries both, unchanged or not.
    assert_eq!(cache.include(full, &1, &50, false), Ok(true));
    assert_eq!(cache.include(full, &2, &50, false), Ok(true));
    let (incremental, _) = cache.open(request(2, 7, 1, &[]), 1, ids()).unwrap();
    // (key, answer, urgent, carried)
    let cases = [
        (1, 50, false, false), // nothing new
        (2, 60, false, true),  // a new high watermark
        (1, 50, true, true),   // records or an error
        (3, 50, true, false),  // not in the session
    ];
    for (key, answer, urgent, carried) in cases {
        let got = cache.include(incremental, &key, &answer, urgent);
        assert_eq!(got, Ok(carried), "{key} {answer} {urgent}");
    }
    // Another fetch of the session overtook this one: its answer is void.
    cache.open(request(2, 7, 2, &[]), 2, ids()).unwrap();
    assert_eq!(
        cache.include(incremental, &2, &70, false),
        Err(SessionError::InvalidEpoch)
    );
    let sessionless = Context::Sessionless;
    assert_eq!(cache.include(sessionless, &9, &0, false), Ok(true));
}

#[test]
fn the_follower_sends_everything_then_only_changes() {
    let mut builder = SessionBuilder::<i32, i64>::default();
    let wanted = BTreeMap::from([(1, 10), (2, 20)]);
    let full = builder.build(&wanted);
    assert_eq!((full.id, full.epoch, full.partitions.len()), (0, 0, 2));
    builder.answered(Ok(7));
    let wanted = BTreeMap::from([(2, 25), (3, 30)]);
    let plan = builder.build(&wanted);
    let expected = Plan {
        id: 7,
        epoch: 1,
        partitions: vec![(2, 25), (3, 30)],
        forgotten: vec![1],
    };
    assert_eq!(plan, expected);
    builder.answered(Err(SessionError::InvalidEpoch));
    let again = builder.build(&wanted);
    assert_eq!((again.id, again.epoch, again.partitions.len()), (7, 0, 2));
    builder.answered(Ok(0)); // the leader declined: full fetches go on
    assert_eq!(builder.build(&wanted).epoch, 0);
}

#[test]
fn epochs_wrap_to_one() {
    assert_eq!(next(0), 1);
    assert_eq!(next(41), 42);
    assert_eq!(next(i32::MAX), 1);
}

/// What happens between one follower and its leader in a step.
#[derive(Debug, Clone)]
enum Step {
    /// The follower's wanted partitions change (key, fetch offset; None
    /// drops it), the leader's answers change (key, high watermark), and
    /// a fetch goes out and is answered.
    Exchange {
        wanted: Vec<(i32, Option<i64>)>,
        moved: Vec<(i32, i64)>,
    },
    /// A fetch goes out and its answer is lost.
    Lost,
    /// Another fetcher fills the cache, evicting this one's session.
    Evicted,
}

fn step() -> impl Strategy<Value = Step> {
    let change = prop::collection::vec((0..8i32, prop::option::of(0..100i64)), 0..4);
    let moved = prop::collection::vec((0..8i32, 0..100i64), 0..4);
    prop_oneof![
        6 => (change, moved).prop_map(|(wanted, moved)| Step::Exchange { wanted, moved }),
        1 => Just(Step::Lost),
        1 => Just(Step::Evicted),
    ]
}

/// An answered fetch: the session id named, the partitions read, the
/// answers carried.
type Exchanged = (i32, BTreeMap<i32, i64>, Vec<(i32, i64)>);

/// Sends what `builder` plans to `cache`; returns the answers carried, or
/// the session error.
fn exchange(
    builder: &mut SessionBuilder<i32, i64>,
    cache: &mut Cache,
    wanted: &BTreeMap<i32, i64>,
    hw: &BTreeMap<i32, i64>,
    now_ms: u64,
    fresh: &mut impl FnMut() -> i32,
) -> Result<Exchanged, SessionError> {
    let plan = builder.build(wanted);
    let request = SessionRequest {
        owner: 1,
        id: plan.id,
        epoch: plan.epoch,
        partitions: plan.partitions,
        forgotten: plan.forgotten,
    };
    let (context, reads) = cache.open(request, now_ms, fresh)?;
    let mut carried = Vec::new();
    for (key, _) in &reads {
        let answer = hw.get(key).copied().unwrap_or(0);
        if cache.include(context, key, &answer, false)? {
            carried.push((*key, answer));
        }
    }
    Ok((context.id(), reads.into_iter().collect(), carried))
}

proptest! {
    /// Whatever is lost or evicted, every answered fetch reads exactly the
    /// partitions the follower wants at the offsets it wants, and the
    /// follower's view of every answer (full answers, then changes) is the
    /// leader's.
    #[test]
    fn the_leader_reads_what_the_follower_wants(steps in prop::collection::vec(step(), 1..40)) {
        let mut builder = SessionBuilder::<i32, i64>::default();
        let mut cache = Cache::new(1);
        let mut fresh = ids();
        let (mut wanted, mut hw) = (BTreeMap::new(), BTreeMap::new());
        let mut seen: BTreeMap<i32, i64> = BTreeMap::new();
        // Whether an answer was lost or the session evicted since the last
        // exchange: only then may a fetch be refused.
        let mut disturbed = false;
        for (now_ms, step) in (0u64..).zip(steps) {
            match step {
                Step::Exchange { wanted: changes, moved } => {
                    for (key, offset) in changes {
                        match offset {
                            Some(o) => wanted.insert(key, o),
                            None => wanted.remove(&key),
                        };
                    }
                    hw.extend(moved);
                    let answer = exchange(&mut builder, &mut cache, &wanted, &hw, now_ms, &mut fresh);
                    builder.answered(answer.as_ref().map(|a| a.0).map_err(|e| *e));
                    let Ok((_, reads, carried)) = answer else {
                        prop_assert!(disturbed, "refused undisturbed: {:?}", answer);
                        disturbed = false;
                        // The next one is full and succeeds.
                        let again = exchange(&mut builder, &mut cache, &wanted, &hw, now_ms, &mut fresh);
                        prop_assert!(again.is_ok());
                        let (id, reads, carried) = again.unwrap();
                        builder.answered(Ok(id));
                        prop_assert_eq!(&reads, &wanted);
                        seen = carried.into_iter().collect();
                        continue;
                    };
                    prop_assert_eq!(&reads, &wanted);
                    disturbed = false;
                    seen.retain(|k, _| wanted.contains_key(k));
                    seen.extend(carried);
                    for key in wanted.keys() {
                        prop_assert_eq!(seen.get(key), Some(&hw.get(key).copied().unwrap_or(0)));
                    }
                }
                Step::Lost => {
                    let _ = exchange(&mut builder, &mut cache, &wanted, &hw, now_ms, &mut fresh);
                    builder.reset();
                    seen.clear(); // a full answer comes next
                    disturbed = true;
                }
                Step::Evicted => {
                    cache.open(request(2, 0, 0, &[]), now_ms, &mut fresh).unwrap();
                    disturbed = true;
                }
            }
        }
    }
}
