//! `bench --chart FILE`: the measured window's latency distribution as a
//! hand-written SVG (or that SVG inside a minimal HTML page).
//!
//! The x axis is the percentile on a "nines" scale, as HdrHistogram plots
//! draw it: each step right is one more nine (0 %, 90 %, 99 %, 99.9 %, ...),
//! so the tail gets as much room as the body. The y axis is the latency in
//! µs, logarithmic when the curve spans a decade or more, else linear from
//! zero. Every piece of text is escaped, and rendering never panics: an
//! empty histogram gives an empty plot with a note.
//!
//! Why hand-written SVG and not plotters: what this chart is made of is
//! what plotters leaves to its user. The nines axis is no built-in
//! coordinate (it would be a custom `Ranged` implementation with its own
//! tick labels); the 1-2-5 ticks of a log axis that turns linear for narrow
//! spans, the p50/p99/p99.9 markers and where their labels go, the headings
//! and the HTML caption would all still be ours. plotters would contribute
//! drawing primitives that are one `format!` each here, and label placement
//! would still rest on estimated text widths unless it also loads fonts
//! (its `ttf`/`ab_glyph` features: more crates). The output here is already
//! a complete, well-formed picture under tests (well-formedness, escaping,
//! axis choice, label bounds), so a port would add three crates to the
//! CLI's build and as much code, for the same chart at best. About 590
//! lines draw; the rest are the tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::thousands;

pub mod timeline;

/// Nines shown on the x axis: 0 % to 99.999 %.
const MAX_NINES: u32 = 5;

/// Points of the curve per nine of the x axis: smooth at any chart size.
const POINTS_PER_NINE: u32 = 60;

/// Size of the whole picture, in SVG user units (px).
const WIDTH_PX: f64 = 960.0;
const HEIGHT_PX: f64 = 560.0;

/// Room around the plot area for the title, tick labels and axis labels.
const MARGIN_LEFT_PX: f64 = 90.0;
const MARGIN_RIGHT_PX: f64 = 40.0;
const MARGIN_TOP_PX: f64 = 96.0;
const MARGIN_BOTTOM_PX: f64 = 64.0;

/// Most y ticks on a log axis before only whole decades are labelled.
const MAX_LOG_TICKS: usize = 12;

/// Span (largest / smallest latency) from which the y axis turns
/// logarithmic: below one decade a linear axis reads better.
const LOG_SCALE_MIN_SPAN: f64 = 10.0;

/// The percentiles marked on the curve: quantile and label.
const MARKED: [(f64, &str); 3] = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")];

/// Rough width of one character of a 12 px label, for placing labels.
const LABEL_CHAR_WIDTH_PX: f64 = 7.0;

/// Colour of the curve and its markers.
const CURVE_COLOUR: &str = "#1f6fb2";

/// What `--chart` writes, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartFormat {
    /// `.svg`: a standalone SVG document.
    Svg,
    /// `.html`: the same SVG in a minimal page, with the run's parameters
    /// as a caption.
    Html,
}

/// `--chart FILE`: where to write the chart, and in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartFile {
    pub path: PathBuf,
    pub format: ChartFormat,
}

impl ChartFile {
    /// The format of `path`, from its extension (`.svg` or `.html`, in
    /// any case); anything else is refused.
    pub fn parse(raw: &str) -> Result<ChartFile, String> {
        let path = PathBuf::from(raw);
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let format = if extension.eq_ignore_ascii_case("svg") {
            ChartFormat::Svg
        } else if extension.eq_ignore_ascii_case("html") {
            ChartFormat::Html
        } else {
            return Err(format!(
                "{raw:?} must end in .svg (an SVG image) or .html (a page holding it)"
            ));
        };
        Ok(ChartFile { path, format })
    }

    /// Checks, before a long run, that the file's directory exists, so a
    /// typo does not cost the whole benchmark.
    pub fn check_directory(&self) -> Result<(), String> {
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if directory.is_dir() {
            Ok(())
        } else {
            Err(format!(
                "cannot write the chart to {}: no directory {}",
                self.path.display(),
                directory.display()
            ))
        }
    }

    /// Where the run's timeline goes next to the distribution: the file's
    /// name with `-timeline` before its extension.
    pub fn timeline_path(&self) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let extension = match self.format {
            ChartFormat::Svg => "svg",
            ChartFormat::Html => "html",
        };
        self.path
            .with_file_name(format!("{stem}-timeline.{extension}"))
    }

    /// Writes the timeline (see [`timeline`]) to `path`, as an SVG or a
    /// page holding it, in this file's format.
    pub fn write_timeline(
        &self,
        path: &Path,
        title: &str,
        subtitle: &str,
        seconds: &[timeline::Second],
        marks: &[timeline::Mark],
    ) -> Result<(), String> {
        let element = timeline::svg_element(title, subtitle, seconds, marks);
        let document = match self.format {
            ChartFormat::Svg => svg_document(&element),
            ChartFormat::Html => html_page(title, &element, subtitle),
        };
        write_file(path, document)
    }

    /// Renders the chart and writes it; a failure is described, never a
    /// panic.
    pub fn write(&self, latencies_micros: &Histogram<u64>, run: &Run) -> Result<(), String> {
        let document = match self.format {
            ChartFormat::Svg => svg(latencies_micros, run),
            ChartFormat::Html => html(latencies_micros, run),
        };
        write_file(&self.path, document)
    }
}

/// Writes a chart's document to `path`; a failure is described.
fn write_file(path: &Path, document: String) -> Result<(), String> {
    std::fs::write(path, document)
        .map_err(|e| format!("cannot write the chart to {}: {e}", path.display()))
}

/// A standalone SVG document holding `element`.
fn svg_document(element: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{element}")
}

/// A minimal HTML page holding the SVG `element`, captioned.
fn html_page(title: &str, element: &str, caption: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>body {{ font-family: sans-serif; margin: 2em; }} \
         figure {{ margin: 0; }} figcaption {{ margin-top: 0.5em; color: #333; }} \
         svg {{ max-width: 100%; height: auto; }}</style>\n</head>\n<body>\n<figure>\n{}\
         <figcaption>{}</figcaption>\n</figure>\n</body>\n</html>\n",
        escape(title),
        element,
        escape(caption),
    )
}

/// Opens an `<svg>` element of `width` × `height` px, titled, on white.
fn open_svg(out: &mut String, width: f64, height: f64, title: &str) {
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"white\"/>"
    );
}

/// The run's parameters and results shown in the title and caption.
#[derive(Debug, Clone)]
pub struct Run {
    /// Who served the run, as the text report names it.
    pub server: String,
    pub threads: usize,
    /// `closed loop` or `open loop at N calls/s`.
    pub mode: String,
    /// The value sizes, as `100 B` or `64–4,096 B`.
    pub values: String,
    /// The operation mix, as `90% get, 10% set`.
    pub mix: String,
    pub keys: usize,
    pub measured: Duration,
    pub warmup: Duration,
    pub ops_per_second: f64,
    pub errors: u64,
}

impl Run {
    /// The run's shape in one line, as the text report and the HTML
    /// caption both say it.
    pub fn parameters(&self) -> String {
        format!(
            "{} threads, {}, {:.2} s measured after {:.2} s warm-up; {} over {} keys of {}",
            self.threads,
            self.mode,
            self.measured.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.mix,
            self.keys,
            self.values,
        )
    }
}

/// A standalone SVG document of the latency distribution.
pub fn svg(latencies_micros: &Histogram<u64>, run: &Run) -> String {
    svg_document(&svg_element(latencies_micros, run))
}

/// A minimal HTML page holding the SVG, captioned with the run's
/// parameters.
pub fn html(latencies_micros: &Histogram<u64>, run: &Run) -> String {
    let caption = format!(
        "{}; {} ops ({} ops/s), {} errors; against {}.",
        run.parameters(),
        thousands(latencies_micros.len()),
        thousands(rounded(run.ops_per_second)),
        run.errors,
        run.server,
    );
    html_page(&title(run), &svg_element(latencies_micros, run), &caption)
}

/// The `<svg>` element itself, ending in a newline.
fn svg_element(latencies_micros: &Histogram<u64>, run: &Run) -> String {
    let plot = Plot::new(latencies_micros);
    let mut out = String::with_capacity(32 * 1024);
    open_svg(&mut out, WIDTH_PX, HEIGHT_PX, &title(run));
    headings(&mut out, latencies_micros, run);
    plot.grid_and_axes(&mut out);
    match &plot.curve {
        Some(curve) => plot.draw_curve(&mut out, curve),
        None => {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"16\" \
                 fill=\"#666\">no successful operations to plot</text>",
                MARGIN_LEFT_PX + plot_width() / 2.0,
                MARGIN_TOP_PX + plot_height() / 2.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The chart's title: what was measured, and how fast.
fn title(run: &Run) -> String {
    format!(
        "tiny-cache bench: {} threads, {} values, {}, {} ops/s",
        run.threads,
        run.values,
        run.mix,
        thousands(rounded(run.ops_per_second))
    )
}

/// The title, the server, and the marked percentiles above the plot.
fn headings(out: &mut String, latencies_micros: &Histogram<u64>, run: &Run) {
    let _ = writeln!(
        out,
        "<text x=\"{MARGIN_LEFT_PX}\" y=\"28\" font-size=\"17\" font-weight=\"bold\">{}</text>",
        escape(&title(run))
    );
    let _ = writeln!(
        out,
        "<text x=\"{MARGIN_LEFT_PX}\" y=\"50\" fill=\"#333\">against {}; {:.2} s measured \
         after {:.2} s warm-up, {} keys, {} errors</text>",
        escape(&run.server),
        run.measured.as_secs_f64(),
        run.warmup.as_secs_f64(),
        thousands(run.keys as u64),
        thousands(run.errors)
    );
    let summary = if latencies_micros.is_empty() {
        "latency: no successful operations".to_owned()
    } else {
        let mut parts: Vec<String> = MARKED
            .iter()
            .map(|&(quantile, label)| {
                let micros = latencies_micros.value_at_quantile(quantile);
                format!("{label} {} µs", thousands(micros))
            })
            .collect();
        parts.push(format!("max {} µs", thousands(latencies_micros.max())));
        parts.push(format!("{} ops", thousands(latencies_micros.len())));
        format!("latency: {}", parts.join(" · "))
    };
    let _ = writeln!(
        out,
        "<text x=\"{MARGIN_LEFT_PX}\" y=\"70\" fill=\"#333\">{}</text>",
        escape(&summary)
    );
}

fn plot_width() -> f64 {
    WIDTH_PX - MARGIN_LEFT_PX - MARGIN_RIGHT_PX
}

fn plot_height() -> f64 {
    HEIGHT_PX - MARGIN_TOP_PX - MARGIN_BOTTOM_PX
}

/// Where `quantile` sits on the x axis, in nines: 0 for 0, 1 for 0.9, 2 for
/// 0.99, ... capped at [`MAX_NINES`] (1 and beyond included).
pub fn nines(quantile: f64) -> f64 {
    if quantile.is_nan() || quantile <= 0.0 {
        0.0
    } else if quantile >= 1.0 {
        f64::from(MAX_NINES)
    } else {
        (-(1.0 - quantile).log10()).clamp(0.0, f64::from(MAX_NINES))
    }
}

/// The x coordinate, in px, of `quantile`.
pub fn x_px(quantile: f64) -> f64 {
    MARGIN_LEFT_PX + plot_width() * nines(quantile) / f64::from(MAX_NINES)
}

/// How latencies map to the y axis.
#[derive(Debug, Clone, Copy, PartialEq)]
enum YScale {
    /// From 0 to `top` µs, ticks every `step` µs.
    Linear { top: f64, step: f64 },
    /// From `low` to `high` µs, logarithmically.
    Log { low: f64, high: f64 },
}

impl YScale {
    /// The scale for latencies from `min` to `max` µs.
    fn fit(min: u64, max: u64) -> YScale {
        let (min, max) = (min.max(1) as f64, max.max(1) as f64);
        if max / min >= LOG_SCALE_MIN_SPAN {
            YScale::Log {
                low: one_two_five_at_most(min),
                high: one_two_five_above(max),
            }
        } else {
            let step = one_two_five_at_least(max / 5.0).max(1.0);
            YScale::Linear {
                top: ((max / step).floor() + 1.0) * step,
                step,
            }
        }
    }

    /// Where `micros` sits from the bottom (0) to the top (1), clamped.
    fn fraction(&self, micros: f64) -> f64 {
        let fraction = match *self {
            YScale::Linear { top, .. } => micros / top,
            YScale::Log { low, high } => (micros.max(low).ln() - low.ln()) / (high.ln() - low.ln()),
        };
        if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The labelled values, bottom to top.
    fn ticks(&self) -> Vec<f64> {
        match *self {
            YScale::Linear { top, step } => {
                let count = (top / step).round() as u64;
                (0..=count).map(|i| i as f64 * step).collect()
            }
            YScale::Log { low, high } => {
                let mut ticks = Vec::new();
                let mut decade = 10f64.powf(low.log10().floor());
                while decade <= high && ticks.len() < 64 {
                    for multiple in [1.0, 2.0, 5.0] {
                        let tick = decade * multiple;
                        if tick >= low * 0.999 && tick <= high * 1.001 {
                            ticks.push(tick);
                        }
                    }
                    decade *= 10.0;
                }
                if ticks.len() > MAX_LOG_TICKS {
                    ticks.retain(|t| (t.log10() - t.log10().round()).abs() < 1e-9);
                }
                ticks
            }
        }
    }

    fn label(&self) -> &'static str {
        match self {
            YScale::Linear { .. } => "latency (µs)",
            YScale::Log { .. } => "latency (µs, log scale)",
        }
    }
}

/// The largest of 1, 2, 5, 10, 20, 50, ... that is at most `value` (≥ 1).
fn one_two_five_at_most(value: f64) -> f64 {
    let decade = 10f64.powf(value.max(1.0).log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|&v| v <= value)
        .unwrap_or(decade)
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `value`.
fn one_two_five_at_least(value: f64) -> f64 {
    let decade = 10f64.powf(value.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|&v| v >= value)
        .unwrap_or(10.0 * decade)
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... strictly above `value`, so the
/// curve never touches the top edge.
fn one_two_five_above(value: f64) -> f64 {
    let at_least = one_two_five_at_least(value);
    if at_least > value {
        at_least
    } else {
        one_two_five_at_least(value * 1.000_001)
    }
}

/// The curve: (quantile, µs) from 0 to [`MAX_NINES`] nines.
type Curve = Vec<(f64, u64)>;

/// The plot area: the y scale, the curve and the marked percentiles (none
/// when nothing succeeded).
struct Plot {
    scale: YScale,
    curve: Option<Curve>,
    /// The [`MARKED`] percentiles: quantile, label, µs.
    marks: Vec<(f64, &'static str, u64)>,
}

impl Plot {
    fn new(latencies_micros: &Histogram<u64>) -> Plot {
        if latencies_micros.is_empty() {
            return Plot {
                scale: YScale::Linear {
                    top: 1.0,
                    step: 1.0,
                },
                curve: None,
                marks: Vec::new(),
            };
        }
        let steps = MAX_NINES * POINTS_PER_NINE;
        let quantiles: Vec<f64> = (0..=steps)
            .map(|i| 1.0 - 10f64.powf(-f64::from(i) / f64::from(POINTS_PER_NINE)))
            .collect();
        let curve: Curve = quantiles
            .iter()
            .copied()
            .zip(latencies_micros.value_at_quantiles(quantiles.iter().copied()))
            .collect();
        let marks = MARKED
            .iter()
            .map(|&(quantile, label)| {
                (
                    quantile,
                    label,
                    latencies_micros.value_at_quantile(quantile),
                )
            })
            .collect();
        let min = curve.iter().map(|p| p.1).min().unwrap_or(1);
        let max = curve.iter().map(|p| p.1).max().unwrap_or(1);
        Plot {
            scale: YScale::fit(min, max),
            curve: Some(curve),
            marks,
        }
    }

    fn y_px(&self, micros: f64) -> f64 {
        MARGIN_TOP_PX + plot_height() * (1.0 - self.scale.fraction(micros))
    }

    /// Grid lines, ticks, tick labels, the frame and the axis labels.
    fn grid_and_axes(&self, out: &mut String) {
        let (left, top) = (MARGIN_LEFT_PX, MARGIN_TOP_PX);
        let (right, bottom) = (left + plot_width(), top + plot_height());
        out.push_str("<g stroke=\"#ddd\" stroke-width=\"1\">\n");
        for nine in 0..=MAX_NINES {
            let x = left + plot_width() * f64::from(nine) / f64::from(MAX_NINES);
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>"
            );
        }
        let ticks = self.scale.ticks();
        for &tick in &ticks {
            let y = self.y_px(tick);
            let _ = writeln!(
                out,
                "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\"/>"
            );
        }
        out.push_str("</g>\n");
        let _ = writeln!(
            out,
            "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"none\" stroke=\"#333\"/>",
            plot_width(),
            plot_height()
        );
        out.push_str("<g fill=\"#333\" text-anchor=\"middle\">\n");
        for nine in 0..=MAX_NINES {
            let x = left + plot_width() * f64::from(nine) / f64::from(MAX_NINES);
            let _ = writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
                bottom + 18.0,
                nines_label(nine)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">percentile</text>",
            left + plot_width() / 2.0,
            bottom + 42.0
        );
        out.push_str("</g>\n<g fill=\"#333\" text-anchor=\"end\">\n");
        if self.curve.is_some() {
            for &tick in &ticks {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    left - 8.0,
                    self.y_px(tick) + 4.0,
                    thousands(tick.round() as u64)
                );
            }
        }
        out.push_str("</g>\n");
        let (label_x, label_y) = (22.0, top + plot_height() / 2.0);
        let _ = writeln!(
            out,
            "<text x=\"{label_x:.1}\" y=\"{label_y:.1}\" fill=\"#333\" text-anchor=\"middle\" \
             transform=\"rotate(-90 {label_x:.1} {label_y:.1})\">{}</text>",
            escape(self.scale.label())
        );
    }

    /// The polyline and the marked percentiles.
    fn draw_curve(&self, out: &mut String, curve: &Curve) {
        let mut points = String::with_capacity(curve.len() * 14);
        for &(quantile, micros) in curve {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x_px(quantile),
                self.y_px(micros as f64)
            );
        }
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{CURVE_COLOUR}\" stroke-width=\"2\" \
             stroke-linejoin=\"round\" points=\"{}\"/>",
            points.trim_end()
        );
        for &(quantile, label, micros) in &self.marks {
            let (x, y) = (x_px(quantile), self.y_px(micros as f64));
            let text = format!("{label} {} µs", thousands(micros));
            let (label_x, label_y, anchor) = mark_label_position(x, y, &text);
            let _ = writeln!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{CURVE_COLOUR}\"/>\n\
                 <text x=\"{label_x:.1}\" y=\"{label_y:.1}\" text-anchor=\"{anchor}\" \
                 fill=\"#111\">{}</text>",
                escape(&text)
            );
        }
    }
}

/// Where the label `text` of the marker at (`x`, `y`) goes: its anchor
/// point and `text-anchor`. The curve only rises to the right, so above and
/// to the left of a point is free, and so is below and to the right; the
/// label takes the first of those that stays inside the plot.
fn mark_label_position(x: f64, y: f64, text: &str) -> (f64, f64, &'static str) {
    let width = text.chars().count() as f64 * LABEL_CHAR_WIDTH_PX;
    let (left, bottom) = (MARGIN_LEFT_PX, MARGIN_TOP_PX + plot_height());
    if x - 6.0 - width >= left + 4.0 && y - 8.0 - 12.0 >= MARGIN_TOP_PX {
        (x - 6.0, y - 8.0, "end")
    } else if y + 18.0 <= bottom - 4.0 {
        (x + 6.0, y + 18.0, "start")
    } else {
        (x + 8.0, y - 8.0, "start")
    }
}

/// "0%", "90%", "99%", "99.9%", ... for `nine` nines.
fn nines_label(nine: u32) -> String {
    match nine {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        _ => format!("99.{}%", "9".repeat(nine as usize - 2)),
    }
}

/// `value` rounded to a whole number, 0 if it is not a finite, positive one.
fn rounded(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

/// `text` safe inside XML (and HTML) text and attribute values: markup
/// characters become entities, and characters XML 1.0 forbids outright
/// (most control characters, U+FFFE, U+FFFF) become U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if u32::from(c) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str) -> Run {
        Run {
            server: server.to_owned(),
            threads: 2,
            mode: "closed loop".to_owned(),
            values: "100 B".to_owned(),
            mix: "90% get, 10% set".to_owned(),
            keys: 1000,
            measured: Duration::from_secs(1),
            warmup: Duration::from_millis(500),
            ops_per_second: 12_345.6,
            errors: 0,
        }
    }

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for &value in values {
            histogram.record(value).unwrap();
        }
        histogram
    }

    /// Checks that `document` is well-formed enough for any XML parser:
    /// every tag closed in order, attribute values quoted, and `&` only
    /// starting an entity. Returns the element names in document order.
    fn check_well_formed(document: &str) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = document;
        if let Some(after) = rest.strip_prefix("<?xml") {
            rest = &after[after.find("?>").expect("declaration ends") + 2..];
        }
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("<!DOCTYPE html>") {
            rest = after;
        }
        while let Some(start) = rest.find('<') {
            check_text(&rest[..start]);
            let end = start + rest[start..].find('>').expect("tag ends");
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let name = tag.split_whitespace().next().expect("tag has a name");
                check_attributes(&tag[name.len()..]);
                names.push(name.to_owned());
                if !self_closing && name != "meta" {
                    open.push(name.to_owned());
                }
            }
            rest = &rest[end + 1..];
        }
        check_text(rest);
        assert!(open.is_empty(), "unclosed: {open:?}");
        names
    }

    fn check_text(text: &str) {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..i + text[i..].find(';').expect("entity ends")];
            assert!(
                ["&amp", "&lt", "&gt", "&quot", "&#39"].contains(&entity),
                "bad entity {entity}"
            );
        }
    }

    fn check_attributes(attributes: &str) {
        let mut rest = attributes.trim();
        while !rest.is_empty() {
            let equals = rest.find("=\"").expect("attribute is name=\"value\"");
            let value_end = equals + 2 + rest[equals + 2..].find('"').expect("value closes");
            check_text(&rest[equals + 2..value_end]);
            assert!(!rest[equals + 2..value_end].contains('<'));
            rest = rest[value_end + 1..].trim_start();
        }
    }

    #[test]
    fn svg_of_a_small_histogram_is_well_formed() {
        let values: Vec<u64> = (1..=1000).map(|i| 100 + i * 3).collect();
        let svg = svg(&histogram(&values), &run("127.0.0.1:50051"));
        assert!(svg.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "));
        assert!(svg.ends_with("</svg>\n"));
        let names = check_well_formed(&svg);
        assert_eq!(names[0], "svg");
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 1);
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), 3);
        for label in ["p50 ", "p99 ", "p99.9 ", "99.999%", "percentile", "µs"] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(svg.contains("2 threads, 100 B values, 90% get, 10% set, 12,346 ops/s"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn html_wraps_the_svg_with_a_caption() {
        let html = html(&histogram(&[10, 20, 30]), &run("host<1>"));
        assert!(html.starts_with("<!DOCTYPE html>\n<html"));
        assert!(!html.contains("<?xml"));
        let names = check_well_formed(&html);
        assert!(names.contains(&"svg".to_owned()));
        assert!(names.contains(&"figcaption".to_owned()));
        assert!(html.contains("2 threads, closed loop, 1.00 s measured after 0.50 s warm-up"));
        assert!(html.contains("against host&lt;1&gt;."));
    }

    #[test]
    fn text_from_the_command_line_is_escaped() {
        assert_eq!(
            escape("a<b>&\"c\"'d'"),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;"
        );
        assert_eq!(escape("bell\u{7}\u{fffe}"), "bell\u{fffd}\u{fffd}");
        assert_eq!(escape("tab\tok"), "tab\tok");
        let server = "grpc://evil\"/><script>&x</script>:1";
        let svg = svg(&histogram(&[5]), &run(server));
        check_well_formed(&svg);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("evil&quot;/&gt;&lt;script&gt;&amp;x"));
    }

    #[test]
    fn percentiles_map_to_nines_left_to_right() {
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(nines(-1.0), 0.0);
        assert_eq!(nines(f64::NAN), 0.0);
        assert!((nines(0.5) - std::f64::consts::LOG10_2).abs() < 1e-9);
        for (quantile, expected) in [(0.9, 1.0), (0.99, 2.0), (0.999, 3.0), (0.99999, 5.0)] {
            assert!((nines(quantile) - expected).abs() < 1e-9, "{quantile}");
        }
        assert_eq!(nines(0.9999999), 5.0);
        assert_eq!(nines(1.0), 5.0);
        assert_eq!(x_px(0.0), MARGIN_LEFT_PX);
        assert_eq!(x_px(1.0), WIDTH_PX - MARGIN_RIGHT_PX);
        assert!(x_px(0.99) < x_px(0.999));
        let labels: Vec<String> = (0..=MAX_NINES).map(nines_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn empty_histogram_gives_an_empty_plot() {
        let svg = svg(&histogram(&[]), &run("embedded"));
        let names = check_well_formed(&svg);
        assert!(!names.contains(&"polyline".to_owned()));
        assert!(svg.contains("no successful operations"));
        check_well_formed(&html(&histogram(&[]), &run("embedded")));
    }

    #[test]
    fn one_latency_everywhere_draws_a_flat_line() {
        let svg = svg(&histogram(&[250; 100]), &run("x"));
        check_well_formed(&svg);
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("latency (µs)"));
    }

    #[test]
    fn wide_spans_get_a_log_axis_and_narrow_ones_a_linear_one() {
        let log = YScale::fit(80, 25_000);
        assert_eq!(
            log,
            YScale::Log {
                low: 50.0,
                high: 50_000.0
            }
        );
        let ticks = log.ticks();
        assert_eq!(ticks.first(), Some(&50.0));
        assert_eq!(ticks.last(), Some(&50_000.0));
        assert!(ticks.len() <= MAX_LOG_TICKS);
        let wide = YScale::fit(1, 3_600_000_000).ticks();
        assert!(wide.len() <= MAX_LOG_TICKS, "{wide:?}");
        let linear = YScale::fit(100, 300);
        assert_eq!(
            linear,
            YScale::Linear {
                top: 400.0,
                step: 100.0
            }
        );
        assert_eq!(linear.ticks(), [0.0, 100.0, 200.0, 300.0, 400.0]);
        assert_eq!(linear.fraction(200.0), 0.5);
        assert_eq!(YScale::fit(1, 1).ticks(), [0.0, 1.0, 2.0]);
    }

    #[test]
    fn marker_labels_stay_inside_the_plot() {
        let right = MARGIN_LEFT_PX + plot_width();
        let bottom = MARGIN_TOP_PX + plot_height();
        for (x, y) in [
            (x_px(0.5), bottom - 2.0),
            (x_px(0.5), MARGIN_TOP_PX + 2.0),
            (x_px(0.5), bottom - 100.0),
            (x_px(0.999), MARGIN_TOP_PX + 2.0),
            (x_px(0.999), bottom - 2.0),
        ] {
            let text = "p99.9 12,345 µs";
            let width = text.chars().count() as f64 * LABEL_CHAR_WIDTH_PX;
            let (label_x, label_y, anchor) = mark_label_position(x, y, text);
            let start = if anchor == "end" {
                label_x - width
            } else {
                label_x
            };
            assert!(start >= MARGIN_LEFT_PX && start + width <= right, "{x},{y}");
            assert!(
                label_y - 12.0 >= MARGIN_TOP_PX && label_y <= bottom,
                "{x},{y}"
            );
        }
    }

    #[test]
    fn only_svg_and_html_extensions_are_accepted() {
        assert_eq!(
            ChartFile::parse("out/lat.svg").unwrap().format,
            ChartFormat::Svg
        );
        assert_eq!(
            ChartFile::parse("LAT.SVG").unwrap().format,
            ChartFormat::Svg
        );
        assert_eq!(
            ChartFile::parse("lat.html").unwrap().format,
            ChartFormat::Html
        );
        for bad in ["x.txt", "svg", "lat.", "lat.svg.gz", ""] {
            assert!(ChartFile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_directory_is_caught_before_the_run() {
        assert!(ChartFile::parse("lat.svg")
            .unwrap()
            .check_directory()
            .is_ok());
        let missing = ChartFile::parse("/no/such/dir/lat.svg").unwrap();
        assert!(missing.check_directory().is_err());
    }
}
