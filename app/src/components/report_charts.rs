//! The cohort report's SVG charts: estimates with their 95% intervals on one
//! survival axis, and paired bars of rates (clinicians beside the policy).

use leptos::prelude::*;
use sepsis_core::report::Interval;

use super::charts::{ticks, WIDTH};

const LEFT: f64 = 250.0;
const RIGHT: f64 = 24.0;
const ROW: f64 = 30.0;
const AXIS: f64 = 34.0;

/// One row of an interval plot.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalRow {
    pub label: String,
    pub interval: Interval,
    pub color: &'static str,
}

/// Horizontal axis in percent over `range` (fractions), rounded out to ticks.
fn percent_axis(range: (f64, f64)) -> (f64, f64) {
    let low = (range.0 * 100.0 / 10.0).floor() * 10.0;
    let high = (range.1 * 100.0 / 10.0).ceil() * 10.0;
    (low.max(0.0), high.min(100.0).max(low + 10.0))
}

fn x_of(axis: (f64, f64), percent: f64) -> f64 {
    LEFT + (percent - axis.0) / (axis.1 - axis.0) * (WIDTH - LEFT - RIGHT)
}

/// Ticks and the axis title beneath `rows` rows.
fn x_axis(axis: (f64, f64), rows: usize, title: &'static str) -> impl IntoView {
    let bottom = rows as f64 * ROW + 6.0;
    let marks = ticks(axis, 5)
        .into_iter()
        .map(|v| {
            let x = x_of(axis, v);
            view! {
                <line class="grid" x1=x x2=x y1=4.0 y2=bottom/>
                <text class="tick" x=x y=bottom + 14.0 text-anchor="middle">{format!("{v:.0}")}</text>
            }
        })
        .collect_view();
    view! {
        {marks}
        <text class="tick" x=(LEFT + WIDTH - RIGHT) / 2.0 y=bottom + AXIS - 6.0 text-anchor="middle">{title}</text>
    }
}

/// Each estimate as a dot with its 95% interval as a bar, in percent.
#[component]
pub fn IntervalPlot(title: &'static str, rows: Vec<IntervalRow>) -> impl IntoView {
    let finite = |v: f64| v.is_finite().then_some(v);
    let low = rows.iter().filter_map(|r| finite(r.interval.low).or(finite(r.interval.estimate))).fold(1.0f64, f64::min);
    let high = rows.iter().filter_map(|r| finite(r.interval.high).or(finite(r.interval.estimate))).fold(0.0f64, f64::max);
    let axis = percent_axis((low, high));
    let height = rows.len() as f64 * ROW + AXIS + 10.0;
    let described: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {:.1} % (95 % interval {:.1} to {:.1})", r.label, 100.0 * r.interval.estimate, 100.0 * r.interval.low, 100.0 * r.interval.high))
        .collect();
    let marks = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let y = i as f64 * ROW + ROW / 2.0 + 4.0;
            let clamp = |v: f64| x_of(axis, (100.0 * v).clamp(axis.0, axis.1));
            view! {
                <text class="tick" x=LEFT - 8.0 y=y + 4.0 text-anchor="end">{r.label.clone()}</text>
                <line x1=clamp(r.interval.low) x2=clamp(r.interval.high) y1=y y2=y stroke=r.color stroke-width="3"/>
                <line x1=clamp(r.interval.low) x2=clamp(r.interval.low) y1=y - 6.0 y2=y + 6.0 stroke=r.color stroke-width="2"/>
                <line x1=clamp(r.interval.high) x2=clamp(r.interval.high) y1=y - 6.0 y2=y + 6.0 stroke=r.color stroke-width="2"/>
                <circle cx=clamp(r.interval.estimate) cy=y r="5" fill=r.color/>
            }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>{title} " " <span class="unit">"(%, dot: estimate, bar: 95 % interval)"</span></figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {height}") role="img" aria-label=format!("{title}: {}", described.join("; "))>
                {x_axis(axis, rows.len(), "Survival (%)")}
                {marks}
            </svg>
        </figure>
    }
}

/// One metric with two values (fractions): the clinicians' and the policy's.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedRate {
    pub label: &'static str,
    pub clinicians: f64,
    pub policy: f64,
}

/// Paired horizontal bars in percent: clinicians (first colour) and the policy.
#[component]
pub fn PairedBars(title: &'static str, rows: Vec<PairedRate>, colors: (&'static str, &'static str), names: (&'static str, String)) -> impl IntoView {
    let high = rows.iter().flat_map(|r| [r.clinicians, r.policy]).fold(0.0f64, f64::max);
    let axis = percent_axis((0.0, high));
    let height = rows.len() as f64 * ROW + AXIS + 10.0;
    let described: Vec<String> =
        rows.iter().map(|r| format!("{}: {} {:.1} %, {} {:.1} %", r.label, names.0, 100.0 * r.clinicians, names.1, 100.0 * r.policy)).collect();
    let bars = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let top = i as f64 * ROW + 6.0;
            let bar = |value: f64, offset: f64, color: &'static str| {
                let width = x_of(axis, 100.0 * value) - LEFT;
                view! {
                    <rect x=LEFT y=top + offset width=width.max(0.5) height=10.0 fill=color/>
                    <text class="tick" x=LEFT + width + 4.0 y=top + offset + 9.0>{format!("{:.1}", 100.0 * value)}</text>
                }
            };
            view! {
                <text class="tick" x=LEFT - 8.0 y=top + 15.0 text-anchor="end">{r.label}</text>
                {bar(r.clinicians, 0.0, colors.0)}
                {bar(r.policy, 11.0, colors.1)}
            }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>
                {title} " " <span class="unit">"(% of decisions)"</span> " "
                <span class="key" style:color=colors.0>{format!("■ {}", names.0)}</span> " "
                <span class="key" style:color=colors.1>{format!("■ {}", names.1)}</span>
            </figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {height}") role="img" aria-label=format!("{title}: {}", described.join("; "))>
                {x_axis(axis, rows.len(), "Decisions (%)")}
                {bars}
            </svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::percent_axis;

    #[test]
    fn the_percent_axis_rounds_out_to_tens_inside_0_to_100() {
        assert_eq!(percent_axis((0.587, 0.868)), (50.0, 90.0));
        assert_eq!(percent_axis((0.0, 0.144)), (0.0, 20.0));
        assert_eq!(percent_axis((0.99, 1.0)), (90.0, 100.0));
        assert_eq!(percent_axis((0.0, 0.0)), (0.0, 10.0));
    }
}
