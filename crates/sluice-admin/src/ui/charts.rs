//! Charts drawn on the server as inline SVG from counts the store has already aggregated: the
//! browser never reads raw rows, and the page needs no script to show them.

use std::fmt::Write;

use sluice_core::clock::Micros;
use sluice_store::LatencyBin;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// The states in the order their bars stack, bottom first.
const STACK: [&str; 5] = ["success", "pending", "failed", "timeout", "error"];

/// A stacked bar chart of requests per time bin and state, from `from` to `to`, `bin_us` wide;
/// `points` are `(time, state, count)` in any order (counts in the same bin add up). `label`
/// names the chart for screen readers.
pub fn bars(
    points: &[(Micros, String, i64)],
    from: Micros,
    to: Micros,
    bin_us: i64,
    label: &str,
) -> String {
    let bins = usize::try_from(((to - from) / bin_us).max(1)).unwrap_or(1);
    let mut counts = vec![[0i64; STACK.len()]; bins];
    for (t, state, n) in points {
        let Some(k) = STACK.iter().position(|s| s == state) else {
            continue;
        };
        if *t >= from && *t < to {
            let i = usize::try_from((t - from) / bin_us)
                .unwrap_or(0)
                .min(bins - 1);
            counts[i][k] += n;
        }
    }
    let max = counts
        .iter()
        .map(|c| c.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / bins as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let base = TOP + plot_h;
    axes(&mut svg, &max.to_string(), from, to);
    for (i, bin) in counts.iter().enumerate() {
        let x = LEFT + i as f64 * slot + slot * 0.1;
        let at = super::format::when(from + i as i64 * bin_us);
        let mut top = base;
        for (k, n) in bin.iter().enumerate().filter(|(_, n)| **n > 0) {
            let h = (*n as f64 / max as f64 * plot_h).max(1.0);
            top -= h;
            let _ = write!(
                svg,
                r#"<rect class="bar-{}" x="{x:.1}" y="{top:.1}" width="{:.1}" height="{h:.1}"><title>{at}: {n} {}</title></rect>"#,
                STACK[k],
                (slot * 0.8).max(0.5),
                STACK[k]
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The percentiles a latency chart draws, each a line of its class.
const PERCENTILES: [&str; 3] = ["p50", "p95", "p99"];

/// A line chart of latency percentiles (p50, p95, p99) per time bin, from `from` to `to`,
/// `bin_us` wide; a line breaks where a bin had no requests. `label` names the chart for
/// screen readers.
pub fn latency_lines(
    bins: &[LatencyBin],
    from: Micros,
    to: Micros,
    bin_us: i64,
    label: &str,
) -> String {
    let slots = ((to - from) / bin_us).max(1);
    let max = nice_ceiling(bins.iter().map(|b| b.p99).max().unwrap_or(0).max(1));
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let base = TOP + plot_h;
    let x = |start: Micros| {
        LEFT + ((start - from) as f64 / bin_us as f64 + 0.5) * plot_w / slots as f64
    };
    let y = |us: i64| base - us as f64 / max as f64 * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#
    );
    axes(&mut svg, &axis_duration(max), from, to);
    let shown: Vec<&LatencyBin> = bins
        .iter()
        .filter(|b| b.start >= from && b.start < to)
        .collect();
    for (k, class) in PERCENTILES.iter().enumerate() {
        let value = |b: &LatencyBin| [b.p50, b.p95, b.p99][k];
        // One polyline per run of consecutive bins.
        let mut run: Vec<String> = Vec::new();
        let mut last = None;
        for b in &shown {
            if last.is_some_and(|l| b.start - l > bin_us) {
                line(&mut svg, class, &run);
                run.clear();
            }
            run.push(format!("{:.1},{:.1}", x(b.start), y(value(b))));
            last = Some(b.start);
        }
        line(&mut svg, class, &run);
    }
    for b in &shown {
        let _ = write!(
            svg,
            r#"<circle class="dot-p99" cx="{:.1}" cy="{:.1}" r="2.5"><title>{}: p50 {}, p95 {}, p99 {}</title></circle>"#,
            x(b.start),
            y(b.p99),
            super::format::when(b.start),
            super::format::duration(b.p50),
            super::format::duration(b.p95),
            super::format::duration(b.p99)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest of 1, 2, 3 and 5 times a power of ten that is at least `n`: a round top for
/// an axis.
fn nice_ceiling(n: i64) -> i64 {
    let mut power = 1i64;
    loop {
        for step in [1i64, 2, 3, 5] {
            if step.saturating_mul(power) >= n {
                return step.saturating_mul(power);
            }
        }
        power = power.saturating_mul(10);
    }
}

/// A duration short enough for the y axis's margin (`850µs`, `812ms`, `1.2s`).
fn axis_duration(us: i64) -> String {
    match us {
        i64::MIN..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{}ms", us / 1_000),
        _ => format!("{}s", us as f64 / 1e6),
    }
}

/// A polyline through `points` (`x,y`), or a dot for a lone point.
fn line(svg: &mut String, class: &str, points: &[String]) {
    match points {
        [] => {}
        [one] => {
            let (x, y) = one.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                svg,
                r#"<circle class="dot-{class}" cx="{x}" cy="{y}" r="2"/>"#
            );
        }
        _ => {
            let _ = write!(
                svg,
                r#"<polyline class="line-{class}" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
}

/// The axes, the top and bottom labels of the y axis, and three times along the x axis.
fn axes(svg: &mut String, top_label: &str, from: Micros, to: Micros) {
    let plot_w = WIDTH - LEFT - 4.0;
    let base = TOP + HEIGHT - BOTTOM - TOP;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{base}" x2="{}" y2="{base}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>"#,
        WIDTH - 4.0
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{top_label}</text><text x="{}" y="{base}" text-anchor="end">0</text>"#,
        LEFT - 6.0,
        TOP + 9.0,
        LEFT - 6.0
    );
    for (frac, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let t = from + ((to - from) as f64 * frac) as i64;
        let time = super::format::when(t);
        let hm = time.get(11..16).unwrap_or("");
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="{anchor}">{hm}</text>"#,
            LEFT + plot_w * frac,
            HEIGHT - 6.0
        );
    }
}

/// Segments of one exchange's timing bar, in order: `(class, name, µs)`.
pub type Segments = Vec<(&'static str, &'static str, i64)>;

/// A horizontal bar of an exchange's phases, each as wide as its share of the whole.
pub fn timing_bar(segments: &Segments) -> String {
    let total: i64 = segments.iter().map(|s| s.2.max(0)).sum::<i64>().max(1);
    let (w, h) = (720.0, 26.0);
    let mut svg = format!(
        r#"<svg viewBox="0 0 {w} {h}" role="img" aria-label="timing of the exchange" xmlns="http://www.w3.org/2000/svg">"#
    );
    let mut x = 0.0;
    for (class, name, us) in segments {
        let width = us.max(&0).to_owned() as f64 / total as f64 * w;
        if width <= 0.0 {
            continue;
        }
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="{x:.2}" y="0" width="{width:.2}" height="{h}"><title>{name}: {}</title></rect>"#,
            super::format::duration(*us)
        );
        x += width;
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_each_state_in_its_bin_and_scale_to_the_tallest() {
        let minute = 60_000_000;
        let p = |t: i64, s: &str, n: i64| (t, s.to_string(), n);
        let points = [
            p(0, "success", 2),
            p(minute, "success", 4),
            p(minute + 1, "success", 4),
            p(minute, "failed", 2),
        ];
        let svg = bars(&points, 0, 3 * minute, minute, "x");
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains(": 8 success</title>"), "{svg}");
        assert!(svg.contains(r#"class="bar-failed""#), "{svg}");
        assert!(
            svg.contains(">10</text>"),
            "the axis names the tallest bin: {svg}"
        );
    }

    #[test]
    fn latency_lines_break_where_a_bin_had_no_requests() {
        let minute = 60_000_000;
        let bin = |i: i64, p50: i64| LatencyBin {
            start: i * minute,
            p50,
            p95: p50 * 2,
            p99: p50 * 4,
        };
        // Bins 0 and 1, then nothing in 2, then 3 alone.
        let svg = latency_lines(
            &[bin(0, 10), bin(1, 20), bin(3, 30)],
            0,
            4 * minute,
            minute,
            "x",
        );
        assert_eq!(
            svg.matches("<polyline").count(),
            3,
            "one run of two bins per percentile: {svg}"
        );
        assert_eq!(
            svg.matches(r#"class="dot-p50""#).count(),
            1,
            "the lone bin is a dot: {svg}"
        );
        assert!(
            svg.contains(">200µs</text>"),
            "the axis rounds the highest p99 up: {svg}"
        );
        assert!(
            svg.contains("p50 30 µs, p95 60 µs, p99 120 µs</title>"),
            "{svg}"
        );
    }

    #[test]
    fn timing_segments_share_the_width() {
        let svg = timing_bar(&vec![("send", "send", 100), ("wait", "wait", 300)]);
        assert!(svg.contains(r#"width="180.00""#), "{svg}");
        assert!(svg.contains(r#"width="540.00""#), "{svg}");
    }
}
