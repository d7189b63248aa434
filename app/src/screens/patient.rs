//! One patient: the course up to the chosen step as timeline charts (with
//! the treatment given beneath) or a table, then the agent's recommendation
//! and the treatment grid for that step.

use leptos::prelude::*;
use sepsis_core::cohort::schema::FEATURES;
use sepsis_core::cohort::{Outcome, Patient};

use super::recommend::RecommendPanel;
use super::plan::PlanBuilder;
use super::treatment_grid::TreatmentGrid;
use crate::components::charts::{ActionStrip, Chart, ChartView, Line, BLUE};
use crate::course::{hour_of, STEP_HOURS};
use crate::state::{AppState, Screen, Selection};

/// One chart of the timeline: a schema feature, how it is titled, and the
/// clinical threshold drawn across it, if any.
pub struct TimelineChart {
    pub key: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub reference: Option<(f64, &'static str)>,
}

const fn chart(key: &'static str, title: &'static str, unit: &'static str, reference: Option<(f64, &'static str)>) -> TimelineChart {
    TimelineChart { key, title, unit, reference }
}

pub const TIMELINE: [TimelineChart; 5] = [
    chart("map", "Mean arterial pressure", "mmHg", Some((65.0, "target 65"))),
    chart("hr", "Heart rate", "/min", None),
    chart("lactate", "Lactate", "mmol/L", Some((2.0, "2 mmol/L"))),
    chart("urine_ml_4h", "Urine output", "mL per 4 h", None),
    chart("sofa", "SOFA score", "points", None),
];

pub fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Survived => "survived",
        Outcome::Died => "died",
        Outcome::Unknown => "unknown (still in care)",
    }
}

/// The patient's observed values of one feature up to `step`.
pub fn observed(patient: &Patient, key: &str, step: usize) -> Vec<(f64, Option<f64>)> {
    patient.steps.iter().take(step + 1).enumerate().map(|(i, s)| (hour_of(i), s.value(key))).collect()
}

#[component]
pub fn PatientScreen() -> impl IntoView {
    let state = expect_context::<AppState>();
    let patient = Memo::new(move |_| {
        let selection = state.selection.get()?;
        state.cohort.with(|c| c.cohort.patient(&selection.patient).cloned())
    });
    move || match (patient.get(), state.selection.get()) {
        (Some(patient), Some(selection)) => view! { <PatientView patient=patient selection=selection/> }.into_any(),
        _ => view! {
            <section class="card wide">
                <p>"No patient is open. Choose one from the cohort."</p>
                <button type="button" on:click=move |_| state.screen.set(Screen::Cohort)>"Go to the cohort"</button>
            </section>
        }
        .into_any(),
    }
}

#[component]
fn PatientView(patient: Patient, selection: Selection) -> impl IntoView {
    let state = expect_context::<AppState>();
    let step = selection.step;
    let last = patient.steps.len() - 1;
    let hours = (0.0, hour_of(step).max(STEP_HOURS));
    let charts = TIMELINE
        .iter()
        .map(|c| {
            let chart = Chart {
                title: c.title.to_string(),
                unit: c.unit.to_string(),
                hours,
                lines: vec![Line { label: "observed".into(), color: BLUE, dashed: false, points: observed(&patient, c.key, step) }],
                bands: vec![],
                reference: c.reference.map(|(v, l)| (v, l.to_string())),
                now: None,
            };
            view! { <ChartView chart=chart/> }
        })
        .collect_view();
    let given: Vec<_> = patient.steps.iter().take(step + 1).enumerate().map(|(i, s)| (hour_of(i), s.action)).collect();
    let id = patient.id.clone();
    let choose_step = move |e: leptos::ev::Event| {
        if let Ok(step) = event_target_value(&e).parse::<usize>() {
            state.what_if.set(Vec::new());
            state.selection.set(Some(Selection { patient: id.clone(), step }));
        }
    };
    let step_options = (0..=last).map(|i| view! { <option value=i.to_string() selected=i == step>{format!("step {i} ({:.0} h)", hour_of(i))}</option> }).collect_view();
    view! {
        <section class="card wide" data-test="patient-screen" data-patient=patient.id.clone()>
            <div class="patient-head">
                <button type="button" data-test="back-to-cohort" on:click=move |_| state.screen.set(Screen::Cohort)>"← Cohort"</button>
                <h2>{format!("Patient {}", patient.id)}</h2>
                <span>{format!("{} steps of 4 h; outcome: {}", patient.steps.len(), outcome_text(patient.outcome))}</span>
                <label>"Decide at " <select data-test="decision-step" on:change=choose_step>{step_options}</select></label>
            </div>
            <p class="note">"The course up to the chosen step: what the agent and the world model see. Later steps are hidden."</p>
            <div class="timeline" data-test="timeline">
                {charts}
                <ActionStrip hours=hours steps=given/>
            </div>
            <details class="values-table">
                <summary>"All values as a table"</summary>
                <ValuesTable patient=patient.clone() step=step/>
            </details>
        </section>
        <RecommendPanel patient=patient.clone() step=step/>
        <TreatmentGrid patient=patient.clone() step=step/>
        <PlanBuilder patient=patient step=step/>
    }
}

#[component]
fn ValuesTable(patient: Patient, step: usize) -> impl IntoView {
    let head = (0..=step).map(|i| view! { <th scope="col">{format!("{:.0} h", hour_of(i))}</th> }).collect_view();
    let rows = FEATURES
        .iter()
        .enumerate()
        .map(|(f, feature)| {
            let cells = patient.steps.iter().take(step + 1).map(|s| view! { <td>{s.values[f].map(|v| format!("{v}")).unwrap_or_else(|| "—".into())}</td> }).collect_view();
            view! { <tr><th scope="row">{format!("{} ({})", feature.label, feature.unit)}</th>{cells}</tr> }
        })
        .collect_view();
    let actions = patient.steps.iter().take(step + 1).map(|s| view! { <td>{format!("F{} V{}", s.action.fluid, s.action.vaso)}</td> }).collect_view();
    view! {
        <div class="table-scroll">
            <table data-test="values-table">
                <thead><tr><th scope="col">"Feature"</th>{head}</tr></thead>
                <tbody>{rows}<tr><th scope="row">"Treatment (fluid, vasopressor level)"</th>{actions}</tr></tbody>
            </table>
        </div>
    }
}
