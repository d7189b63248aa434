//! Every one of the 25 treatments held for 24 h, simulated in the world
//! model for the open patient and step: a 5 x 5 fluid-by-vasopressor grid
//! coloured by predicted survival, with the clinician's and the agent's
//! choices marked and the cells far from the data flagged. Picking a cell
//! (what-if) draws its simulated course as fan charts (10/50/90 %) next to
//! the observed course.

use leptos::prelude::*;
use sepsis_core::action::{Action, LEVELS};
use sepsis_core::agent::observation::rule_code;
use sepsis_core::cohort::Patient;
use sepsis_core::guideline::{violations, Situation};
use sepsis_core::protocol::{RequestBody, Simulated};
use sepsis_core::simulation::{CandidateStep, SimulateRequest, KEY_FEATURES};

use super::patient::{observed, TIMELINE};
use crate::components::charts::{viridis, Band, Chart, ChartView, Line, BLUE, GREEN, ORANGE, PURPLE};
use crate::course::{course_until, hour_of, step_span, STEP_HOURS};
use crate::state::{AppState, ModelStatus, Selection, Sweep};
use crate::Link;

/// Steps of 4 h simulated (24 h, the world model's window).
pub const HORIZON: usize = 6;
/// Draws per candidate and ensemble member.
pub const SAMPLES: usize = 16;
/// A cell is marked far from the data when its ensemble disagreement is
/// this many times the grid's median: the members then differ much more
/// about it than about this patient's typical treatment.
const FAR_FROM_DATA: f64 = 1.5;
/// Observed steps drawn before the simulated ones.
const HISTORY_STEPS: usize = 6;

/// Why a treatment is drawn: its mark on the grid, its name and its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Clinician,
    Agent,
    WhatIf,
}

impl Role {
    /// The roles of `action` on this grid (the clinician's and the agent's
    /// choice may be the same cell).
    fn of(action: Action, given: Action, prescribed: Option<Action>) -> Vec<Role> {
        [(action == given).then_some(Role::Clinician), (Some(action) == prescribed).then_some(Role::Agent)].into_iter().flatten().collect()
    }

    fn mark(self) -> &'static str {
        match self {
            Role::Clinician => "C",
            Role::Agent => "A",
            Role::WhatIf => "",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Role::Clinician => "clinician's choice",
            Role::Agent => "agent's prescription",
            Role::WhatIf => "what-if",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Role::Clinician => ORANGE,
            Role::Agent => GREEN,
            Role::WhatIf => PURPLE,
        }
    }
}

/// Start the sweep for `selection` unless it is already running or done.
fn ensure_sweep(state: AppState, link: Link, patient: &Patient, selection: &Selection) {
    if state.sweep.with_untracked(|s| &s.of == selection && s.request.is_some()) {
        return;
    }
    let request = SimulateRequest::full_sweep(course_until(patient, selection.step), HORIZON, SAMPLES, 1);
    let id = link.with_value(|l| l.send(RequestBody::Simulate(request)));
    state.sweep.set(Sweep { request: Some(id), of: selection.clone(), steps_done: 0, result: None });
}

#[component]
pub fn TreatmentGrid(patient: Patient, step: usize) -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let selection = Selection { patient: patient.id.clone(), step };
    {
        let (patient, selection) = (patient.clone(), selection.clone());
        Effect::new(move |_| {
            if state.models.get() == ModelStatus::Ready {
                ensure_sweep(state, link, &patient, &selection);
            }
        });
    }
    let course = course_until(&patient, step);
    let situation = Situation::of_course(&course);
    let given = patient.steps[step].action;
    let sel = selection.clone();
    let result = Memo::new(move |_| state.sweep.with(|s| if s.of == sel { s.result.clone() } else { None }));
    let sel = selection.clone();
    let progress = move || state.sweep.with(|s| (s.of == sel && s.result.is_none() && s.request.is_some()).then_some(s.steps_done));
    let sel = selection.clone();
    let prescribed = Memo::new(move |_| state.agent.with(|run| if run.of.as_ref() == Some(&sel) { run.done.as_ref().map(|d| d.trace.prescription) } else { None }));
    let grid = move || {
        result.get().map(|done| {
            view! { <Grid done=*done situation=situation given=given prescribed=prescribed.get()/> }
        })
    };
    let compared = move || {
        let mut actions = vec![given];
        actions.extend(prescribed.get());
        actions.extend(state.what_if.get());
        let mut unique = Vec::new();
        for a in actions {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        unique
    };
    let fans = {
        let patient = patient.clone();
        move || {
            let done = result.get()?;
            Some(
                compared()
                    .into_iter()
                    .map(|action| {
                        let role = Role::of(action, given, prescribed.get()).first().copied().unwrap_or(Role::WhatIf);
                        let candidate = done.simulation.steps.first().and_then(|s| s.candidates.iter().position(|c| c.action == action))?;
                        let title = format!("{action} ({})", role.label());
                        Some(view! { <FanRow patient=patient.clone() step=step done=(*done).clone() candidate=candidate title=title color=role.color() situation=situation/> })
                    })
                    .collect_view(),
            )
        }
    };
    view! {
        <section class="card wide" data-test="treatment-grid">
            <h3>"All 25 treatments, simulated for 24 h"</h3>
            <p class="note">"Each treatment held for 6 steps of 4 h in the world model (5 ensemble members x 16 samples). Pick a cell to see its simulated course (what-if). Predicted survival depends on how far ahead it is simulated: compare cells with each other, not with the agent's 4-hour simulations above."</p>
            {move || progress().map(|steps| view! { <p class="progress" data-test="sweep-progress">{format!("Simulating: step {steps} of {HORIZON}")}</p> })}
            {grid}
            <div class="fans" data-test="fan-charts">{fans}</div>
        </section>
    }
}

#[component]
fn Grid(done: Simulated, situation: Situation, given: Action, prescribed: Option<Action>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let last = done.simulation.steps.last().map(|s| s.candidates.clone()).unwrap_or_default();
    let all: Vec<f64> = last.iter().map(|c| c.survival).collect();
    let (low, high) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    let mut spread: Vec<f64> = last.iter().map(|c| c.disagreement).collect();
    spread.sort_by(f64::total_cmp);
    let median = spread.get(spread.len() / 2).copied().unwrap_or(0.0);
    let header = (0..LEVELS).map(|v| view! { <th scope="col">{format!("vasopressor {v}")}</th> }).collect_view();
    let rows = (0..LEVELS)
        .map(|fluid| {
            let cells = (0..LEVELS)
                .map(|vaso| {
                    let action = Action { fluid, vaso };
                    let (s, spread) = last.iter().find(|c| c.action == action).map_or((0.0, 0.0), |c| (c.survival, c.disagreement));
                    let t = if high > low { (s - low) / (high - low) } else { 0.5 };
                    let far = spread > FAR_FROM_DATA * median;
                    let flags = violations(&situation, action);
                    let roles = Role::of(action, given, prescribed);
                    let marks: Vec<&str> = roles.iter().map(|r| r.mark()).collect();
                    let label = format!(
                        "{action}: predicted survival {:.1} %{}{}{}",
                        100.0 * s,
                        if flags.is_empty() { String::new() } else { format!(", flags {}", flags.iter().map(|r| rule_code(*r)).collect::<Vec<_>>().join(" ")) },
                        if far { ", far from the data" } else { "" },
                        roles.iter().map(|r| format!(", {}", r.label())).collect::<String>(),
                    );
                    let picked = move || state.what_if.with(|w| w.contains(&action));
                    let toggle = move |_| state.what_if.update(|w| if let Some(i) = w.iter().position(|a| *a == action) { w.remove(i); } else { w.push(action); });
                    view! {
                        <td>
                            <button
                                type="button"
                                class="cell"
                                class:far=far
                                class:picked=picked
                                // style: sets CSS properties through the DOM, which the
                                // page's Content-Security-Policy allows (style attributes it blocks).
                                style:background-color=viridis(t)
                                style:color=if t < 0.6 { "#fff" } else { "#000" }
                                aria-label=label.clone()
                                aria-pressed=move || picked().to_string()
                                title=label
                                data-test="grid-cell"
                                data-action=format!("{fluid}-{vaso}")
                                data-far=far.to_string()
                                on:click=toggle
                            >
                                <span class="survival">{format!("{:.1}", 100.0 * s)}</span>
                                <span class="marks">{marks.join(" ")}{if far { " ⚠" } else { "" }}</span>
                                {(!flags.is_empty()).then(|| view! { <span class="cell-flags">{flags.iter().map(|r| rule_code(*r)).collect::<Vec<_>>().join(" ")}</span> })}
                            </button>
                        </td>
                    }
                })
                .collect_view();
            view! { <tr><th scope="row">{format!("IV fluid {fluid}")}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="table-scroll">
        <table class="grid" data-test="survival-grid">
            <caption>{format!(
                "Predicted survival (%) after 24 h, coloured from lowest ({:.1} %, dark) to highest ({:.1} %, yellow) on this grid. C: clinician's choice. A: agent's prescription. ⚠: far from the data (ensemble disagreement over {FAR_FROM_DATA}x this grid's median): trust it less. G1/G2/R1-R3: guideline flags. Ran on {} in {:.0} ms.",
                100.0 * low, 100.0 * high, done.ran_on(), done.elapsed_ms
            )}</caption>
            <thead><tr><th></th>{header}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
        </div>
    }
}

/// One simulated candidate's course (a held treatment or a plan): a fan
/// chart per key feature, and the guideline flags of each step's treatment
/// (after the first step, judged on the simulated median course).
#[component]
pub fn FanRow(patient: Patient, step: usize, done: Simulated, candidate: usize, title: String, color: &'static str, situation: Situation) -> impl IntoView {
    let course: Vec<_> = done.simulation.course(candidate).cloned().collect();
    let now = hour_of(step);
    let first = step.saturating_sub(HISTORY_STEPS - 1);
    let hours = (hour_of(first), now + HORIZON as f64 * STEP_HOURS);
    let charts = TIMELINE
        .iter()
        .filter(|c| KEY_FEATURES.contains(&c.key))
        .map(|c| {
            let key = c.key;
            let history: Vec<_> = observed(&patient, key, step).into_iter().skip(first).collect();
            let last_seen = history.last().and_then(|p| p.1);
            let band_at = |i: usize| course[i].bands.iter().find(|b| b.feature == *key).cloned();
            let mut band: Vec<(f64, f64, f64)> = last_seen.map(|v| vec![(now, v, v)]).unwrap_or_default();
            let mut median: Vec<(f64, Option<f64>)> = vec![(now, last_seen)];
            for (i, _) in course.iter().enumerate() {
                if let Some(b) = band_at(i) {
                    let hour = now + (i + 1) as f64 * STEP_HOURS;
                    band.push((hour, b.p10, b.p90));
                    median.push((hour, Some(b.p50)));
                }
            }
            let chart = Chart {
                title: c.title.to_string(),
                unit: c.unit.to_string(),
                hours,
                lines: vec![
                    Line { label: "observed".into(), color: BLUE, dashed: false, points: history },
                    Line { label: "simulated median".into(), color, dashed: true, points: median },
                ],
                bands: vec![Band { color, points: band }],
                reference: c.reference.map(|(v, l)| (v, l.to_string())),
                now: Some(now),
            };
            view! { <ChartView chart=chart/> }
        })
        .collect_view();
    let end = course.last();
    let flag_text = plan_flags(&situation, &course);
    let first_action = course.first().map_or(Action::NONE, |c| c.action);
    view! {
        <div class="fan-row" data-test="fan-row" data-action=format!("{}-{}", first_action.fluid, first_action.vaso)>
            <h4>
                <span class="swatch" style:background-color=color></span>
                {title}
            </h4>
            <p>{format!(
                "Predicted survival {:.1} %, ensemble disagreement {:.2}; {flag_text}. Shaded: 10–90 % of the simulated values; dashed: median; solid: observed. {}",
                100.0 * end.map(|c| c.survival).unwrap_or(0.0), end.map(|c| c.disagreement).unwrap_or(0.0), provenance(&course)
            )}</p>
            <div class="fan-charts">{charts}</div>
        </div>
    }
}

/// Where the simulated course comes from: the world model draws the first
/// 4 h from logged transitions where it holds enough of them for this state
/// and treatment, and forecasts with its GRU ensemble otherwise.
fn provenance(course: &[CandidateStep]) -> String {
    match course.first().and_then(|c| c.logged_transitions) {
        Some(n) => format!("First 4 h drawn from {n} logged transitions of patients in similar states given this treatment; later steps forecast by the GRU ensemble."),
        None => "Every step forecast by the GRU ensemble.".to_string(),
    }
}

/// The guideline flags of each simulated step's treatment: the first step
/// in the patient's situation now, later ones in the simulated median (MAP,
/// lactate) after the step before, with that step's vasopressor.
fn plan_flags(now: &Situation, course: &[CandidateStep]) -> String {
    let median = |c: &CandidateStep, key: &str| c.bands.iter().find(|b| b.feature == key).map(|b| b.p50);
    let mut found = Vec::new();
    for (i, c) in course.iter().enumerate() {
        let situation = match i.checked_sub(1).map(|p| &course[p]) {
            None => *now,
            Some(before) => Situation {
                map: median(before, "map"),
                lactate: median(before, "lactate"),
                fluid_balance_ml: None,
                previous_vaso: Some(before.action.vaso),
                first_step: false,
            },
        };
        for rule in violations(&situation, c.action) {
            found.push(format!("{}: {}", step_span(i), rule.explain()));
        }
    }
    if found.is_empty() { "no guideline flags".into() } else { format!("guideline flags: {}", found.join("; ")) }
}
