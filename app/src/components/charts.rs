//! SVG charts drawn from plain data: a patient's timeline and the fan chart
//! of a simulated course share one chart (lines, 10-90 % bands, a reference
//! line, a "now" marker), so both read the same way. Colours are from the
//! Okabe-Ito palette, which colour-blind readers can tell apart.

use leptos::prelude::*;
use sepsis_core::action::Action;

/// Okabe-Ito colours.
pub const BLUE: &str = "#0072B2";
pub const ORANGE: &str = "#E69F00";
pub const GREEN: &str = "#009E73";
pub const VERMILLION: &str = "#D55E00";
pub const PURPLE: &str = "#CC79A7";

/// Viridis (perceptually uniform, colour-blind safe) at t in [0, 1].
pub fn viridis(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let (i, f) = ((t.floor() as usize).min(STOPS.len() - 2), t - t.floor().min((STOPS.len() - 2) as f64));
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    format!("rgb({},{},{})", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Width of every chart's drawing (viewBox units), so figures line up.
pub const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 66.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// A line through (hour, value) points; `None` values leave a gap.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A shaded band between (hour, low, high) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    pub color: &'static str,
    pub points: Vec<(f64, f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub unit: String,
    /// Hours since admission shown on the x axis.
    pub hours: (f64, f64),
    pub lines: Vec<Line>,
    pub bands: Vec<Band>,
    /// A clinical threshold drawn across (value, label), e.g. MAP 65 mmHg.
    pub reference: Option<(f64, String)>,
    /// The decision time: where the observed course ends.
    pub now: Option<f64>,
}

impl Chart {
    fn value_range(&self) -> (f64, f64) {
        let values = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|p| p.1))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])))
            .chain(self.reference.iter().map(|r| r.0))
            .filter(|v| v.is_finite());
        let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if !low.is_finite() {
            return (0.0, 1.0);
        }
        let pad = ((high - low) * 0.08).max(high.abs() * 0.02).max(0.5);
        (low - pad, high + pad)
    }
}

/// About `count` round tick values inside `range` (the step of 1, 2 or 5 x 10^k
/// nearest to range / count).
pub fn ticks(range: (f64, f64), count: usize) -> Vec<f64> {
    let span = (range.1 - range.0).max(1e-9);
    let raw = span / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).min_by(|a, b| (a - raw).abs().total_cmp(&(b - raw).abs())).unwrap_or(magnitude);
    let first = (range.0 / step).ceil() as i64;
    let last = (range.1 / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Hour ticks on the 4-hour step grid, about six of them.
pub fn hour_ticks(hours: (f64, f64)) -> Vec<f64> {
    let every = 4.0 * ((hours.1 - hours.0) / 4.0 / 6.0).ceil().max(1.0);
    let first = (hours.0 / every).ceil() as i64;
    let last = (hours.1 / every).floor() as i64;
    (first..=last).map(|i| i as f64 * every).collect()
}

fn format_tick(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

struct Scale {
    hours: (f64, f64),
    values: (f64, f64),
}

impl Scale {
    fn x(&self, hour: f64) -> f64 {
        LEFT + (hour - self.hours.0) / (self.hours.1 - self.hours.0).max(1e-9) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        HEIGHT - BOTTOM - (value - self.values.0) / (self.values.1 - self.values.0).max(1e-9) * (HEIGHT - TOP - BOTTOM)
    }
}

/// Path segments of a line, broken where a value is missing.
fn line_path(scale: &Scale, points: &[(f64, Option<f64>)]) -> String {
    let mut path = String::new();
    let mut pen_down = false;
    for (hour, value) in points {
        match value {
            Some(v) => {
                path.push_str(&format!("{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, scale.x(*hour), scale.y(*v)));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    path
}

fn band_path(scale: &Scale, points: &[(f64, f64, f64)]) -> String {
    let upper = points.iter().map(|(h, _, hi)| format!("{:.1},{:.1}", scale.x(*h), scale.y(*hi)));
    let lower = points.iter().rev().map(|(h, lo, _)| format!("{:.1},{:.1}", scale.x(*h), scale.y(*lo)));
    format!("M{} Z", upper.chain(lower).collect::<Vec<_>>().join(" L"))
}

/// A description of the chart for screen readers: each line's last value.
fn summary(chart: &Chart) -> String {
    let lines: Vec<String> = chart
        .lines
        .iter()
        .filter_map(|l| l.points.iter().rev().find_map(|p| p.1).map(|v| format!("{} last {} {}", l.label, format_tick(v), chart.unit)))
        .collect();
    format!("{} over hours {:.0} to {:.0}: {}", chart.title, chart.hours.0, chart.hours.1, lines.join("; "))
}

#[component]
pub fn ChartView(chart: Chart) -> impl IntoView {
    let (low, high) = chart.value_range();
    let scale = Scale { hours: chart.hours, values: (low, high) };
    let y_ticks = ticks((low, high), 4)
        .into_iter()
        .map(|v| {
            let y = scale.y(v);
            view! {
                <line class="grid" x1=LEFT x2=WIDTH - RIGHT y1=y y2=y/>
                <text class="tick" x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{format_tick(v)}</text>
            }
        })
        .collect_view();
    let x_ticks = hour_ticks(chart.hours)
        .into_iter()
        .map(|h| view! { <text class="tick" x=scale.x(h) y=HEIGHT - 8.0 text-anchor="middle">{format!("{h:.0} h")}</text> })
        .collect_view();
    let bands = chart.bands.iter().map(|b| view! { <path d=band_path(&scale, &b.points) fill=b.color fill-opacity="0.25" stroke="none"/> }).collect_view();
    let lines = chart
        .lines
        .iter()
        .map(|l| {
            let dots = l
                .points
                .iter()
                .filter_map(|(h, v)| v.map(|v| view! { <circle cx=scale.x(*h) cy=scale.y(v) r="2.5" fill=l.color/> }))
                .collect_view();
            view! {
                <path d=line_path(&scale, &l.points) fill="none" stroke=l.color stroke-width="2" stroke-dasharray=if l.dashed { "5 3" } else { "none" }/>
                {dots}
            }
        })
        .collect_view();
    let reference = chart.reference.clone().map(|(value, label)| {
        let y = scale.y(value);
        view! {
            <line class="reference" x1=LEFT x2=WIDTH - RIGHT y1=y y2=y/>
            <text class="reference-label" x=WIDTH - RIGHT - 4.0 y=y - 4.0 text-anchor="end">{label}</text>
        }
    });
    let now = chart.now.map(|h| {
        let x = scale.x(h);
        view! { <line class="now" x1=x x2=x y1=TOP y2=HEIGHT - BOTTOM/> }
    });
    view! {
        <figure class="chart">
            <figcaption>{chart.title.clone()} <span class="unit">{format!("({})", chart.unit)}</span></figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=summary(&chart)>
                {y_ticks}
                {x_ticks}
                {reference}
                {bands}
                {lines}
                {now}
            </svg>
        </figure>
    }
}

/// The treatment given at each step, beneath the timeline: bar heights are
/// the fluid and vasopressor levels (0-4).
#[component]
pub fn ActionStrip(hours: (f64, f64), steps: Vec<(f64, Action)>) -> impl IntoView {
    let scale = Scale { hours, values: (0.0, 4.0) };
    let row_height = 28.0;
    let bar_width = ((scale.x(hours.0 + 4.0) - scale.x(hours.0)) * 0.35).clamp(2.0, 14.0);
    let rows = [("IV fluid", ORANGE, 0usize), ("Vasopressor", VERMILLION, 1)]
        .into_iter()
        .map(|(label, color, row)| {
            let base = TOP + (row as f64 + 1.0) * row_height;
            let bars = steps
                .iter()
                .map(|(hour, action)| {
                    let level = if row == 0 { action.fluid } else { action.vaso } as f64;
                    let height = level / 4.0 * (row_height - 6.0);
                    view! { <rect x=scale.x(*hour) - bar_width / 2.0 y=base - height width=bar_width height=height fill=color/> }
                })
                .collect_view();
            view! {
                <text class="tick" x=2.0 y=base - 4.0>{label}</text>
                <line class="grid" x1=LEFT x2=WIDTH - RIGHT y1=base y2=base/>
                {bars}
            }
        })
        .collect_view();
    let given: Vec<String> = steps.iter().map(|(h, a)| format!("{h:.0} h: fluid {} vasopressor {}", a.fluid, a.vaso)).collect();
    view! {
        <figure class="chart">
            <figcaption>"Treatment given " <span class="unit">"(level 0-4 per 4 h)"</span></figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {}", TOP + 2.0 * row_height + 8.0) role="img" aria-label=format!("Treatment given: {}", given.join("; "))>
                {rows}
            </svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::{hour_ticks, ticks, viridis};

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(ticks((52.0, 97.0), 4), vec![60.0, 70.0, 80.0, 90.0]);
        assert_eq!(ticks((0.0, 24.0), 6), vec![0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(hour_ticks((0.0, 24.0)), vec![0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0]);
        assert_eq!(hour_ticks((8.0, 60.0)), vec![12.0, 24.0, 36.0, 48.0, 60.0]);
        assert_eq!(ticks((0.8, 4.3), 4), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn viridis_runs_from_dark_purple_to_yellow() {
        assert_eq!(viridis(0.0), "rgb(68,1,84)");
        assert_eq!(viridis(1.0), "rgb(253,231,37)");
        assert_eq!(viridis(0.5), "rgb(33,145,140)");
    }
}
