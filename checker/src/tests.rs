use super::*;
use crate::history::*;
use crate::order_rules::{regressions, Timed};
use proptest::prelude::*;

// Builders for one partition, "t"-0, so each scenario reads as a story.

fn send(process: ProcessId, t: (u64, u64), value: &str, offset: Offset) -> Op {
    send_with(process, t, value, SendOutcome::Ok { offset }, false)
}

fn send_with(
    process: ProcessId,
    t: (u64, u64),
    value: &str,
    outcome: SendOutcome,
    idempotent: bool,
) -> Op {
    Op::Send(SendOp {
        process,
        t_start: t.0,
        t_end: t.1,
        topic: "t".into(),
        partition: 0,
        value: value.into(),
        outcome,
        idempotent,
    })
}

fn records(rs: &[(Offset, &str)]) -> Vec<Record> {
    rs.iter()
        .map(|(offset, value)| Record {
            offset: *offset,
            value: (*value).into(),
        })
        .collect()
}

fn poll(process: ProcessId, t: (u64, u64), rs: &[(Offset, &str)]) -> Op {
    Op::Poll(PollOp {
        process,
        t_start: t.0,
        t_end: t.1,
        topic: "t".into(),
        partition: 0,
        records: records(rs),
        high_watermark: None,
    })
}

fn seek(process: ProcessId, t: u64, offset: Option<Offset>) -> Op {
    Op::Seek(SeekOp {
        process,
        t_start: t,
        t_end: t,
        topic: "t".into(),
        partition: 0,
        offset,
    })
}

fn final_log(rs: &[(Offset, &str)]) -> Op {
    Op::FinalLog(FinalLog {
        topic: "t".into(),
        partition: 0,
        records: records(rs),
    })
}

fn commit(process: ProcessId, t: (u64, u64), offset: Offset, outcome: CommitOutcome) -> Op {
    Op::Commit(CommitOp {
        process,
        t_start: t.0,
        t_end: t.1,
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        offset,
        generation: 1,
        outcome,
    })
}

fn serve(broker: BrokerId, leader_epoch: LeaderEpoch, first_ms: u64, last_ms: u64) -> Op {
    Op::Serve(ServeWindow {
        broker,
        topic: "t".into(),
        partition: 0,
        leader_epoch,
        first_ms,
        last_ms,
    })
}

fn assign(member: &str, from_ms: u64, to_ms: Option<u64>) -> Op {
    Op::Assign(Assignment {
        group: "g".into(),
        member: member.into(),
        topic: "t".into(),
        partition: 0,
        from_ms,
        to_ms,
    })
}

fn classes(ops: Vec<Op>) -> Vec<&'static str> {
    check(&History { ops })
        .anomalies
        .iter()
        .map(Anomaly::class)
        .collect()
}

/// Asserts the bad history is flagged with exactly `class` (once or more)
/// and the good variant of the same scenario with nothing.
fn flags(class: &str, good: Vec<Op>, bad: Vec<Op>) {
    assert_eq!(classes(good), Vec::<&str>::new(), "good variant of {class}");
    let found = classes(bad);
    assert!(
        !found.is_empty() && found.iter().all(|c| *c == class),
        "{class}: {found:?}"
    );
}

/// A clean story: two sends, a consumer reads both over two polls, commits,
/// the leader changes once with a higher epoch, a member hands over.
fn good_history() -> Vec<Op> {
    vec![
        send(1, (0, 1), "a", 0),
        send(1, (2, 3), "b", 1),
        send_with(
            1,
            (4, 5),
            "c",
            SendOutcome::Fail {
                error: "NOT_ENOUGH_REPLICAS".into(),
            },
            false,
        ),
        send_with(1, (6, 7), "d", SendOutcome::Unknown, true),
        poll(2, (8, 9), &[(0, "a")]),
        poll(2, (10, 11), &[(1, "b"), (2, "d")]),
        commit(2, (12, 13), 3, CommitOutcome::Ok),
        serve(1, 1, 0, 5),
        serve(2, 2, 6, 20),
        assign("m1", 0, Some(10)),
        assign("m2", 10, None),
        final_log(&[(0, "a"), (1, "b"), (2, "d")]),
        // A fault is context only: no rule may flag the history for it.
        Op::Nemesis(NemesisOp {
            name: "kill-leader".into(),
            targets: vec!["broker-1".into()],
            topic: Some("t".into()),
            partition: Some(0),
            start_ms: 5,
            end_ms: 15,
        }),
    ]
}

#[test]
fn good_history_has_no_anomalies() {
    let report = check(&History {
        ops: good_history(),
    });
    assert!(report.is_valid(), "{:?}", report.anomalies);
    assert_eq!(report.summary.operations, 13);
    assert_eq!(report.summary.sends_acknowledged, 2);
    assert_eq!(
        report.summary.anomalies_by_class.len(),
        Anomaly::CLASSES.len()
    );
}

#[test]
fn lost_write() {
    let good = vec![send(1, (0, 1), "a", 0), final_log(&[(0, "a")])];
    // Acknowledged at 0, but a new leader's record took offset 0.
    let bad = vec![send(1, (0, 1), "a", 0), final_log(&[(0, "x")])];
    flags("lost_write", good, bad.clone());
    let report = check(&History { ops: bad });
    assert_eq!(report.summary.sends_lost, 1);
    let expected = Anomaly::LostWrite {
        topic_partition: TopicPartition::new("t", 0),
        send: 0,
        offset: 0,
        value: "a".into(),
        stored: Some("x".into()),
    };
    assert_eq!(report.anomalies, vec![expected]);
}

#[test]
fn inconsistent_offset_two_values_at_one_offset() {
    let good = vec![send(1, (0, 1), "a", 0), poll(2, (2, 3), &[(0, "a")])];
    // No final log: only the two client observations, which disagree.
    let bad = vec![send(1, (0, 1), "a", 0), poll(2, (2, 3), &[(0, "b")])];
    flags("inconsistent_offset", good, bad);
}

#[test]
fn inconsistent_offset_one_value_at_two_offsets() {
    // Stored at both offsets: a duplicate (counted), not an inconsistency.
    let both = final_log(&[(0, "a"), (1, "a")]);
    let good = vec![
        send(1, (0, 1), "a", 0),
        poll(2, (2, 3), &[(0, "a"), (1, "a")]),
        both,
    ];
    assert_eq!(classes(good), Vec::<&str>::new());
    // Without a final log, one value at two offsets may be a retry: unjudged.
    let unjudged = vec![send(1, (0, 1), "a", 0), poll(2, (2, 3), &[(1, "a")])];
    assert_eq!(classes(unjudged), Vec::<&str>::new());
    // The log holds it at 0 only, so the read at 1 moved it: the poll is
    // also a phantom read, which this class always accompanies.
    let moved = vec![
        send(1, (0, 1), "a", 0),
        poll(2, (2, 3), &[(1, "a")]),
        final_log(&[(0, "a"), (1, "b")]),
    ];
    assert_eq!(classes(moved), vec!["inconsistent_offset", "phantom_read"]);
}

#[test]
fn inconsistent_offset_between_final_logs() {
    let good = vec![final_log(&[(0, "a")]), final_log(&[(0, "a"), (1, "b")])];
    let bad = vec![final_log(&[(0, "a")]), final_log(&[(0, "b")])];
    flags("inconsistent_offset", good, bad);
}

#[test]
fn duplicate_is_an_anomaly_only_when_idempotent() {
    let at_least_once = vec![
        send_with(1, (0, 1), "a", SendOutcome::Ok { offset: 1 }, false),
        final_log(&[(0, "a"), (1, "a")]),
    ];
    let report = check(&History {
        ops: at_least_once.clone(),
    });
    assert!(report.is_valid());
    assert_eq!(report.summary.duplicates, 1);
    let mut idempotent = at_least_once.clone();
    idempotent[0] = send_with(1, (0, 1), "a", SendOutcome::Ok { offset: 1 }, true);
    let once = vec![idempotent[0].clone(), final_log(&[(1, "a")])];
    flags("duplicate", once, idempotent);
}

#[test]
fn non_monotonic_send() {
    let good = vec![send(1, (0, 1), "a", 0), send(1, (2, 3), "b", 1)];
    let bad = vec![send(1, (0, 1), "a", 1), send(1, (2, 3), "b", 0)];
    flags("non_monotonic_send", good, bad);
    // Overlapping sends may land either way; other processes don't count.
    let concurrent = vec![
        send(1, (0, 3), "a", 5),
        send(1, (2, 4), "b", 4),
        send(2, (5, 6), "c", 3),
    ];
    assert_eq!(classes(concurrent), Vec::<&str>::new());
}

#[test]
fn regressions_worked_example() {
    let t = |op, t_start, t_end, offset| Timed {
        op,
        t_start,
        t_end,
        offset,
    };
    let items = [t(0, 0, 1, 5), t(1, 2, 3, 7), t(2, 2, 4, 6), t(3, 5, 6, 4)];
    let pairs: Vec<(usize, usize)> = regressions(&items, 0)
        .iter()
        .map(|(a, b)| (a.op, b.op))
        .collect();
    assert_eq!(pairs, vec![(1, 3)]);
}

#[test]
fn non_monotonic_poll() {
    let log = final_log(&[(0, "a"), (1, "b")]);
    let reread = vec![
        poll(2, (0, 1), &[(0, "a"), (1, "b")]),
        seek(2, 2, Some(0)),
        poll(2, (3, 4), &[(0, "a")]),
    ];
    let mut good = reread.clone();
    good.push(log.clone());
    let mut bad = reread;
    bad.remove(1); // no seek: the consumer went back on its own
    bad.push(log);
    flags("non_monotonic_poll", good, bad);
}

#[test]
fn non_monotonic_poll_on_a_repeat() {
    // Re-delivering the last record without a seek: the position must advance.
    let bad = vec![poll(2, (0, 1), &[(0, "a")]), poll(2, (2, 3), &[(0, "a")])];
    flags(
        "non_monotonic_poll",
        vec![poll(2, (0, 1), &[(0, "a")])],
        bad,
    );
}

#[test]
fn non_monotonic_poll_within_one_poll_and_reset_alias() {
    let bad = vec![poll(2, (0, 1), &[(1, "b"), (0, "a")])];
    flags(
        "non_monotonic_poll",
        vec![poll(2, (0, 1), &[(0, "a"), (1, "b")])],
        bad,
    );
    let line = r#"{"kind":"reset","process":2,"t_start":2,"t_end":2,"topic":"t","partition":0}"#;
    let reset = parse(line).unwrap().ops.remove(0);
    assert_eq!(reset, seek(2, 2, None));
    let after_reset = vec![
        poll(2, (0, 1), &[(1, "b")]),
        reset,
        poll(2, (3, 4), &[(0, "a")]),
    ];
    assert_eq!(classes(after_reset), Vec::<&str>::new());
}

#[test]
fn poll_skip() {
    let log = final_log(&[(0, "a"), (1, "b"), (2, "c")]);
    let good = vec![
        poll(2, (0, 1), &[(0, "a")]),
        poll(2, (2, 3), &[(1, "b"), (2, "c")]),
        log.clone(),
    ];
    let bad = vec![
        poll(2, (0, 1), &[(0, "a")]),
        poll(2, (2, 3), &[(2, "c")]),
        log,
    ];
    flags("poll_skip", good, bad.clone());
    let report = check(&History { ops: bad });
    let Anomaly::PollSkip {
        skipped,
        earlier: 0,
        later: 1,
        ..
    } = &report.anomalies[0]
    else {
        panic!()
    };
    assert_eq!(skipped, &vec![1]);
    // A gap the final log does not hold (truncated) is no skip.
    let truncated = vec![
        poll(2, (0, 1), &[(0, "a")]),
        poll(2, (2, 3), &[(2, "c")]),
        final_log(&[(0, "a"), (2, "c")]),
    ];
    assert_eq!(classes(truncated), Vec::<&str>::new());
}

#[test]
fn phantom_read() {
    let good = vec![
        poll(2, (0, 1), &[(0, "a"), (1, "b")]),
        final_log(&[(0, "a"), (1, "b")]),
    ];
    // Offset 1 was read above the HW and truncated away.
    let bad = vec![
        poll(2, (0, 1), &[(0, "a"), (1, "b")]),
        final_log(&[(0, "a")]),
    ];
    flags("phantom_read", good, bad);
}

#[test]
fn epoch_regression() {
    let good = vec![serve(1, 1, 0, 10), serve(2, 2, 11, 20), serve(1, 3, 21, 30)];
    let bad = vec![serve(1, 2, 0, 10), serve(2, 1, 11, 20)];
    flags("epoch_regression", good, bad);
    // One epoch, two brokers (claim 1), even without overlap.
    let shared = vec![serve(1, 1, 0, 10), serve(2, 1, 11, 20)];
    flags(
        "epoch_regression",
        vec![serve(1, 1, 0, 10), serve(1, 1, 11, 20)],
        shared,
    );
}

#[test]
fn overlapping_serve() {
    let good = vec![serve(1, 1, 0, 10), serve(2, 2, 11, 20)];
    // Closed intervals: both served at instant 10.
    let bad = vec![serve(1, 1, 0, 10), serve(2, 2, 10, 20)];
    flags("overlapping_serve", good, bad);
}

#[test]
fn overlapping_ownership() {
    let good = vec![
        assign("m1", 0, Some(10)),
        assign("m2", 10, Some(20)),
        assign("m1", 20, None),
    ];
    let bad = vec![assign("m1", 0, Some(11)), assign("m2", 10, None)];
    flags("overlapping_ownership", good.clone(), bad);
    // An empty interval owns nothing; an open end runs to the end.
    let empty = good
        .iter()
        .cloned()
        .chain([assign("m3", 5, Some(5))])
        .collect();
    assert_eq!(classes(empty), Vec::<&str>::new());
    let open = good.into_iter().chain([assign("m3", 30, None)]).collect();
    assert_eq!(classes(open), vec!["overlapping_ownership"]);
}

#[test]
fn commit_regression() {
    let fenced = commit(
        3,
        (4, 5),
        2,
        CommitOutcome::Fail {
            error: "ILLEGAL_GENERATION".into(),
        },
    );
    let good = vec![
        commit(2, (0, 1), 5, CommitOutcome::Ok),
        fenced.clone(),
        commit(2, (6, 7), 5, CommitOutcome::Ok),
    ];
    let bad = vec![
        commit(2, (0, 1), 5, CommitOutcome::Ok),
        commit(3, (4, 5), 2, CommitOutcome::Ok),
    ];
    flags("commit_regression", good, bad);
    // Within one millisecond of each other, commits count as concurrent.
    let same_ms = vec![
        commit(2, (0, 1), 5, CommitOutcome::Ok),
        commit(3, (1, 2), 2, CommitOutcome::Ok),
    ];
    assert_eq!(classes(same_ms), Vec::<&str>::new());
}

#[test]
fn parse_round_trip_and_errors() {
    let ops = good_history();
    let jsonl: String = ops
        .iter()
        .map(|op| serde_json::to_string(op).unwrap() + "\n\n")
        .collect();
    assert_eq!(parse(&jsonl).unwrap(), History { ops });
    let bad_kind = "\n{\"kind\":\"produce\"}";
    assert!(
        parse(bad_kind).unwrap_err().starts_with("line 2:"),
        "{}",
        parse(bad_kind).unwrap_err()
    );
    let typo = r#"{"kind":"poll","process":1,"t_start":0,"t_end":1,"topic":"t","partition":0,"records":[],"high_watermrk":3}"#;
    assert!(parse(typo).unwrap_err().contains("high_watermrk"));
    let backwards = r#"{"kind":"serve","broker":1,"topic":"t","partition":0,"leader_epoch":1,"first_ms":5,"last_ms":4}"#;
    assert!(parse(backwards)
        .unwrap_err()
        .starts_with("line 1: interval ends"));
    let healed_before_struck =
        r#"{"kind":"nemesis","name":"pause","targets":["broker-1"],"start_ms":5,"end_ms":4}"#;
    assert!(parse(healed_before_struck)
        .unwrap_err()
        .starts_with("line 1: interval ends"));
}

#[test]
fn parse_nemesis() {
    let aimed = r#"{"kind":"nemesis","name":"kill-leader","targets":["broker-2"],"topic":"campaign","partition":0,"start_ms":100,"end_ms":200}"#;
    let Op::Nemesis(n) = parse(aimed).unwrap().ops.remove(0) else {
        panic!("not a nemesis")
    };
    assert_eq!(
        (
            n.name.as_str(),
            n.targets,
            n.topic,
            n.partition,
            n.start_ms,
            n.end_ms
        ),
        (
            "kill-leader",
            vec!["broker-2".to_owned()],
            Some("campaign".to_owned()),
            Some(0),
            100,
            200
        )
    );
    // Topic and partition are optional: most faults aim at no partition.
    let unaimed = r#"{"kind":"nemesis","name":"kill-controller","targets":["controller-1"],"start_ms":1,"end_ms":2}"#;
    assert!(parse(unaimed).is_ok());
    let typo =
        r#"{"kind":"nemesis","name":"pause","targets":[],"start_ms":1,"end_ms":2,"topik":"t"}"#;
    assert!(parse(typo).unwrap_err().contains("topik"));
}

#[test]
fn report_serializes_with_class_names() {
    let report = check(&History {
        ops: vec![send(1, (0, 1), "a", 0), final_log(&[])],
    });
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["anomalies"][0]["class"], "lost_write");
    assert_eq!(json["summary"]["anomalies_by_class"]["lost_write"], 1);
    assert_eq!(report.of_class("lost_write").count(), 1);
}

/// What a valid run looks like: one sequential producer whose sends are
/// acknowledged, fail, or time out (stored or not); the log holds the
/// acknowledged and stored ones at consecutive offsets; one consumer reads
/// the log in polls of random sizes, sometimes seeking back, and commits
/// after each poll; leaders and owners change without overlap.
fn valid_history() -> impl Strategy<Value = History> {
    let sends = prop::collection::vec(0..4u8, 0..40);
    let chunks = prop::collection::vec((1..5usize, prop::option::of(0..3i64)), 0..20);
    let epochs = prop::collection::vec(1..3i32, 0..6);
    (sends, chunks, epochs).prop_map(|(sends, chunks, epochs)| {
        let mut ops = Vec::new();
        let mut log: Vec<(Offset, String)> = Vec::new();
        for (n, fate) in sends.into_iter().enumerate() {
            let value = format!("v{n}");
            let t = (2 * n as u64, 2 * n as u64 + 1);
            let next = log.len() as Offset;
            let (outcome, stored) = match fate {
                0 => (SendOutcome::Ok { offset: next }, true),
                1 => (
                    SendOutcome::Fail {
                        error: "NOT_LEADER_OR_FOLLOWER".into(),
                    },
                    false,
                ),
                2 => (SendOutcome::Unknown, true),
                _ => (SendOutcome::Unknown, false),
            };
            ops.push(send_with(1, t, &value, outcome, n % 2 == 0));
            if stored {
                log.push((next, value));
            }
        }
        consume(&mut ops, &log, &chunks);
        lead(&mut ops, &epochs);
        let rs: Vec<(Offset, &str)> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
        ops.push(final_log(&rs));
        History { ops }
    })
}

/// One consumer reads `log` in chunks; `Some(back)` seeks back that far first.
fn consume(ops: &mut Vec<Op>, log: &[(Offset, String)], chunks: &[(usize, Option<i64>)]) {
    let mut position = 0usize;
    // Commits never go back: a seek back re-reads but commits the furthest.
    let mut committed = 0;
    for (n, (size, back)) in chunks.iter().enumerate() {
        let t = 1000 + 4 * n as u64;
        if let Some(back) = back {
            position = position.saturating_sub(*back as usize);
            ops.push(seek(2, t, Some(position as Offset)));
        }
        let end = (position + size).min(log.len());
        let rs: Vec<(Offset, &str)> = log[position..end]
            .iter()
            .map(|(o, v)| (*o, v.as_str()))
            .collect();
        ops.push(poll(2, (t + 1, t + 2), &rs));
        position = end;
        committed = committed.max(position as Offset);
        ops.push(commit(2, (t + 2, t + 3), committed, CommitOutcome::Ok));
    }
}

/// Leaders one after another with rising epochs; owners hand over.
fn lead(ops: &mut Vec<Op>, epoch_steps: &[i32]) {
    let mut epoch = 0;
    for (n, step) in epoch_steps.iter().enumerate() {
        epoch += step;
        let t = 10 * n as u64;
        ops.push(serve(n as BrokerId % 3, epoch, t, t + 9));
        let to = (n + 1 < epoch_steps.len()).then_some(t + 10);
        ops.push(assign(&format!("m{}", n % 2), t, to));
    }
}

proptest! {
    #[test]
    fn valid_histories_have_no_anomalies(history in valid_history()) {
        let report = check(&history);
        prop_assert!(report.is_valid(), "{:?}", report.anomalies);
        prop_assert_eq!(report.summary.duplicates, 0);
        let jsonl: String = history.ops.iter().map(|op| serde_json::to_string(op).unwrap() + "\n").collect();
        prop_assert_eq!(parse(&jsonl).unwrap(), history);
    }
}
