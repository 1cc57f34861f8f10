//! SVG charts of a benchmark run (`--charts DIR`): throughput per client
//! and workload as grouped bars, and lock-latency percentile curves per
//! client, one panel per workload.
//!
//! Only the `plotters` SVG backend is used: text is written as SVG `<text>`
//! and laid out from a size estimate, so no font file or system library is
//! needed to draw, and any SVG viewer renders the result.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The lock-latency quantiles recorded per run and drawn as curves.
pub const QUANTILES: [f64; 7] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999];

/// Axis labels of [`QUANTILES`].
const QUANTILE_LABELS: [&str; 7] = ["p50", "p75", "p90", "p95", "p99", "p99.5", "p99.9"];

/// One client (a bar colour, a curve) in the charts.
#[derive(Debug, Clone)]
pub struct Client {
    /// The legend's name.
    pub label: String,
    /// Index into the palette; the same client keeps its colour in every
    /// chart.
    pub colour: usize,
}

/// Throughput per client and workload: `pairs_per_s[client][workload]`,
/// `None` where that case did not run.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// The chart's title.
    pub title: String,
    /// Group names (one group of bars per workload).
    pub workloads: Vec<String>,
    /// One bar per client in each group.
    pub clients: Vec<Client>,
    /// Lock + unlock pairs per second.
    pub pairs_per_s: Vec<Vec<Option<f64>>>,
    /// Short lines printed under the legend.
    pub notes: Vec<String>,
}

/// One panel of the latency chart: a curve per client.
#[derive(Debug, Clone)]
pub struct LatencyPanel {
    /// The panel's title (the workload).
    pub title: String,
    /// `(client, lock latency in µs at each of QUANTILES)`.
    pub curves: Vec<(Client, Vec<f64>)>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),  // blue
    RGBColor(255, 127, 14),  // orange
    RGBColor(127, 127, 127), // grey
    RGBColor(140, 86, 75),   // brown
    RGBColor(214, 39, 40),   // red
    RGBColor(44, 160, 44),   // green
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing chart: {e}")
}

/// `12 345` → "12.3k", `950` → "950".
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

/// A tick of the latency axis in milliseconds: "0.2", "1", "50".
fn ms_label(v: f64) -> String {
    let text = if v >= 1.0 {
        format!("{v:.0}")
    } else if v >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Writes the grouped-bar throughput chart to `path`.
pub fn throughput_svg(path: &Path, t: &Throughput) -> Result<(), String> {
    let groups = t.workloads.len();
    let bars = t.clients.len();
    if groups == 0 || bars == 0 {
        return Err("no throughput to draw".into());
    }
    let max = t
        .pairs_per_s
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if max <= 0.0 {
        return Err("no throughput to draw".into());
    }
    let width = (180 * groups as u32).max(640) + 220;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = root.split_horizontally(width - 210);
    let mut chart = ChartBuilder::on(&plot)
        .caption(&t.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..groups as f64, 0f64..max * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("lock + unlock pairs per second")
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(err)?;
    // Each group spans [g, g + 1): bars side by side in its middle 80 %.
    let slot = 0.8 / bars as f64;
    for (c, client) in t.clients.iter().enumerate() {
        let style = colour(client.colour).filled();
        for g in 0..groups {
            let Some(v) = t
                .pairs_per_s
                .get(c)
                .and_then(|row| row.get(g))
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let x0 = g as f64 + 0.1 + slot * c as f64;
            let x1 = x0 + slot * 0.9;
            chart
                .draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x1, v)], style)))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    short(v),
                    ((x0 + x1) / 2.0, v),
                    ("sans-serif", 13)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))
                .map_err(err)?;
        }
    }
    // Group names under the axis, centred on their groups.
    for (g, name) in t.workloads.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        plot.draw(&Text::new(
            name.clone(),
            (x, y + 10),
            ("sans-serif", 17)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(err)?;
    }
    draw_legend(&legend, &t.clients, &t.notes, 60, true)?;
    root.present().map_err(err)
}

/// A legend in its own area: a swatch (a bar or a line) and the label per
/// client, one row each.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    clients: &[Client],
    notes: &[String],
    top: i32,
    bars: bool,
) -> Result<(), String> {
    for (i, c) in clients.iter().enumerate() {
        let y = top + 22 * i as i32;
        let col = colour(c.colour);
        if bars {
            area.draw(&Rectangle::new([(4, y - 6), (20, y + 6)], col.filled()))
                .map_err(err)?;
        } else {
            area.draw(&PathElement::new(
                vec![(2, y), (22, y)],
                col.stroke_width(3),
            ))
            .map_err(err)?;
        }
        area.draw(&Text::new(
            c.label.clone(),
            (28, y),
            ("sans-serif", 16)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    let below = top + 22 * clients.len() as i32 + 16;
    for (i, note) in notes.iter().enumerate() {
        area.draw(&Text::new(
            note.clone(),
            (4, below + 18 * i as i32),
            ("sans-serif", 14)
                .into_font()
                .color(&RGBColor(80, 80, 80))
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Writes the latency chart to `path`: one panel per workload, lock latency
/// (log scale) at each of [`QUANTILES`], one curve per client; the legend
/// (the clients of every panel) and `notes` on the right.
pub fn latency_svg(
    path: &Path,
    title: &str,
    panels: &[LatencyPanel],
    notes: &[String],
) -> Result<(), String> {
    let panels: Vec<&LatencyPanel> = panels.iter().filter(|p| !p.curves.is_empty()).collect();
    if panels.is_empty() {
        return Err("no latencies to draw".into());
    }
    let cols = if panels.len() > 1 { 2 } else { 1 };
    let rows = panels.len().div_ceil(cols);
    let mut legend_clients: Vec<Client> = Vec::new();
    for p in &panels {
        for (c, _) in &p.curves {
            if !legend_clients.iter().any(|l| l.label == c.label) {
                legend_clients.push(c.clone());
            }
        }
    }
    let legend_width = 330;
    let width = 460 * cols as u32 + legend_width;
    let height = 320 * rows as u32 + 40;
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let (grid, legend) = root.split_horizontally(width - legend_width);
    let cells = grid.split_evenly((rows, cols));
    for (panel, cell) in panels.iter().zip(&cells) {
        let values = panel
            .curves
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite() && *v > 0.0);
        let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi <= 0.0 {
            continue;
        }
        // Whole decades around the data, in milliseconds.
        let lo_ms = 10f64.powf((lo / 1000.0).log10().floor());
        let hi_ms = 10f64.powf((hi / 1000.0).log10().ceil()).max(lo_ms * 10.0);
        let last = (QUANTILES.len() - 1) as f64;
        let mut chart = ChartBuilder::on(cell)
            .caption(&panel.title, ("sans-serif", 19))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .build_cartesian_2d(
                -0.2f64..last + 0.2,
                (lo_ms * 0.98..hi_ms * 1.02).log_scale(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .x_labels(QUANTILES.len())
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    QUANTILE_LABELS
                        .get(i as usize)
                        .map_or_else(String::new, |s| (*s).to_owned())
                } else {
                    String::new()
                }
            })
            .y_desc("lock call, ms")
            .y_label_formatter(&|v| ms_label(*v))
            .draw()
            .map_err(err)?;
        for (client, curve) in &panel.curves {
            let col = colour(client.colour);
            let points: Vec<(f64, f64)> = curve
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite() && **v > 0.0)
                .map(|(i, v)| (i as f64, v / 1000.0))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), col.stroke_width(2)))
                .map_err(err)?;
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 3, col.filled())))
                .map_err(err)?;
        }
    }
    draw_legend(&legend, &legend_clients, notes, 40, false)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(label: &str, colour: usize) -> Client {
        Client {
            label: label.into(),
            colour,
        }
    }

    /// Whether the SVG has a `<text>` element reading exactly `text`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!("\n{text}\n</text>"))
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("redlock-bench-{}-{name}", std::process::id()))
    }

    #[test]
    fn throughput_chart_has_a_bar_and_a_label_per_case() {
        let path = temp("throughput.svg");
        let t = Throughput {
            title: "pairs/s".into(),
            workloads: vec!["uncontended".into(), "serial".into()],
            clients: vec![client("ours", 0), client("theirs", 4)],
            pairs_per_s: vec![
                vec![Some(62_695.0), Some(6_476.0)],
                vec![Some(32_177.0), None],
            ],
            notes: vec!["a note".into()],
        };
        throughput_svg(&path, &t).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "uncontended",
            "serial",
            "ours",
            "theirs",
            "63k",
            "6.5k",
            "32k",
            "a note",
        ] {
            assert!(has_text(&svg, text), "{text} missing");
        }
        // Three bars in the clients' colours, and no bar for the missing case.
        assert_eq!(svg.matches(r##"fill="#1F77B4""##).count(), 2 + 1, "{svg}");
        assert_eq!(svg.matches(r##"fill="#D62728""##).count(), 1 + 1, "{svg}");
    }

    #[test]
    fn latency_chart_draws_a_curve_per_client_and_panel() {
        let path = temp("latency.svg");
        let curve = |base: f64| QUANTILES.iter().map(|q| base / (1.0 - q)).collect();
        let panels = vec![
            LatencyPanel {
                title: "serial".into(),
                curves: vec![
                    (client("ours", 0), curve(70.0)),
                    (client("theirs", 4), curve(90.0)),
                ],
            },
            LatencyPanel {
                title: "contended".into(),
                curves: vec![(client("ours", 0), curve(2000.0))],
            },
            LatencyPanel {
                title: "empty".into(),
                curves: vec![],
            },
        ];
        latency_svg(&path, "lock latency", &panels, &[]).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        let lines = |colour: &str| {
            svg.lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(colour))
                .count()
        };
        // "ours": two panels and the legend; "theirs": one panel and the legend.
        assert_eq!(lines(r##"stroke="#1F77B4""##), 3);
        assert_eq!(lines(r##"stroke="#D62728""##), 2);
        for text in ["serial", "contended", "p50", "p99.9", "ours", "theirs"] {
            assert!(has_text(&svg, text), "{text} missing");
        }
        assert!(
            !has_text(&svg, "empty"),
            "a panel without curves is left out"
        );
    }

    #[test]
    fn nothing_to_draw_is_an_error_not_a_panic() {
        let path = temp("none.svg");
        let t = Throughput {
            title: String::new(),
            workloads: vec!["serial".into()],
            clients: vec![client("ours", 0)],
            pairs_per_s: vec![vec![None]],
            notes: vec![],
        };
        assert!(throughput_svg(&path, &t).is_err());
        assert!(latency_svg(&path, "", &[], &[]).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
