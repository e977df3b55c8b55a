//! PNG charts of a run: throughput and latency over time, and for saturation against concurrency.
//!
//! Text is drawn with a TrueType font registered at runtime (DejaVu Sans from Debian's
//! `fonts-dejavu-core`, or the file named by `SLUICE_BENCH_FONT`); nothing is embedded.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::{anyhow, Context as _};
use plotters::{
    coord::ranged1d::{AsRangedCoord, ValueFormatter},
    prelude::*,
    style::register_font,
};

use super::report::LoadReport;

/// Environment variable naming a TTF to use instead of the default locations.
pub const FONT_ENV: &str = "SLUICE_BENCH_FONT";
/// Where the font is looked for when `SLUICE_BENCH_FONT` is unset.
const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];
/// Family name the font is registered under.
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 560);

/// One line of a chart.
struct Line {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Writes the run's charts into `dir` (created if needed) and returns their paths.
pub fn write_charts(report: &LoadReport, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    ensure_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = report.scenario.name();
    let seconds = report.timeline.last().map_or(1.0, |w| w.start_s + 1.0);
    let over_time = |pick: fn(&super::report::WindowReport) -> f64| {
        report
            .timeline
            .iter()
            .map(|w| (w.start_s, pick(w)))
            .collect::<Vec<_>>()
    };
    let mut written = Vec::new();

    let path = dir.join(format!("{name}-throughput.png"));
    draw(
        &path,
        &format!("{name}: throughput over time ({} VUs)", report.concurrency),
        ("seconds", 0.0..seconds),
        "requests / s",
        &[Line {
            label: "throughput",
            color: BLUE,
            points: over_time(|w| w.throughput_rps),
        }],
    )?;
    written.push(path);

    let path = dir.join(format!("{name}-latency.png"));
    draw(
        &path,
        &format!("{name}: latency over time ({} VUs)", report.concurrency),
        ("seconds", 0.0..seconds),
        "latency (ms)",
        &[
            Line {
                label: "p50",
                color: BLUE,
                points: over_time(|w| w.p50_us as f64 / 1000.0),
            },
            Line {
                label: "p99",
                color: RED,
                points: over_time(|w| w.p99_us as f64 / 1000.0),
            },
        ],
    )?;
    written.push(path);

    if !report.steps.is_empty() {
        let max = report
            .steps
            .iter()
            .map(|s| s.concurrency)
            .max()
            .unwrap_or(1) as f64;
        let levels: Vec<f64> = report.steps.iter().map(|s| s.concurrency as f64).collect();
        let x_range = || {
            (0.8..max * 1.25)
                .log_scale()
                .with_key_points(levels.clone())
        };
        let per_step = |pick: fn(&super::report::StepReport) -> f64| {
            report
                .steps
                .iter()
                .map(|s| (s.concurrency as f64, pick(s)))
                .collect::<Vec<_>>()
        };
        let path = dir.join(format!("{name}-throughput-vs-concurrency.png"));
        draw(
            &path,
            &format!("{name}: throughput against concurrency"),
            ("virtual users", x_range()),
            "requests / s",
            &[Line {
                label: "throughput",
                color: BLUE,
                points: per_step(|s| s.throughput_rps),
            }],
        )?;
        written.push(path);

        let path = dir.join(format!("{name}-latency-vs-concurrency.png"));
        draw(
            &path,
            &format!("{name}: latency against concurrency"),
            ("virtual users", x_range()),
            "latency (ms)",
            &[
                Line {
                    label: "p50",
                    color: BLUE,
                    points: per_step(|s| s.latency.p50_us as f64 / 1000.0),
                },
                Line {
                    label: "p99",
                    color: RED,
                    points: per_step(|s| s.latency.p99_us as f64 / 1000.0),
                },
            ],
        )?;
        written.push(path);
    }
    Ok(written)
}

fn draw<X>(
    path: &Path,
    title: &str,
    x: (&str, X),
    y_desc: &str,
    lines: &[Line],
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let y_max = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.3; // headroom for the legend
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x.1, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x.0)
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| match y_max {
            m if m >= 100.0 => format!("{v:.0}"),
            m if m >= 1.0 => format!("{v:.1}"),
            _ => format!("{v:.3}"),
        })
        .light_line_style(BLACK.mix(0.04))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(
                LineSeries::new(line.points.iter().copied(), color.stroke_width(2)).point_size(3),
            )?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Registers the TTF once per process; fails with a clear message when it cannot be found.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let candidates: Vec<PathBuf> = match std::env::var_os(FONT_ENV) {
                Some(path) => vec![path.into()],
                None => FONT_PATHS.iter().map(PathBuf::from).collect(),
            };
            let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                format!(
                    "--charts needs a TrueType font: install it with `apt-get install fonts-dejavu-core` \
                     or point {FONT_ENV} at a .ttf file (looked for {candidates:?})"
                )
            })?;
            let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            // plotters keeps fonts for the whole process and wants a 'static slice.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
        })
        .clone()
        .map_err(|message| anyhow!(message))
}
