//! The benchmark's two plots, written as SVG by hand (no plotting crate): the requests each
//! phase completed per 100 ms over the run (`throughput.svg`), and each phase's latency by
//! percentile on a log scale (`latency.svg`). Each function also returns the series it drew, as
//! JSON for `latest.json`.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde_json::{Value, json};

/// The width of a time bucket of the throughput series.
pub const BUCKET_MS: u64 = 100;

/// One colour per phase, the same in both plots; the sale's 202s get their own.
pub const SALE: &str = "#1f77b4";
pub const ACCEPTED: &str = "#d62728";
pub const AFTER: &str = "#ff7f0e";
pub const POLLING: &str = "#2ca02c";

/// Requests a phase completed per bucket of [`BUCKET_MS`] since it began, by outcome.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Series {
    by_outcome: BTreeMap<String, Vec<u64>>,
}

impl Series {
    /// Counts one request that completed `since_start` into its phase with `outcome`.
    pub fn record(&mut self, since_start: Duration, outcome: &str) {
        let bucket = (since_start.as_millis() / u128::from(BUCKET_MS)) as usize;
        let counts = match self.by_outcome.get_mut(outcome) {
            Some(c) => c,
            None => self.by_outcome.entry(outcome.to_owned()).or_default(),
        };
        if counts.len() <= bucket {
            counts.resize(bucket + 1, 0);
        }
        counts[bucket] += 1;
    }

    pub fn merge(&mut self, other: Series) {
        for (outcome, counts) in other.by_outcome {
            let mine = self.by_outcome.entry(outcome).or_default();
            if mine.len() < counts.len() {
                mine.resize(counts.len(), 0);
            }
            for (m, c) in mine.iter_mut().zip(counts) {
                *m += c;
            }
        }
    }

    fn buckets(&self) -> usize {
        self.by_outcome.values().map(Vec::len).max().unwrap_or(0)
    }

    /// Every outcome's counts summed, bucket by bucket.
    fn total(&self) -> Vec<u64> {
        let mut total = vec![0; self.buckets()];
        for counts in self.by_outcome.values() {
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        total
    }

    fn outcome(&self, name: &str) -> Vec<u64> {
        let mut counts = self.by_outcome.get(name).cloned().unwrap_or_default();
        counts.resize(self.buckets(), 0);
        counts
    }
}

/// One phase on the run's timeline.
pub struct TimelinePhase<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    /// When it began, in seconds since the sale began, and how long it ran.
    pub start_s: f64,
    pub secs: f64,
    pub series: &'a Series,
    /// An outcome also drawn on its own, dashed: (outcome, label, colour).
    pub highlight: Option<(&'a str, &'a str, &'a str)>,
}

/// Requests per second in each bucket: the last one is as long as the phase ran into it.
fn rates(counts: &[u64], secs: f64) -> Vec<f64> {
    let width = BUCKET_MS as f64 / 1000.0;
    counts.iter().enumerate().map(|(i, c)| *c as f64 / (secs - i as f64 * width).clamp(0.01, width)).collect()
}

/// A step line over the buckets, from 0 at the phase's start back to 0 at its end.
fn steps(start_s: f64, secs: f64, rates: &[f64]) -> Vec<(f64, f64)> {
    let width = BUCKET_MS as f64 / 1000.0;
    let mut points = vec![(start_s, 0.0)];
    for (i, r) in rates.iter().enumerate() {
        let (x0, x1) = (i as f64 * width, ((i + 1) as f64 * width).min(secs));
        points.push((start_s + x0, *r));
        points.push((start_s + x1.max(x0), *r));
    }
    points.push((start_s + secs, 0.0));
    points
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// `throughput.svg`: requests completed per second (100 ms buckets) against seconds since the
/// sale began, one filled step line per phase (the gaps between them are the drain and the
/// bench's own checks), plus any highlighted outcome dashed. Returns the SVG and its series.
pub fn throughput(phases: &[TimelinePhase], subtitle: &str) -> (String, Value) {
    let mut lines = Vec::new();
    let mut data = Vec::new();
    for p in phases {
        let total = p.series.total();
        let per_sec = rates(&total, p.secs);
        let requests: u64 = total.iter().sum();
        let peak = per_sec.iter().copied().fold(0.0, f64::max);
        lines.push(Line {
            label: p.label.to_owned(),
            note: format!(
                "{} requests in {:.1} s: mean {}/s, peak {}/s",
                thousands(requests as f64),
                p.secs,
                thousands(requests as f64 / p.secs),
                thousands(peak)
            ),
            colour: p.colour.to_owned(),
            dash: None,
            fill: true,
            points: steps(p.start_s, p.secs, &per_sec),
        });
        let mut highlighted = json!(null);
        if let Some((outcome, label, colour)) = p.highlight {
            let counts = p.series.outcome(outcome);
            let per_sec = rates(&counts, p.secs);
            let n: u64 = counts.iter().sum();
            let last = counts.iter().rposition(|c| *c > 0).map_or(0.0, |i| (i + 1) as f64 * BUCKET_MS as f64 / 1000.0);
            lines.push(Line {
                label: label.to_owned(),
                note: format!("{} requests, all within its first {last:.1} s", thousands(n as f64)),
                colour: colour.to_owned(),
                dash: Some("6 3"),
                fill: false,
                points: steps(p.start_s, p.secs, &per_sec),
            });
            highlighted =
                json!({"outcome": outcome, "per_sec": per_sec.iter().map(|r| round(*r, 1)).collect::<Vec<_>>()});
        }
        data.push(json!({
            "phase": p.label, "start_s": round(p.start_s, 3), "secs": round(p.secs, 3), "requests": requests,
            "per_sec": per_sec.iter().map(|r| round(*r, 1)).collect::<Vec<_>>(),
            "counts_by_outcome": p.series.by_outcome, "highlighted": highlighted,
        }));
    }
    let x_hi = phases.iter().map(|p| p.start_s + p.secs).fold(0.0, f64::max);
    let y_hi = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let svg = chart(
        "Throughput over time",
        subtitle,
        Axis::linear("time since the sale began (s)", 0.0, x_hi),
        Axis::linear("requests completed per second (req/s, 100 ms buckets)", 0.0, y_hi * 1.05),
        &lines,
        "Between the phases the bench waits for the drain (every order row) and reads its counters.",
    );
    (svg, json!({"bucket_ms": BUCKET_MS, "x": "seconds since the sale began", "phases": data}))
}

/// One latency series: its label, colour, dash and latencies in µs, sorted.
pub struct LatencySeries<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    pub dash: Option<&'static str>,
    pub sorted_us: &'a [u32],
}

/// The latency at percentile `q` (0..=1) of sorted µs, in ms (nearest rank, as the bench's
/// percentiles).
fn at(sorted_us: &[u32], q: f64) -> f64 {
    let i = ((sorted_us.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted_us[i.min(sorted_us.len() - 1)]) / 1000.0
}

/// `latency.svg`: latency (ms, log scale) against percentile, on the axis latency tools use
/// (0, 90, 99, 99.9 % equally spaced), so the tail is as wide as the body. Each series runs to
/// its maximum, drawn at 1 - 1/n. Returns the SVG and the points it drew (percentile, ms).
pub fn latency(series: &[LatencySeries], subtitle: &str) -> (String, Value) {
    let mut lines = Vec::new();
    let mut data = Vec::new();
    for s in series.iter().filter(|s| !s.sorted_us.is_empty()) {
        let v = s.sorted_us;
        let n = v.len() as f64;
        // Positions on the axis: x = -log10(1 - q), 50 points a decade, then the maximum.
        let end = n.max(2.0).log10();
        let mut points: Vec<(f64, f64)> = (0..)
            .map(|k| f64::from(k) / 50.0)
            .take_while(|x| *x < end)
            .map(|x| {
                let q = 1.0 - 10f64.powf(-x);
                (q, at(v, q))
            })
            .collect();
        points.push((1.0 - 1.0 / n.max(2.0), f64::from(v[v.len() - 1]) / 1000.0));
        let note = format!(
            "{} requests: p50 {}, p99 {}, max {} ms",
            thousands(n),
            ms(at(v, 0.5)),
            ms(at(v, 0.99)),
            ms(f64::from(v[v.len() - 1]) / 1000.0)
        );
        data.push(json!({
            "series": s.label, "requests": v.len(),
            "points_percentile_ms": points.iter().map(|(q, l)| [round(q * 100.0, 4), round(*l, 3)]).collect::<Vec<_>>(),
        }));
        lines.push(Line {
            label: s.label.to_owned(),
            note,
            colour: s.colour.to_owned(),
            dash: s.dash,
            fill: false,
            points,
        });
    }
    let all = || lines.iter().flat_map(|l| l.points.iter());
    // The axis starts at the decade below the lowest 1st percentile, so the body of the curves
    // fills the height; the fastest 1 % may run off its foot.
    let lo = series
        .iter()
        .filter(|s| !s.sorted_us.is_empty())
        .map(|s| at(s.sorted_us, 0.01))
        .fold(f64::INFINITY, f64::min)
        .max(0.001);
    let hi = all().map(|p| p.1).fold(0.0, f64::max).max(lo * 10.0);
    let q_hi = all().map(|p| p.0).fold(0.9, f64::max);
    let svg = chart(
        "Latency by percentile",
        subtitle,
        Axis {
            title: "percentile (each request's latency, sorted)".into(),
            scale: Scale::Percentile,
            lo: 0.0,
            hi: (Scale::Percentile.pos(q_hi) - 1e-6).ceil(),
        },
        Axis {
            title: "latency (ms, log scale)".into(),
            scale: Scale::Log,
            lo: (Scale::Log.pos(lo) + 1e-6).floor(),
            hi: (Scale::Log.pos(hi) - 1e-6).ceil(),
        },
        &lines,
        "Each request's latency as the client saw it; each line ends at its slowest request, at 1 - 1/n.",
    );
    (svg, json!({"x": "percentile", "y": "latency ms", "series": data}))
}

// ---------------- drawing ----------------

#[derive(Clone, Copy)]
enum Scale {
    Linear,
    Log,
    /// q in 0..1 at -log10(1 - q): 0 %, 90 %, 99 %, 99.9 % one unit apart.
    Percentile,
}

impl Scale {
    fn pos(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log => v.max(1e-9).log10(),
            Scale::Percentile => -(1.0 - v.clamp(0.0, 1.0 - 1e-12)).log10(),
        }
    }
}

/// An axis: its title, scale and range (in positions, i.e. after the scale).
struct Axis {
    title: String,
    scale: Scale,
    lo: f64,
    hi: f64,
}

impl Axis {
    fn linear(title: &str, lo: f64, hi: f64) -> Axis {
        let step = nice_step(hi - lo);
        let hi = if hi > lo { (hi / step).ceil() * step } else { lo + 1.0 };
        Axis { title: title.into(), scale: Scale::Linear, lo, hi }
    }

    /// (position, label): every tick; unlabelled ones are minor grid lines.
    fn ticks(&self) -> Vec<(f64, Option<String>)> {
        match self.scale {
            Scale::Linear => {
                let step = nice_step(self.hi - self.lo);
                let first = (self.lo / step).ceil() as i64;
                let last = (self.hi / step + 1e-9).floor() as i64;
                (first..=last)
                    .map(|i| {
                        let v = i as f64 * step;
                        (v, Some(if step >= 1.0 { thousands(v) } else { format!("{}", round(v, 3)) }))
                    })
                    .collect()
            }
            Scale::Log => {
                let decades = (self.hi - self.lo).round() as i32;
                let mut ticks = Vec::new();
                for d in self.lo as i32..=self.hi as i32 {
                    for m in [1.0, 2.0, 5.0] {
                        let v = m * 10f64.powi(d);
                        let p = v.log10();
                        if p <= self.hi + 1e-9 {
                            let labelled = m == 1.0 || decades <= 3;
                            ticks.push((p, labelled.then(|| ms(v))));
                        }
                    }
                }
                ticks
            }
            Scale::Percentile => {
                let mut ticks = vec![(0.0, Some("0%".to_owned())), (Scale::Percentile.pos(0.5), Some("50%".into()))];
                for k in 1..=self.hi as i32 {
                    let pct = 100.0 * (1.0 - 10f64.powi(-k));
                    let decimals = (k - 2).max(0) as usize;
                    ticks.push((f64::from(k), Some(format!("{pct:.decimals$}%"))));
                }
                ticks
            }
        }
    }
}

/// A line to draw, with its legend entry (a label and a grey note under it).
struct Line {
    label: String,
    note: String,
    colour: String,
    dash: Option<&'static str>,
    /// Filled down to the x axis, lightly.
    fill: bool,
    /// In data values (before the axes' scales).
    points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 1090.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 720.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 450.0;

fn chart(title: &str, subtitle: &str, x: Axis, y: Axis, lines: &[Line], footnote: &str) -> String {
    let px = |v: f64| LEFT + (x.scale.pos(v) - x.lo) / (x.hi - x.lo) * (RIGHT - LEFT);
    let py = |v: f64| BOTTOM - (y.scale.pos(v) - y.lo) / (y.hi - y.lo) * (BOTTOM - TOP);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="28" font-size="17" font-weight="bold">{}</text>"#, esc(title));
    let _ = writeln!(s, r##"<text x="{LEFT}" y="48" fill="#555">{}</text>"##, esc(subtitle));

    // Grid and tick labels.
    for (p, label) in x.ticks() {
        let gx = LEFT + (p - x.lo) / (x.hi - x.lo) * (RIGHT - LEFT);
        let (colour, width) = if label.is_some() { ("#ddd", 1.0) } else { ("#eee", 0.6) };
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{BOTTOM}" stroke="{colour}" stroke-width="{width}"/>"#
        );
        if let Some(l) = label {
            let _ = writeln!(s, r#"<text x="{gx:.1}" y="{}" text-anchor="middle">{}</text>"#, BOTTOM + 18.0, esc(&l));
        }
    }
    for (p, label) in y.ticks() {
        let gy = BOTTOM - (p - y.lo) / (y.hi - y.lo) * (BOTTOM - TOP);
        let (colour, width) = if label.is_some() { ("#ddd", 1.0) } else { ("#eee", 0.6) };
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{gy:.1}" x2="{RIGHT}" y2="{gy:.1}" stroke="{colour}" stroke-width="{width}"/>"#
        );
        if let Some(l) = label {
            let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 8.0, gy + 4.0, esc(&l));
        }
    }
    // Axes and their titles.
    let _ =
        writeln!(s, r##"<path d="M{LEFT},{TOP} V{BOTTOM} H{RIGHT}" fill="none" stroke="#333" stroke-width="1.2"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 42.0,
        esc(&x.title)
    );
    let (ty, tx) = ((TOP + BOTTOM) / 2.0, 28.0);
    let _ = writeln!(
        s,
        r#"<text x="{tx}" y="{ty:.1}" text-anchor="middle" font-size="13" transform="rotate(-90 {tx} {ty:.1})">{}</text>"#,
        esc(&y.title)
    );

    // The lines, clipped to the plot area.
    let _ = writeln!(
        s,
        r#"<clipPath id="plot"><rect x="{LEFT}" y="{}" width="{}" height="{}"/></clipPath>"#,
        TOP - 2.0,
        RIGHT - LEFT + 2.0,
        BOTTOM - TOP + 2.0
    );
    let _ = writeln!(s, r#"<g clip-path="url(#plot)" fill="none" stroke-linejoin="round">"#);
    for l in lines {
        let pts: Vec<String> = l.points.iter().map(|(vx, vy)| format!("{:.1},{:.1}", px(*vx), py(*vy))).collect();
        let pts = pts.join(" ");
        if l.fill {
            let _ = writeln!(s, r#"<polygon points="{pts}" fill="{}" fill-opacity="0.12" stroke="none"/>"#, l.colour);
        }
        let dash = l.dash.map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
        let _ = writeln!(s, r#"<polyline points="{pts}" stroke="{}" stroke-width="1.8"{dash}/>"#, l.colour);
    }
    let _ = writeln!(s, "</g>");

    // The legend, right of the plot: a sample of each line, its label, a note under it.
    let lx = RIGHT + 20.0;
    for (i, l) in lines.iter().enumerate() {
        let ly = TOP + 8.0 + i as f64 * 40.0;
        let dash = l.dash.map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2.5"{dash}/>"#,
            lx + 26.0,
            l.colour
        );
        let _ = writeln!(s, r#"<text x="{}" y="{}" font-size="13">{}</text>"#, lx + 34.0, ly + 4.0, esc(&l.label));
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="11" fill="#666">{}</text>"##,
            lx + 34.0,
            ly + 19.0,
            esc(&l.note)
        );
    }
    let _ =
        writeln!(s, r##"<text x="{LEFT}" y="{}" font-size="11" fill="#666">{}</text>"##, HEIGHT - 12.0, esc(footnote));
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten: about six steps over `range`.
fn nice_step(range: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    mag * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// 12345.6 as "12,346".
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds with the digits that matter: 0.05, 1.2, 15.7, 135.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        thousands(v)
    } else if v >= 10.0 {
        format!("{}", round(v, 1))
    } else if v >= 1.0 {
        format!("{}", round(v, 2))
    } else {
        format!("{}", round(v, 3))
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_buckets_by_time_and_outcome_and_merges() {
        let mut a = Series::default();
        a.record(Duration::from_millis(50), "200");
        a.record(Duration::from_millis(250), "200");
        let mut b = Series::default();
        b.record(Duration::from_millis(120), "409 sold_out");
        b.record(Duration::from_millis(60), "200");
        a.merge(b);
        assert_eq!(a.total(), vec![2, 1, 1]);
        assert_eq!(a.outcome("200"), vec![2, 0, 1]);
        assert_eq!(a.outcome("409 sold_out"), vec![0, 1, 0]);
    }

    #[test]
    fn the_last_bucket_counts_only_as_long_as_the_phase_ran() {
        let r = rates(&[10, 5], 0.15);
        assert!(r.len() == 2 && r.iter().all(|v| (v - 100.0).abs() < 1e-6), "{r:?}");
    }

    #[test]
    fn plots_are_whole_svg_documents_with_their_labels() {
        let mut series = Series::default();
        for i in 0..1000 {
            series.record(Duration::from_millis(i), if i < 100 { "accepted" } else { "409 sold_out" });
        }
        let phase = TimelinePhase {
            label: "the sale",
            colour: SALE,
            start_s: 0.0,
            secs: 1.0,
            series: &series,
            highlight: Some(("accepted", "202 <accepted> & more", ACCEPTED)),
        };
        let (svg, data) = throughput(&[phase], "test run");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("202 &lt;accepted&gt; &amp; more"));
        assert!(svg.contains("requests completed per second"));
        assert_eq!(data["phases"][0]["requests"], 1000);

        let us: Vec<u32> = (1..=10_000).collect();
        let (svg, data) =
            latency(&[LatencySeries { label: "buy", colour: SALE, dash: None, sorted_us: &us }], "test run");
        assert!(svg.contains(">99.9%<") && svg.contains("latency (ms, log scale)"));
        let points = data["series"][0]["points_percentile_ms"].as_array().unwrap();
        assert_eq!(points.last().unwrap()[1], 10.0);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(135.2), "135");
        assert_eq!(ms(15.74), "15.7");
        assert_eq!(nice_step(14.0), 5.0);
    }
}
