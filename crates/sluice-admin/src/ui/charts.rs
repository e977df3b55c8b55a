//! Charts drawn on the server as inline SVG from counts the store has already aggregated: the
//! browser never reads raw rows, and the page needs no script to show them.

use std::fmt::Write;

use sluice_core::clock::Micros;

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
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{base}" x2="{}" y2="{base}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>"#,
        WIDTH - 4.0
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{max}</text><text x="{}" y="{base}" text-anchor="end">0</text>"#,
        LEFT - 6.0,
        TOP + 9.0,
        LEFT - 6.0
    );
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
    svg.push_str("</svg>");
    svg
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
    fn timing_segments_share_the_width() {
        let svg = timing_bar(&vec![("send", "send", 100), ("wait", "wait", 300)]);
        assert!(svg.contains(r#"width="180.00""#), "{svg}");
        assert!(svg.contains(r#"width="540.00""#), "{svg}");
    }
}
