use leptos::prelude::*;
use sepsis_core::action::Action;
use sepsis_core::protocol::RequestBody;
use sepsis_core::simulation::{reference_course, SimulateRequest};

use crate::state::{AppState, ModelStatus, SimulationStatus};
use crate::Link;

const HORIZON: usize = 6;

/// The candidates of the check: nothing, fluids, fluids with a vasopressor.
fn check_request() -> SimulateRequest {
    SimulateRequest {
        history: reference_course(),
        candidates: vec![vec![Action::NONE], vec![Action { fluid: 3, vaso: 0 }], vec![Action { fluid: 2, vaso: 2 }]],
        horizon: HORIZON,
        samples: 16,
        seed: 1,
    }
}

/// Runs the world model in the worker on a fixed, made-up patient and shows
/// what came back: proof that simulation works on this machine, and which
/// compute path ran it.
#[component]
pub fn SimulationCheck() -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let ready = move || state.models.get() == ModelStatus::Ready;
    let running = move || matches!(state.simulation.get(), SimulationStatus::Running { .. });
    let run = move |_| {
        let request = link.with_value(|l| l.send(RequestBody::Simulate(check_request())));
        state.simulation.set(SimulationStatus::Running { request, steps: 0, horizon: HORIZON });
    };
    let result = move || match state.simulation.get() {
        SimulationStatus::Idle => None,
        SimulationStatus::Running { steps, horizon, .. } => Some(view! {
            <p data-test="simulation-progress">{format!("Simulating: step {steps} of {horizon}")}</p>
        }.into_any()),
        SimulationStatus::Done(done) => {
            let last = done.simulation.steps.last().cloned();
            let rows = last.map(|step| step.candidates).unwrap_or_default().into_iter().map(|c| {
                let map = c.bands.iter().find(|b| b.feature == "map").cloned();
                let map = map.map(|b| format!("{:.0} ({:.0}–{:.0})", b.p50, b.p10, b.p90)).unwrap_or_default();
                view! {
                    <tr data-test="simulation-row">
                        <td>{format!("fluid {} / vasopressor {}", c.action.fluid, c.action.vaso)}</td>
                        <td>{map}</td>
                        <td data-test="simulation-survival">{format!("{:.1} %", 100.0 * c.survival)}</td>
                        <td>{format!("{:.3}", c.disagreement)}</td>
                    </tr>
                }
            }).collect_view();
            let fallback = (!done.fallback_reason.is_empty()).then(|| view! { <p class="warning">{done.fallback_reason.clone()}</p> });
            Some(view! {
                <p data-test="simulation-backend">{format!("Ran on {} in {:.0} ms.", done.ran_on(), done.elapsed_ms)}</p>
                {fallback}
                <table class="simulation">
                    <caption>"After 24 h (6 steps of 4 h), 5 members x 16 samples each"</caption>
                    <thead><tr><th>"Held treatment"</th><th>"MAP, mmHg: median (10–90 %)"</th><th>"Predicted survival"</th><th>"Ensemble disagreement (z)"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }.into_any())
        }
    };
    view! {
        <section class="card wide" data-test="simulation-check">
            <h2>"World-model check"</h2>
            <p>"Simulates a fixed, made-up hypotensive patient (MAP 58 mmHg, lactate 4.1 mmol/L) under three held treatments, entirely in this browser."</p>
            <button type="button" data-test="simulate-reference" disabled=move || !ready() || running() on:click=run>
                "Simulate the reference patient"
            </button>
            {result}
        </section>
    }
}

