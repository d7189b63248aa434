//! What-if plans: a treatment for each of the next three 4-hour steps, the
//! last one held to 24 h, simulated in the world model for the open patient
//! and step, drawn with its uncertainty and the guideline flags of each step.

use leptos::prelude::*;
use sepsis_core::action::Action;
use sepsis_core::cohort::Patient;
use sepsis_core::guideline::Situation;
use sepsis_core::protocol::RequestBody;
use sepsis_core::simulation::SimulateRequest;

use super::treatment_grid::{FanRow, HORIZON, SAMPLES};
use crate::components::charts::PURPLE;
use crate::course::{course_until, step_span, STEP_HOURS};
use crate::state::{AppState, ModelStatus, PlanRun, Selection};
use crate::Link;

/// Steps a plan sets; the last is held for the rest of the horizon.
const PLAN_STEPS: usize = 3;

fn describe(plan: &[Action]) -> String {
    let steps: Vec<String> = plan.iter().map(|a| format!("{}/{}", a.fluid, a.vaso)).collect();
    format!("Plan (fluid/vasopressor per 4 h): {}, then held to {} h", steps.join(" → "), HORIZON * STEP_HOURS as usize)
}

#[component]
pub fn PlanBuilder(patient: Patient, step: usize) -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let selection = Selection { patient: patient.id.clone(), step };
    let course = course_until(&patient, step);
    let situation = Situation::of_course(&course);
    let given = patient.steps[step].action;
    let choices: [RwSignal<Action>; PLAN_STEPS] = std::array::from_fn(|_| RwSignal::new(given));
    let selects = (0..PLAN_STEPS)
        .map(|i| {
            let id = format!("plan-step-{i}");
            let label = step_span(i);
            let options = Action::all().map(|a| view! { <option value=a.index().to_string()>{a.to_string()}</option> }).collect_view();
            let choose = move |ev| {
                if let Ok(action) = event_target_value(&ev).parse().map_err(|_| ()).and_then(|i| Action::from_index(i).map_err(|_| ())) {
                    choices[i].set(action);
                }
            };
            view! {
                <div class="form-row">
                    <label for=id.clone()>{label}</label>
                    <select id=id.clone() data-test=id prop:value=move || choices[i].get().index().to_string() on:change=choose>{options}</select>
                </div>
            }
        })
        .collect_view();
    let sel = selection.clone();
    let simulate = move |_| {
        let plan: Vec<Action> = choices.iter().map(|c| c.get_untracked()).collect();
        let request = SimulateRequest { history: course.clone(), candidates: vec![plan.clone()], horizon: HORIZON, samples: SAMPLES, seed: 1 };
        let id = link.with_value(|l| l.send(RequestBody::Simulate(request)));
        state.plan.set(PlanRun { request: Some(id), of: sel.clone(), plan, result: None });
    };
    let sel = selection.clone();
    let ours = Memo::new(move |_| state.plan.with(|p| (p.of == sel).then(|| p.clone())));
    let running = move || ours.with(|p| p.as_ref().is_some_and(|p| p.request.is_some() && p.result.is_none()));
    let result = move || {
        let run = ours.get()?;
        let done = run.result?;
        Some(view! {
            <div data-test="plan-result">
                <FanRow patient=patient.clone() step=step done=*done candidate=0 title=describe(&run.plan) color=PURPLE situation=situation/>
            </div>
        })
    };
    view! {
        <section class="card wide" data-test="plan-builder">
            <h3>"What-if: a short plan"</h3>
            <p class="note">"Choose a treatment for each of the next three 4-hour steps; the last is held to 24 h. The world model simulates the plan (5 members x 16 samples) with its 10–90 % range and flags each step's treatment against the guideline."</p>
            {selects}
            <div class="actions">
                <button type="button" data-test="plan-simulate" disabled=move || running() || state.models.get() != ModelStatus::Ready on:click=simulate>"Simulate this plan"</button>
                {move || running().then(|| view! { <span class="progress" role="status">"Simulating the plan…"</span> })}
            </div>
            {result}
        </section>
    }
}
