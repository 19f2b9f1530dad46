use super::*;
use crate::check;

// Builders: every op on topic "t", so each scenario reads as a story.

fn serve(partition: PartitionId, broker: BrokerId, epoch: LeaderEpoch, ms: (u64, u64)) -> Op {
    Op::Serve(ServeWindow {
        broker,
        topic: "t".into(),
        partition,
        leader_epoch: epoch,
        first_ms: ms.0,
        last_ms: ms.1,
    })
}

fn send(t: (u64, u64), outcome: SendOutcome) -> Op {
    Op::Send(SendOp {
        process: 1,
        t_start: t.0,
        t_end: t.1,
        topic: "t".into(),
        partition: 0,
        value: format!("v{}-{}", t.0, t.1),
        outcome,
        idempotent: false,
    })
}

/// An acknowledged send; offsets rise with the ack time so that no
/// ordering rule fires.
fn ok(t: (u64, u64)) -> Op {
    send(t, SendOutcome::Ok { offset: t.1 as i64 })
}

/// A fault on "t"-`partition`'s leader, or on no partition if `None`.
fn nemesis(name: &str, partition: Option<PartitionId>, ms: (u64, u64)) -> Op {
    Op::Nemesis(NemesisOp {
        name: name.into(),
        targets: vec!["broker-1".into()],
        topic: partition.map(|_| "t".into()),
        partition,
        start_ms: ms.0,
        end_ms: ms.1,
    })
}

fn summary(ops: Vec<Op>) -> RunSummary {
    let history = History { ops };
    run_summary(&history, &check(&history))
}

#[test]
fn leader_changes_count_new_epochs_per_partition() {
    // (case, ops, expected (partition, epoch, broker, at_ms) in time order)
    type Case = (
        &'static str,
        Vec<Op>,
        Vec<(PartitionId, LeaderEpoch, BrokerId, u64)>,
    );
    let cases: Vec<Case> = vec![
        ("no windows", vec![], vec![]),
        (
            "one epoch, two windows",
            vec![serve(0, 1, 1, (0, 10)), serve(0, 1, 1, (20, 30))],
            vec![],
        ),
        (
            // p0 epochs 1, 1, 2, 3: two changes; p1's only epoch is none.
            "two partitions, recorded out of order",
            vec![
                serve(0, 3, 3, (300, 400)),
                serve(1, 2, 7, (0, 400)),
                serve(0, 1, 1, (0, 100)),
                serve(0, 1, 1, (110, 150)),
                serve(0, 2, 2, (200, 290)),
            ],
            vec![(0, 2, 2, 200), (0, 3, 3, 300)],
        ),
        (
            // The epoch's earliest window names the broker and the time.
            "an epoch served twice",
            vec![
                serve(0, 1, 1, (0, 10)),
                serve(0, 4, 2, (50, 60)),
                serve(0, 2, 2, (20, 30)),
            ],
            vec![(0, 2, 2, 20)],
        ),
    ];
    for (case, ops, expected) in cases {
        let changes = leader_changes(&History { ops });
        let found: Vec<_> = changes
            .iter()
            .map(|c| (c.partition, c.leader_epoch, c.broker, c.at_ms))
            .collect();
        assert_eq!(found, expected, "{case}");
    }
}

/// Kill the leader of t-0 at 1000: epoch 1 served until 990, epoch 2
/// from 1400. The old leader's ack at 1200 and a failed send at 1420 do
/// not end the failover; the ok send at 1450 does: 450 ms.
fn failover_story() -> Vec<Op> {
    vec![
        serve(0, 1, 1, (0, 990)),
        ok((900, 950)),
        nemesis("kill-leader", Some(0), (1000, 3000)),
        ok((1100, 1200)),
        serve(0, 2, 2, (1400, 5000)),
        send((1000, 1420), SendOutcome::Unknown),
        ok((1500, 1510)),
        ok((1300, 1450)),
    ]
}

#[test]
fn failover_runs_from_the_strike_to_the_new_leaders_first_ack() {
    let s = summary(failover_story());
    assert_eq!(s.faults.len(), 1);
    assert_eq!(s.faults[0].failover_ms, Some(450));
    assert_eq!((s.failovers, s.faults_without_leader_change), (1, 0));
    assert_eq!(
        (s.failover_p50_ms, s.failover_p99_ms, s.failover_max_ms),
        (Some(450), Some(450), Some(450))
    );
    assert_eq!((s.operations, s.sends, s.acknowledged), (8, 5, 4));
    assert_eq!(s.leader_changes, 1);
}

#[test]
fn faults_without_a_failover() {
    // (case, ops, failover_ms, counted as without leader change)
    let cases: Vec<(&str, Vec<Op>, Option<u64>, usize)> = vec![
        (
            "the leader kept its epoch",
            vec![
                serve(0, 1, 1, (0, 5000)),
                nemesis("pause", Some(0), (1000, 2000)),
                ok((1500, 2500)),
            ],
            None,
            1,
        ),
        (
            // Serve windows split when a paused leader resumes: same epoch.
            "the paused leader resumed in its epoch",
            vec![
                serve(0, 1, 1, (0, 990)),
                nemesis("pause", Some(0), (1000, 1400)),
                serve(0, 1, 1, (1500, 5000)),
                ok((1000, 1600)),
            ],
            None,
            1,
        ),
        (
            // A window after the strike in an epoch not above the current
            // one is no new leader.
            "only an older epoch came back",
            vec![
                serve(0, 1, 2, (0, 990)),
                nemesis("kill-leader", Some(0), (1000, 2000)),
                serve(0, 2, 1, (1400, 5000)),
                ok((1400, 1500)),
            ],
            None,
            1,
        ),
        (
            "a new leader but no ack after it",
            vec![
                serve(0, 1, 1, (0, 990)),
                nemesis("kill-leader", Some(0), (1000, 2000)),
                serve(0, 2, 2, (1400, 5000)),
                ok((1100, 1200)),
            ],
            None,
            0,
        ),
        (
            // Nothing says which leader a controller kill should move.
            "aimed at no partition",
            vec![
                serve(0, 1, 1, (0, 990)),
                nemesis("kill-controller", None, (1000, 2000)),
                serve(0, 2, 2, (1400, 5000)),
                ok((1400, 1500)),
            ],
            None,
            0,
        ),
        (
            // With no window before the strike, any epoch after it counts.
            "no leader before the strike",
            vec![
                nemesis("kill-leader", Some(0), (1000, 2000)),
                serve(0, 2, 1, (1400, 5000)),
                ok((1400, 1600)),
            ],
            Some(600),
            0,
        ),
    ];
    for (case, ops, failover, without) in cases {
        let s = summary(ops);
        assert_eq!(s.faults[0].failover_ms, failover, "{case}");
        assert_eq!(s.faults_without_leader_change, without, "{case}");
        assert_eq!(s.failovers, usize::from(failover.is_some()), "{case}");
        assert_eq!(s.failover_max_ms, failover, "{case}");
    }
}

#[test]
fn nearest_rank_percentiles() {
    let one_to = |n: u64| (1..=n).collect::<Vec<u64>>();
    // (values, percent, expected)
    let cases: Vec<(Vec<u64>, u32, Option<u64>)> = vec![
        (vec![], 50, None),
        (vec![7], 0, Some(7)),
        (vec![7], 99, Some(7)),
        (one_to(4), 50, Some(2)),
        (one_to(4), 51, Some(3)),
        (one_to(30), 50, Some(15)),
        (one_to(30), 99, Some(30)),
        (one_to(100), 99, Some(99)),
        (one_to(100), 100, Some(100)),
        (one_to(200), 99, Some(198)),
    ];
    for (values, percent, expected) in cases {
        assert_eq!(
            nearest_rank(&values, percent),
            expected,
            "p{percent} of {} values",
            values.len()
        );
    }
}

#[test]
fn summary_percentiles_over_faults() {
    // Three kills of t-0 with failovers of 100, 300 and 200 ms.
    let mut ops = vec![serve(0, 1, 1, (0, 900))];
    for (i, failover) in [100, 300, 200].into_iter().enumerate() {
        let start = 1000 * (i as u64 + 1);
        ops.push(nemesis("kill-leader", Some(0), (start, start + 500)));
        ops.push(serve(0, 1, i as i32 + 2, (start + 50, start + 900)));
        ops.push(ok((start, start + failover)));
    }
    let s = summary(ops);
    assert_eq!(s.failovers, 3);
    assert_eq!(
        (s.failover_p50_ms, s.failover_p99_ms, s.failover_max_ms),
        (Some(200), Some(300), Some(300))
    );
}

#[test]
fn text_names_nonzero_classes_and_the_verdict() {
    let pass = summary(failover_story()).to_text();
    assert!(pass.contains("failovers: 1 (p50 450 ms"), "{pass}");
    assert!(pass.ends_with("verdict: PASS\n"), "{pass}");
    assert!(!pass.contains("anomaly"), "{pass}");
    // An acknowledged send missing from the final log is a lost write.
    let mut ops = failover_story();
    ops.push(Op::FinalLog(crate::history::FinalLog {
        topic: "t".into(),
        partition: 0,
        records: vec![],
    }));
    let fail = summary(ops);
    assert_eq!(fail.lost, 4);
    let text = fail.to_text();
    assert!(text.contains("anomaly lost_write: 4\n"), "{text}");
    assert!(!text.contains("anomaly duplicate"), "{text}");
    assert!(text.ends_with("verdict: FAIL\n"), "{text}");
}

/// Checks that every tag is closed in order and no text holds a raw `<`
/// or `>`: enough XML to catch a missing escape or a broken element.
fn assert_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        assert!(
            !rest[..start].contains('>'),
            "raw > before {}",
            &rest[start..]
        );
        let end = start + rest[start..].find('>').expect("unclosed tag");
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "raw < in {tag}");
        let name = tag.split_whitespace().next().unwrap_or("");
        if let Some(closing) = name.strip_prefix('/') {
            assert_eq!(open.pop(), Some(closing), "closing {closing}");
        } else if !tag.ends_with('/') {
            open.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "never closed: {open:?}");
}

#[test]
fn timeline_draws_faults_and_leader_changes() {
    let mut ops = failover_story();
    ops.push(nemesis("isolate<leader> & \"friends\"", None, (2000, 2500)));
    ops.push(serve(0, 3, 3, (6000, 7000)));
    let svg = timeline_svg(&History { ops });
    assert_well_formed(&svg);
    assert_eq!(svg.matches("<rect class=\"nemesis\"").count(), 2);
    assert_eq!(svg.matches("class=\"leader-change\"").count(), 2);
    assert_eq!(svg.matches("stroke=\"red\" stroke-width=\"1\"").count(), 2);
    assert!(svg.contains("isolate&lt;leader&gt; &amp; &quot;friends&quot;"));
    assert!(!svg.contains("isolate<"));
    assert!(svg.contains("<title>t p0 e2→b2 at 1.4 s</title>"), "{svg}");
    assert!(svg.contains("<polyline"));
    assert!(!svg.contains("no data"));
}

#[test]
fn timeline_without_data() {
    // (case, ops, nemesis bands expected, "no data" texts expected: one
    // for the whole picture, or one per panel)
    let cases: Vec<(&str, Vec<Op>, usize, usize)> = vec![
        ("empty history", vec![], 0, 1),
        (
            "only failed sends",
            vec![
                send((0, 10), SendOutcome::Unknown),
                nemesis("pause", None, (5, 8)),
            ],
            1,
            2,
        ),
        (
            "one instant",
            vec![Op::Nemesis(NemesisOp {
                name: "restart".into(),
                targets: vec![],
                topic: None,
                partition: None,
                start_ms: 7,
                end_ms: 7,
            })],
            1,
            2,
        ),
    ];
    for (case, ops, bands, no_data) in cases {
        let svg = timeline_svg(&History { ops });
        assert_well_formed(&svg);
        assert_eq!(svg.matches(">no data<").count(), no_data, "{case}");
        assert_eq!(svg.matches("class=\"nemesis\"").count(), bands, "{case}");
        assert!(
            !svg.contains("NaN") && !svg.contains("inf"),
            "{case}: {svg}"
        );
    }
}

#[test]
fn timeline_leaves_out_a_sliver_of_a_last_second() {
    // Ten acks a second for two seconds, and one 5 ms into a third.
    let ops: Vec<Op> = (0..21).map(|i| ok((i * 100, i * 100 + 5))).collect();
    let svg = timeline_svg(&History { ops });
    assert_well_formed(&svg);
    // The throughput line comes first: two full seconds, no third point
    // at zero.
    let line = svg.split("<polyline points=\"").nth(1).unwrap();
    let points = line.split('"').next().unwrap();
    assert_eq!(points.split(' ').count(), 2, "{points}");
    assert!(svg.contains("text-anchor=\"end\">10</text>"), "{svg}");
}
