//! The run over time, as `--chart` draws it next to the distribution:
//! throughput and corrected p99 per second, one panel each on a shared
//! time axis, with every step (or the end of the warm-up) marked by a
//! vertical line and its label. A stall is a dip to zero in the top panel
//! and a spike in the bottom one; a knee is where the achieved line leaves
//! its target's dashes and p99 climbs, under the first step marked as not
//! holding. Hand-written SVG like the distribution, for the same reasons
//! (see the parent module), reusing its y scale and escaping.

use std::fmt::Write as _;

use super::{escape, one_two_five_at_least, open_svg, rounded, YScale};
use crate::thousands;

// As wide as the latency chart, with its side margins; taller, for two
// panels.
use super::{MARGIN_LEFT_PX as LEFT_PX, MARGIN_RIGHT_PX as RIGHT_PX, WIDTH_PX};
const HEIGHT_PX: f64 = 680.0;
/// Top of the throughput panel, and its height.
const THROUGHPUT_TOP_PX: f64 = 130.0;
const PANEL_HEIGHT_PX: f64 = 210.0;
/// Top of the latency panel: below the throughput panel and its gap.
const LATENCY_TOP_PX: f64 = THROUGHPUT_TOP_PX + PANEL_HEIGHT_PX + 60.0;
/// Most labelled ticks on the time axis.
const MAX_TIME_TICKS: f64 = 12.0;

const THROUGHPUT_COLOUR: &str = "#1f6fb2";
const LATENCY_COLOUR: &str = "#b25f1f";
const HELD_COLOUR: &str = "#2a8a2a";
const FAILED_COLOUR: &str = "#c0392b";
const MARK_COLOUR: &str = "#777";

/// One second of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Second {
    /// Its start, in seconds from the run's start.
    pub at_s: f64,
    /// Calls that ended in it, failed ones included (per second: a
    /// partial last second is scaled to a whole one).
    pub calls: u64,
    pub errors: u64,
    /// p99 of the calls that succeeded in it, from when each was due; 0
    /// when none did.
    pub p99_us: u64,
}

/// A moment the chart marks: a step's start, or the end of the warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// In seconds from the run's start.
    pub at_s: f64,
    pub label: String,
    /// The step's target rate, drawn dashed until the next mark.
    pub target_rate: Option<f64>,
    /// Whether the step held the SLO: green, red, or grey when unjudged.
    pub held: Option<bool>,
}

/// The timeline's `<svg>` element, ending in a newline; `subtitle` may
/// hold up to three lines.
pub fn svg_element(title: &str, subtitle: &str, seconds: &[Second], marks: &[Mark]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    open_svg(&mut out, WIDTH_PX, HEIGHT_PX, title);
    let _ = writeln!(
        out,
        "<text x=\"{LEFT_PX}\" y=\"28\" font-size=\"17\" font-weight=\"bold\">{}</text>",
        escape(title)
    );
    // The subtitle's lines, one under the other: a run's shape is longer
    // than a chart is wide.
    for (index, line) in subtitle.lines().take(3).enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{LEFT_PX}\" y=\"{}\" fill=\"#333\">{}</text>",
            50 + 16 * index,
            escape(line)
        );
    }
    let end_s = seconds
        .iter()
        .map(|s| s.at_s + 1.0)
        .chain(marks.iter().map(|m| m.at_s))
        .fold(1.0, f64::max);
    let time = TimeAxis { end_s };
    let top_rate = seconds
        .iter()
        .map(|s| s.calls as f64)
        .chain(marks.iter().filter_map(|m| m.target_rate))
        .fold(1.0, f64::max);
    let rate_scale = YScale::fit(1, rounded(top_rate).max(1));
    let rate_scale = match rate_scale {
        // Throughput reads from zero: always linear.
        YScale::Log { high, .. } => {
            let step = one_two_five_at_least(high / 5.0).max(1.0);
            YScale::Linear {
                top: ((top_rate / step).floor() + 1.0) * step,
                step,
            }
        }
        linear => linear,
    };
    let latencies: Vec<u64> = seconds
        .iter()
        .map(|s| s.p99_us)
        .filter(|&p| p > 0)
        .collect();
    let latency_scale = YScale::fit(
        latencies.iter().copied().min().unwrap_or(1),
        latencies.iter().copied().max().unwrap_or(1),
    );
    let panels = [
        (
            THROUGHPUT_TOP_PX,
            rate_scale,
            "calls/s (achieved; dashed: target)",
        ),
        (
            LATENCY_TOP_PX,
            latency_scale,
            match latency_scale {
                YScale::Log { .. } => "p99 µs from when due (log scale)",
                YScale::Linear { .. } => "p99 µs from when due",
            },
        ),
    ];
    for (top, scale, label) in panels {
        time.frame(&mut out, top, &scale, label);
    }
    // Marks under the curves.
    for mark in marks {
        let x = time.x(mark.at_s);
        let colour = match mark.held {
            Some(true) => HELD_COLOUR,
            Some(false) => FAILED_COLOUR,
            None => MARK_COLOUR,
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" \
             stroke-dasharray=\"2,3\"/>",
            THROUGHPUT_TOP_PX - 14.0,
            LATENCY_TOP_PX + PANEL_HEIGHT_PX
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\" font-size=\"11\">{}</text>",
            x + 3.0,
            THROUGHPUT_TOP_PX - 4.0,
            escape(&mark.label)
        );
    }
    // Each step's target until the next mark (or the end).
    for (index, mark) in marks.iter().enumerate() {
        let Some(target) = mark.target_rate else {
            continue;
        };
        let until = marks.get(index + 1).map_or(end_s, |next| next.at_s);
        let y = panel_y(THROUGHPUT_TOP_PX, &rate_scale, target);
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" \
             stroke=\"{THROUGHPUT_COLOUR}\" stroke-opacity=\"0.5\" stroke-dasharray=\"6,4\"/>",
            time.x(mark.at_s),
            time.x(until)
        );
    }
    let throughput: Vec<(f64, f64)> = seconds
        .iter()
        .map(|s| {
            (
                time.x(s.at_s + 0.5),
                panel_y(THROUGHPUT_TOP_PX, &rate_scale, s.calls as f64),
            )
        })
        .collect();
    polyline(&mut out, &throughput, THROUGHPUT_COLOUR);
    let latency: Vec<(f64, f64)> = seconds
        .iter()
        .filter(|s| s.p99_us > 0)
        .map(|s| {
            (
                time.x(s.at_s + 0.5),
                panel_y(LATENCY_TOP_PX, &latency_scale, s.p99_us as f64),
            )
        })
        .collect();
    polyline(&mut out, &latency, LATENCY_COLOUR);
    // Seconds with failed calls: a red dot on the throughput line.
    for s in seconds.iter().filter(|s| s.errors > 0) {
        let _ = writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{FAILED_COLOUR}\">\
             <title>{} errors</title></circle>",
            time.x(s.at_s + 0.5),
            panel_y(THROUGHPUT_TOP_PX, &rate_scale, s.calls as f64),
            thousands(s.errors)
        );
    }
    if seconds.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"16\" \
             fill=\"#666\">no calls to plot</text>",
            WIDTH_PX / 2.0,
            THROUGHPUT_TOP_PX + PANEL_HEIGHT_PX / 2.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The y coordinate of `value` in the panel whose top is `top`.
fn panel_y(top: f64, scale: &YScale, value: f64) -> f64 {
    top + PANEL_HEIGHT_PX * (1.0 - scale.fraction(value))
}

fn polyline(out: &mut String, points: &[(f64, f64)], colour: &str) {
    if points.is_empty() {
        return;
    }
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        out,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
         stroke-linejoin=\"round\"/>",
        path.join(" ")
    );
    for (x, y) in points {
        let _ = writeln!(
            out,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{colour}\"/>"
        );
    }
}

/// The shared time axis: from 0 to `end_s` seconds.
struct TimeAxis {
    end_s: f64,
}

impl TimeAxis {
    fn width() -> f64 {
        WIDTH_PX - LEFT_PX - RIGHT_PX
    }

    fn x(&self, at_s: f64) -> f64 {
        LEFT_PX + Self::width() * (at_s / self.end_s).clamp(0.0, 1.0)
    }

    /// A panel's frame, horizontal grid with its labels, time ticks and
    /// axis label.
    fn frame(&self, out: &mut String, top: f64, scale: &YScale, label: &str) {
        let (left, right, bottom) = (LEFT_PX, LEFT_PX + Self::width(), top + PANEL_HEIGHT_PX);
        for tick in scale.ticks() {
            let y = panel_y(top, scale, tick);
            let _ = writeln!(
                out,
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/>"
            );
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
                left - 6.0,
                y + 4.0,
                thousands(rounded(tick))
            );
        }
        let step = one_two_five_at_least(self.end_s / MAX_TIME_TICKS).max(1.0);
        let mut tick = 0.0;
        while tick <= self.end_s + 1e-9 {
            let x = self.x(tick);
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
                bottom + 4.0
            );
            let _ = writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
                bottom + 17.0,
                rounded(tick)
            );
            tick += step;
        }
        let _ = writeln!(
            out,
            "<rect x=\"{left}\" y=\"{top}\" width=\"{:.1}\" height=\"{PANEL_HEIGHT_PX}\" \
             fill=\"none\" stroke=\"#333\"/>",
            Self::width()
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\" font-weight=\"bold\">{}</text>",
            left,
            top - 22.0,
            escape(label)
        );
        let _ = writeln!(
            out,
            "<text x=\"{right}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">seconds from the \
             start</text>",
            bottom + 34.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(at_s: f64, calls: u64, p99_us: u64) -> Second {
        Second {
            at_s,
            calls,
            errors: 0,
            p99_us,
        }
    }

    fn step(at_s: f64, rate: f64, held: bool) -> Mark {
        Mark {
            at_s,
            label: format!("{rate}/s"),
            target_rate: Some(rate),
            held: Some(held),
        }
    }

    #[test]
    fn a_knee_shows_as_marked_steps_with_throughput_and_p99_lines() {
        let seconds: Vec<Second> = (0..9u32)
            .map(|i| {
                let knee = i >= 6;
                second(
                    f64::from(i),
                    if knee {
                        700
                    } else {
                        100 * (u64::from(i) / 3 + 1) * 2
                    },
                    if knee { 900_000 } else { 2_000 },
                )
            })
            .collect();
        let mut marks = vec![step(0.0, 200.0, true), step(3.0, 400.0, true)];
        marks.push(step(6.0, 1000.0, false));
        marks[2].label = "1000/s <over>".into();
        let svg = super::super::svg_document(&svg_element("title & more", "sub", &seconds, &marks));
        assert!(svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2, "throughput and p99");
        assert_eq!(
            svg.matches("stroke-dasharray=\"6,4\"").count(),
            3,
            "targets"
        );
        assert!(svg.contains(FAILED_COLOUR) && svg.contains(HELD_COLOUR));
        assert!(svg.contains("title &amp; more"));
        assert!(svg.contains("1000/s &lt;over&gt;"));
        assert!(svg.contains("log scale"), "2 ms to 900 ms is a log axis");
        // Every coordinate is a number: no NaN or infinity reached the page.
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn an_empty_run_still_draws_its_axes() {
        let svg = svg_element("t", "s", &[], &[]);
        assert!(svg.contains("no calls to plot"));
        assert!(!svg.contains("NaN"));
    }
}
