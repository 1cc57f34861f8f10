//! A timeline of one checker run: who held the lock when, and when the
//! faults struck, in the manner of Jepsen's timeline plots.
//!
//! Recording is process-wide and off by default: [`Recording::start`] turns
//! it on, the [`checker`](crate::checker) then reports every hold (per
//! contender) and every fault it injects, and [`Recording::finish`] returns
//! the [`Timeline`]. Start one recording per run, one run at a time.
//! With the `charts` feature, [`Timeline::write_svg`] draws it: one row per
//! contender with a bar per hold (red where it overlaps another contender's
//! hold), faults as shaded spans (or lines, for instant faults) across all
//! rows.
//!
//! ```no_run
//! # #[cfg(feature = "charts")]
//! # async fn run(nodes: Vec<std::sync::Arc<dyn redlock_core::Node>>) -> Result<(), Box<dyn std::error::Error>> {
//! use redlock_testkit::checker::{self, Config};
//! use redlock_testkit::timeline::Recording;
//!
//! let recording = Recording::start();
//! let report = checker::run(nodes, Config::new("no-fault").acquisitions(200), |_| async {}).await?;
//! recording.finish().write_svg("timeline.svg".as_ref(), &report.name)?;
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

tokio::task_local! {
    /// The contender the current task runs for (set by the checker).
    pub(crate) static CONTENDER: usize;
}

static RECORDING: AtomicBool = AtomicBool::new(false);
static LOG: Mutex<Option<Log>> = Mutex::new(None);

struct Log {
    began: Instant,
    timeline: Timeline,
}

/// One contender's hold: `[from, to]` since the start of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSpan {
    /// The contender (a row of the timeline), from 0.
    pub contender: usize,
    /// When the lock call returned.
    pub from: Duration,
    /// When the hold ended (the work's end, or the validity if earlier).
    pub to: Duration,
}

/// A fault: `[from, to]` since the start of the recording; `from == to`
/// for an instant fault (a connection reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpan {
    /// What happened ("SIGSTOP 2 nodes"); faults with the same label share
    /// a colour and one legend entry.
    pub label: String,
    /// When it began.
    pub from: Duration,
    /// When it ended (healed, resumed, restarted).
    pub to: Duration,
}

/// The holds and faults of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Every hold, in the order they ended.
    pub holds: Vec<HoldSpan>,
    /// Every fault, in the order they ended.
    pub faults: Vec<FaultSpan>,
}

/// A recording in progress; holds and faults from the checker are collected
/// until [`Recording::finish`] (or drop, which discards them).
#[derive(Debug)]
#[must_use = "dropping the recording stops it"]
pub struct Recording {
    _private: (),
}

impl Recording {
    /// Starts recording (discarding any recording in progress); time 0 is
    /// now.
    pub fn start() -> Recording {
        *LOG.lock().unwrap_or_else(PoisonError::into_inner) = Some(Log {
            began: Instant::now(),
            timeline: Timeline::default(),
        });
        RECORDING.store(true, Ordering::SeqCst);
        Recording { _private: () }
    }

    /// Stops recording and returns what was recorded.
    pub fn finish(self) -> Timeline {
        take().unwrap_or_default()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = take();
    }
}

fn take() -> Option<Timeline> {
    RECORDING.store(false, Ordering::SeqCst);
    LOG.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .map(|log| log.timeline)
}

fn with_log(f: impl FnOnce(&mut Log)) {
    if !RECORDING.load(Ordering::Relaxed) {
        return;
    }
    if let Some(log) = LOG.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        f(log);
    }
}

/// Records a hold of the current task's contender (nothing outside a
/// contender task, or when not recording).
pub(crate) fn hold(from: Instant, to: Instant) {
    if let Ok(contender) = CONTENDER.try_with(|c| *c) {
        hold_of(contender, from, to);
    }
}

/// Records a hold of `contender` (nothing when not recording).
pub(crate) fn hold_of(contender: usize, from: Instant, to: Instant) {
    with_log(|log| {
        let (from, to) = (
            from.saturating_duration_since(log.began),
            to.saturating_duration_since(log.began),
        );
        log.timeline.holds.push(HoldSpan {
            contender,
            from,
            to,
        });
    });
}

/// Records a fault that lasted from `from` to now.
pub(crate) fn fault(label: impl Into<String>, from: Instant) {
    let to = Instant::now().max(from);
    with_log(|log| {
        log.timeline.faults.push(FaultSpan {
            label: label.into(),
            from: from.saturating_duration_since(log.began),
            to: to.saturating_duration_since(log.began),
        });
    });
}

/// Why a timeline could not be drawn.
#[cfg(feature = "charts")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimelineError {
    /// Nothing was recorded: no hold and no fault.
    #[error("the timeline is empty: was a recording started before the run?")]
    Empty,
    /// The SVG could not be drawn or written.
    #[error("drawing the timeline to {path}: {message}")]
    Draw {
        /// The file being written.
        path: String,
        /// What went wrong.
        message: String,
    },
}

#[cfg(feature = "charts")]
mod svg {
    use std::path::Path;

    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    use super::{Timeline, TimelineError};

    const HOLD: RGBColor = RGBColor(31, 119, 180);
    const OVERLAP: RGBColor = RGBColor(214, 39, 40);
    const FAULTS: [RGBColor; 4] = [
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(44, 160, 44),
        RGBColor(140, 86, 75),
    ];

    impl Timeline {
        /// The contenders seen (the highest index plus one).
        pub fn contenders(&self) -> usize {
            self.holds
                .iter()
                .map(|h| h.contender + 1)
                .max()
                .unwrap_or(0)
        }

        /// Which holds overlap a hold of another contender (by index in
        /// [`Timeline::holds`]).
        pub fn overlapping(&self) -> Vec<bool> {
            let mut order: Vec<usize> = (0..self.holds.len()).collect();
            order.sort_by_key(|&i| self.holds[i].from);
            let mut out = vec![false; self.holds.len()];
            // The hold reaching furthest so far, among those before.
            let mut reach: Option<usize> = None;
            for &i in &order {
                let h = self.holds[i];
                if let Some(r) = reach {
                    if h.from < self.holds[r].to && self.holds[r].contender != h.contender {
                        out[i] = true;
                        out[r] = true;
                    }
                }
                if reach.is_none_or(|r| h.to > self.holds[r].to) {
                    reach = Some(i);
                }
            }
            out
        }

        /// Draws the timeline as an SVG file: a row per contender, a bar per
        /// hold (red where holds overlap), faults shaded across the rows,
        /// a legend of the fault kinds, time in seconds.
        pub fn write_svg(&self, path: &Path, title: &str) -> Result<(), TimelineError> {
            let fail = |e: &dyn std::fmt::Display| TimelineError::Draw {
                path: path.display().to_string(),
                message: e.to_string(),
            };
            let rows = self.contenders();
            let end = self
                .holds
                .iter()
                .map(|h| h.to)
                .chain(self.faults.iter().map(|f| f.to))
                .max()
                .unwrap_or_default()
                .as_secs_f64();
            if rows == 0 && self.faults.is_empty() || end <= 0.0 {
                return Err(TimelineError::Empty);
            }
            let rows = rows.max(1);
            let mut kinds: Vec<&str> = Vec::new();
            for f in &self.faults {
                if !kinds.contains(&f.label.as_str()) {
                    kinds.push(&f.label);
                }
            }
            let overlaps = self.overlapping();
            let overlap_count = overlaps.iter().filter(|o| **o).count();
            let height = 130 + 30 * rows as u32;
            let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| fail(&e))?;
            let (top, plot) = root.split_vertically(58);
            top.draw(&Text::new(
                title.to_owned(),
                (12, 8),
                ("sans-serif", 22).into_font(),
            ))
            .map_err(|e| fail(&e))?;
            // Legend: holds, overlaps, then each fault kind.
            let mut legend: Vec<(String, RGBColor)> = vec![
                (format!("hold ({})", self.holds.len()), HOLD),
                (format!("overlapping hold ({overlap_count})"), OVERLAP),
            ];
            for (i, k) in kinds.iter().enumerate() {
                legend.push(((*k).to_owned(), FAULTS[i % FAULTS.len()]));
            }
            let mut x = 12;
            for (label, colour) in &legend {
                top.draw(&Rectangle::new(
                    [(x, 36), (x + 14, 48)],
                    colour.mix(0.8).filled(),
                ))
                .map_err(|e| fail(&e))?;
                top.draw(&Text::new(
                    label.clone(),
                    (x + 20, 42),
                    ("sans-serif", 16)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(|e| fail(&e))?;
                x += 40 + 7 * label.len() as i32;
            }
            let mut chart = ChartBuilder::on(&plot)
                .margin(10)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(90)
                .build_cartesian_2d(0f64..end, 0f64..rows as f64)
                .map_err(|e| fail(&e))?;
            chart
                .configure_mesh()
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 16))
                .disable_y_mesh()
                .y_labels(0)
                .x_desc("seconds since the start of the run")
                .x_label_formatter(&|v| format!("{v:.1}"))
                .draw()
                .map_err(|e| fail(&e))?;
            // Faults behind the holds.
            for f in &self.faults {
                let i = kinds.iter().position(|k| *k == f.label).unwrap_or(0);
                let colour = FAULTS[i % FAULTS.len()];
                let (a, b) = (f.from.as_secs_f64(), f.to.as_secs_f64());
                if b - a > end / 2000.0 {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(a, 0.0), (b, rows as f64)],
                            colour.mix(0.25).filled(),
                        )))
                        .map_err(|e| fail(&e))?;
                } else {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(a, 0.0), (a, rows as f64)],
                            colour.mix(0.7).stroke_width(1),
                        )))
                        .map_err(|e| fail(&e))?;
                }
            }
            // Rows top down: contender 1 on top. A hold is at least a
            // visible sliver wide.
            let min_width = end / 1500.0;
            let row_top = |c: usize| (rows - c) as f64;
            chart
                .draw_series(self.holds.iter().zip(&overlaps).map(|(h, &bad)| {
                    let a = h.from.as_secs_f64();
                    let b = h.to.as_secs_f64().max(a + min_width);
                    let y = row_top(h.contender);
                    let colour = if bad { OVERLAP } else { HOLD };
                    Rectangle::new([(a, y - 0.15), (b, y - 0.85)], colour.filled())
                }))
                .map_err(|e| fail(&e))?;
            // `backend_coord` is in the whole picture's pixels: label on `root`.
            for c in 0..rows {
                let (px, py) = chart.backend_coord(&(0.0, row_top(c) - 0.5));
                root.draw(&Text::new(
                    format!("contender {}", c + 1),
                    (px - 8, py),
                    ("sans-serif", 16)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                ))
                .map_err(|e| fail(&e))?;
            }
            root.present().map_err(|e| fail(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "charts")]
    fn span(contender: usize, from: u64, to: u64) -> HoldSpan {
        HoldSpan {
            contender,
            from: Duration::from_millis(from),
            to: Duration::from_millis(to),
        }
    }

    #[tokio::test]
    async fn records_holds_per_contender_and_faults_only_while_recording() {
        // Checker runs of other tests may record next to this one: only
        // this test's contender and fault label are looked at.
        const ME: usize = 1_000_003;
        const LABEL: &str = "timeline test fault";
        let mine = |t: &Timeline| {
            (
                t.holds
                    .iter()
                    .filter(|h| h.contender == ME)
                    .copied()
                    .collect::<Vec<_>>(),
                t.faults
                    .iter()
                    .filter(|f| f.label == LABEL)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Not recording: nothing kept.
        CONTENDER.scope(ME, async { hold(ms(0), ms(1)) }).await;
        let recording = Recording::start();
        CONTENDER.scope(ME, async { hold(ms(5), ms(7)) }).await;
        // Outside a contender task: not a hold of anyone.
        hold(ms(5), ms(7));
        fault(LABEL, Instant::now());
        let (holds, faults) = mine(&recording.finish());
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(holds[0].to - holds[0].from, Duration::from_millis(2));
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert!(faults[0].to >= faults[0].from);
        // Finished: nothing kept any more.
        CONTENDER.scope(ME, async { hold(ms(0), ms(1)) }).await;
        assert!(LOG.lock().unwrap_or_else(PoisonError::into_inner).is_none());
    }

    #[cfg(feature = "charts")]
    #[test]
    fn overlapping_holds_of_different_contenders_are_found() {
        let t = Timeline {
            holds: vec![
                span(0, 0, 10),
                span(1, 12, 20),
                span(2, 15, 18),
                span(0, 30, 40),
            ],
            faults: vec![],
        };
        assert_eq!(t.overlapping(), vec![false, true, true, false]);
        assert_eq!(t.contenders(), 3);
    }

    #[cfg(feature = "charts")]
    #[test]
    fn svg_has_a_row_per_contender_a_bar_per_hold_and_the_faults() {
        let t = Timeline {
            holds: vec![span(0, 0, 10), span(1, 12, 20), span(2, 15, 18)],
            faults: vec![
                FaultSpan {
                    label: "SIGSTOP 2 nodes".into(),
                    from: Duration::from_millis(5),
                    to: Duration::from_millis(25),
                },
                FaultSpan {
                    label: "connections reset".into(),
                    from: Duration::from_millis(30),
                    to: Duration::from_millis(30),
                },
            ],
        };
        let path = std::env::temp_dir().join(format!("timeline-{}.svg", std::process::id()));
        t.write_svg(&path, "pause-minority").expect("svg");
        let svg = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        for text in [
            "pause-minority",
            "contender 1",
            "contender 3",
            "SIGSTOP 2 nodes",
            "connections reset",
            "hold (3)",
            "overlapping hold (2)",
        ] {
            assert!(
                svg.contains(&format!("\n{text}\n</text>")),
                "{text} missing"
            );
        }
        assert_eq!(
            svg.matches(r##"fill="#D62728""##).count(),
            2 + 1,
            "red bars and swatch"
        );
    }

    #[cfg(feature = "charts")]
    #[test]
    fn an_empty_timeline_is_an_error() {
        let path = std::env::temp_dir().join("never-written.svg");
        assert!(matches!(
            Timeline::default().write_svg(&path, "x"),
            Err(TimelineError::Empty)
        ));
    }
}
