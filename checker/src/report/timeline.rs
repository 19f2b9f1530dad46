//! The run as a picture: a hand-written SVG with two panels on one time
//! axis, acknowledged sends per second above, send latency below, each
//! fault shaded across both and each leader change a red line. No library:
//! the shapes are few and a string is the whole output.

use std::fmt::Write as _;

use super::{leader_changes, nearest_rank, nemeses, sends, LeaderChange};
use crate::history::{History, NemesisOp, Op, SendOutcome};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 980.0;
/// Acknowledged sends per second.
const THROUGHPUT: Panel = Panel {
    top: 50.0,
    bottom: 230.0,
};
/// Send latency.
const LATENCY: Panel = Panel {
    top: 260.0,
    bottom: 440.0,
};
/// At most this many buckets (one polyline point each); a longer run gets
/// buckets wider than a second rather than an unbounded picture.
const BUCKETS_MAX: u64 = 2000;
/// Roughly how many x-axis ticks to draw.
const TICKS_TARGET: u64 = 10;
const COLOR_THROUGHPUT: &str = "steelblue";
const COLOR_P50: &str = "seagreen";
const COLOR_P99: &str = "darkorange";
const COLOR_FAULT: &str = "#c9a0dc";

/// The vertical extent of one panel, in SVG units (y grows downwards).
struct Panel {
    top: f64,
    bottom: f64,
}

/// The time axis: milliseconds since `origin_ms` mapped onto
/// `LEFT..=RIGHT`.
struct Axis {
    origin_ms: u64,
    /// Never zero, so a one-instant history still maps.
    span_ms: u64,
}

/// The sends of a run cut into equal time buckets, by when they ended
/// (when the client learnt the outcome).
struct Buckets {
    width_ms: u64,
    /// Acknowledged sends per bucket.
    acked: Vec<u64>,
    /// The latencies (`t_end - t_start`) of acknowledged sends per bucket,
    /// ascending.
    latencies_ms: Vec<Vec<u64>>,
}

/// Draws the timeline of a history: x is seconds since its first
/// operation; above, acknowledged sends per second; below, the p50 and p99
/// (nearest rank) latency of the sends acknowledged in each second; every
/// fault shaded with its name, every [`leader_changes`] entry a red line.
/// Hovering shows details (`<title>`). An empty history gives a small SVG
/// saying "no data"; a run without acknowledged sends still shows its
/// faults and leader changes, with "no data" in the panels.
pub fn timeline_svg(history: &History) -> String {
    let Some(axis) = Axis::of(history) else {
        return no_data_svg();
    };
    let buckets = Buckets::of(history, &axis);
    let mut svg = header();
    svg += &time_ticks(&axis);
    for (index, nemesis) in nemeses(history).enumerate() {
        svg += &fault(&axis, nemesis, index);
    }
    svg += &throughput(&axis, &buckets);
    svg += &latency(&axis, &buckets);
    for change in leader_changes(history) {
        svg += &leader_change(&axis, &change);
    }
    svg += &legend();
    svg += "</svg>\n";
    svg
}

impl Axis {
    /// The axis spanning every timed operation, `None` if there is none.
    fn of(history: &History) -> Option<Self> {
        let spans = history.ops.iter().filter_map(time_span);
        let (start, end) = spans.fold(None, |acc: Option<(u64, u64)>, (s, e)| {
            Some(acc.map_or((s, e), |(a, b)| (a.min(s), b.max(e))))
        })?;
        Some(Self {
            origin_ms: start,
            span_ms: (end - start).max(1),
        })
    }

    /// The x coordinate of an instant, clamped into the plot.
    fn x(&self, t_ms: u64) -> f64 {
        let since = t_ms.saturating_sub(self.origin_ms) as f64;
        (LEFT + since / self.span_ms as f64 * (RIGHT - LEFT)).clamp(LEFT, RIGHT)
    }
}

impl Buckets {
    fn of(history: &History, axis: &Axis) -> Self {
        let seconds = axis.span_ms / 1000 + 1;
        let width_ms = 1000 * seconds.div_ceil(BUCKETS_MAX).max(1);
        let count = (axis.span_ms / width_ms + 1) as usize;
        let mut buckets = Self {
            width_ms,
            acked: vec![0; count],
            latencies_ms: vec![Vec::new(); count],
        };
        let acked = sends(history).filter(|s| matches!(s.outcome, SendOutcome::Ok { .. }));
        for send in acked {
            let index = (send.t_end.saturating_sub(axis.origin_ms) / width_ms) as usize;
            // Every send is inside the axis, so `index < count`; `min` only
            // keeps a miscounted edge from panicking.
            let index = index.min(count - 1);
            buckets.acked[index] += 1;
            buckets.latencies_ms[index].push(send.t_end - send.t_start);
        }
        for latencies in &mut buckets.latencies_ms {
            latencies.sort_unstable();
        }
        buckets
    }

    /// The instant a bucket's point is drawn at: its middle.
    fn middle_ms(&self, axis: &Axis, index: usize) -> u64 {
        axis.origin_ms + index as u64 * self.width_ms + self.width_ms / 2
    }

    /// How much of a bucket the run covers: all of it but for the last.
    fn covered_ms(&self, axis: &Axis, index: usize) -> u64 {
        let start = index as u64 * self.width_ms;
        self.width_ms.min(axis.span_ms - start + 1)
    }

    fn is_empty(&self) -> bool {
        self.acked.iter().all(|n| *n == 0)
    }
}

impl Panel {
    /// The y coordinate of `value` on a linear scale from 0 to `max`.
    fn y(&self, value: f64, max: f64) -> f64 {
        self.bottom - value / max.max(f64::MIN_POSITIVE) * (self.bottom - self.top)
    }

    /// The frame, the y-axis labels (0 and `max_label`) and a rotated
    /// title.
    fn frame(&self, title: &str, max_label: &str) -> String {
        let (top, bottom) = (self.top, self.bottom);
        let middle = (top + bottom) / 2.0;
        format!(
            concat!(
                "<rect x=\"{l}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#888\"/>\n",
                "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\n",
                "<text x=\"{lx}\" y=\"{bottom}\" text-anchor=\"end\">0</text>\n",
                "<text transform=\"translate(20,{middle}) rotate(-90)\" text-anchor=\"middle\">{title}</text>\n",
            ),
            l = LEFT,
            w = RIGHT - LEFT,
            h = bottom - top,
            lx = LEFT - 6.0,
            ty = top + 10.0,
            top = top,
            bottom = bottom,
            middle = middle,
            max = esc(max_label),
            title = esc(title),
        )
    }

    fn no_data(&self) -> String {
        format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
            (LEFT + RIGHT) / 2.0,
            (self.top + self.bottom) / 2.0
        )
    }
}

/// The start and end of an operation, if it has times (a final log has
/// none).
fn time_span(op: &Op) -> Option<(u64, u64)> {
    match op {
        Op::Send(o) => Some((o.t_start, o.t_end)),
        Op::Poll(o) => Some((o.t_start, o.t_end)),
        Op::Seek(o) => Some((o.t_start, o.t_end)),
        Op::Commit(o) => Some((o.t_start, o.t_end)),
        Op::Serve(o) => Some((o.first_ms, o.last_ms)),
        Op::Assign(o) => Some((o.from_ms, o.to_ms.unwrap_or(o.from_ms))),
        Op::Nemesis(o) => Some((o.start_ms, o.end_ms)),
        Op::FinalLog(_) => None,
    }
}

fn header() -> String {
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" ",
            "viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n",
            "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n",
            "<text x=\"{l}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">campaign timeline</text>\n",
        ),
        w = WIDTH,
        h = HEIGHT,
        l = LEFT,
    )
}

fn no_data_svg() -> String {
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" ",
            "viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n",
            "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n",
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
            "</svg>\n",
        ),
        w = WIDTH,
        h = HEIGHT,
        x = WIDTH / 2.0,
        y = HEIGHT / 2.0,
    )
}

/// Vertical grid lines through both panels at round seconds, labelled
/// below, and the axis title.
fn time_ticks(axis: &Axis) -> String {
    let step_s = tick_step_s(axis.span_ms / 1000 / TICKS_TARGET);
    let mut out = String::new();
    let span_s = axis.span_ms / 1000;
    for tick_s in (0..=span_s).step_by(step_s as usize) {
        let x = axis.x(axis.origin_ms + tick_s * 1000);
        let _ = write!(
            out,
            concat!(
                "<line x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{b}\" stroke=\"#eee\"/>\n",
                "<text x=\"{x:.1}\" y=\"{ly}\" text-anchor=\"middle\">{s}</text>\n",
            ),
            x = x,
            t = THROUGHPUT.top,
            b = LATENCY.bottom,
            ly = LATENCY.bottom + 15.0,
            s = tick_s,
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">seconds since the first operation</text>",
        (LEFT + RIGHT) / 2.0,
        LATENCY.bottom + 33.0
    );
    out
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... seconds not below `raw_s`.
fn tick_step_s(raw_s: u64) -> u64 {
    let mut magnitude = 1u64;
    loop {
        for factor in [1, 2, 5] {
            let step = factor * magnitude;
            if step >= raw_s {
                return step;
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// One fault: a translucent band across both panels and its name above.
/// Labels alternate between two rows so that neighbouring faults' names
/// overlap less.
fn fault(axis: &Axis, nemesis: &NemesisOp, index: usize) -> String {
    let (x1, x2) = (axis.x(nemesis.start_ms), axis.x(nemesis.end_ms));
    let aim = match (&nemesis.topic, nemesis.partition) {
        (Some(topic), Some(partition)) => format!(" ({topic} p{partition})"),
        _ => String::new(),
    };
    let title = format!(
        "{} on {}{aim}: {:.1} s to {:.1} s",
        nemesis.name,
        nemesis.targets.join(", "),
        seconds(axis, nemesis.start_ms),
        seconds(axis, nemesis.end_ms),
    );
    let label: String = nemesis.name.chars().take(18).collect();
    format!(
        concat!(
            "<rect class=\"nemesis\" x=\"{x:.1}\" y=\"{t}\" width=\"{w:.1}\" height=\"{h}\" ",
            "fill=\"{c}\" fill-opacity=\"0.35\"><title>{title}</title></rect>\n",
            "<text x=\"{x:.1}\" y=\"{ly}\" fill=\"#639\">{label}</text>\n",
        ),
        x = x1,
        t = THROUGHPUT.top,
        w = (x2 - x1).max(1.0),
        h = LATENCY.bottom - THROUGHPUT.top,
        c = COLOR_FAULT,
        title = esc(&title),
        ly = if index % 2 == 0 { 32.0 } else { 44.0 },
        label = esc(&label),
    )
}

fn seconds(axis: &Axis, t_ms: u64) -> f64 {
    t_ms.saturating_sub(axis.origin_ms) as f64 / 1000.0
}

/// The top panel: acknowledged sends per second, one point per bucket,
/// zero included (a dip to zero is the point of the picture). A last
/// bucket the run covers less than half of is left out: its rate would be
/// a few milliseconds' worth of noise, a false dip or spike at the edge.
fn throughput(axis: &Axis, buckets: &Buckets) -> String {
    let rates: Vec<Option<f64>> = (buckets.acked.iter().enumerate())
        .map(|(i, n)| {
            let covered_ms = buckets.covered_ms(axis, i);
            let partial = i > 0 && covered_ms * 2 < buckets.width_ms;
            (!partial).then(|| *n as f64 * 1000.0 / covered_ms as f64)
        })
        .collect();
    let max = rates.iter().flatten().copied().fold(0.0, f64::max);
    let mut out = THROUGHPUT.frame("acked sends / s", &format!("{max:.0}"));
    if buckets.is_empty() {
        return out + &THROUGHPUT.no_data();
    }
    let points: Vec<Option<(f64, f64)>> = (rates.iter().enumerate())
        .map(|(i, rate)| {
            let x = axis.x(buckets.middle_ms(axis, i));
            rate.map(|r| (x, THROUGHPUT.y(r, max)))
        })
        .collect();
    out += &polylines(&points, COLOR_THROUGHPUT);
    out
}

/// The bottom panel: p50 and p99 latency of the sends acknowledged in
/// each bucket, on a linear scale up to the highest p99. Buckets without
/// acknowledged sends break the lines rather than bridge them.
fn latency(axis: &Axis, buckets: &Buckets) -> String {
    let percentile = |p| -> Vec<Option<u64>> {
        let values = buckets.latencies_ms.iter();
        values.map(|l| nearest_rank(l, p)).collect()
    };
    let (p50, p99) = (percentile(50), percentile(99));
    let max = p99.iter().flatten().copied().max().unwrap_or(0);
    let mut out = LATENCY.frame("send latency (ms)", &format!("{max} ms"));
    if buckets.is_empty() {
        return out + &LATENCY.no_data();
    }
    for (values, color) in [(p50, COLOR_P50), (p99, COLOR_P99)] {
        let points: Vec<Option<(f64, f64)>> = (values.iter().enumerate())
            .map(|(i, v)| {
                let y = |v: u64| LATENCY.y(v as f64, max as f64);
                v.map(|v| (axis.x(buckets.middle_ms(axis, i)), y(v)))
            })
            .collect();
        out += &polylines(&points, color);
    }
    out
}

/// One polyline per run of present points. A run of one point still
/// shows: a zero-length line with round caps draws a dot.
fn polylines(points: &[Option<(f64, f64)>], color: &str) -> String {
    let mut out = String::new();
    for run in points.split(Option::is_none).filter(|r| !r.is_empty()) {
        let coordinates: Vec<String> = match run {
            [Some((x, y))] => vec![format!("{x:.1},{y:.1}"); 2],
            _ => run
                .iter()
                .flatten()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect(),
        };
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-linecap=\"round\"/>",
            coordinates.join(" ")
        );
    }
    out
}

/// A leader change: a red line across both panels.
fn leader_change(axis: &Axis, change: &LeaderChange) -> String {
    let title = format!(
        "{} p{} e{}→b{} at {:.1} s",
        change.topic,
        change.partition,
        change.leader_epoch,
        change.broker,
        seconds(axis, change.at_ms)
    );
    format!(
        concat!(
            "<line class=\"leader-change\" x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{b}\" ",
            "stroke=\"red\" stroke-width=\"1\"><title>{title}</title></line>\n",
        ),
        x = axis.x(change.at_ms),
        t = THROUGHPUT.top,
        b = LATENCY.bottom,
        title = esc(&title),
    )
}

/// The key, in one row under the time axis.
fn legend() -> String {
    let y = HEIGHT - 20.0;
    let line = |x: f64, color: &str, label: &str| {
        format!(
            concat!(
                "<line x1=\"{x}\" y1=\"{ly}\" x2=\"{x2}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/>\n",
                "<text x=\"{tx}\" y=\"{y}\">{label}</text>\n",
            ),
            x = x,
            x2 = x + 20.0,
            ly = y - 4.0,
            c = color,
            tx = x + 25.0,
            y = y,
            label = label,
        )
    };
    let mut out = String::new();
    out += &line(LEFT, COLOR_THROUGHPUT, "acked sends / s");
    out += &line(LEFT + 150.0, COLOR_P50, "latency p50");
    out += &line(LEFT + 280.0, COLOR_P99, "latency p99");
    out += &line(LEFT + 410.0, "red", "leader change");
    let _ = writeln!(
        out,
        concat!(
            "<rect x=\"{x}\" y=\"{ry}\" width=\"20\" height=\"10\" fill=\"{c}\" fill-opacity=\"0.35\"/>",
            "<text x=\"{tx}\" y=\"{y}\">fault, struck to healed</text>",
        ),
        x = LEFT + 550.0,
        ry = y - 9.0,
        c = COLOR_FAULT,
        tx = LEFT + 575.0,
        y = y,
    );
    out
}

/// `text` made safe inside XML text and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
