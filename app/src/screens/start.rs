use leptos::prelude::*;

use super::cohort::open_demo;
use crate::components::{ComputeStatus, ModelStatusPanel, PrivacyStatement};
use crate::state::AppState;
use crate::Link;

/// What the tool is and is not, where data goes, what computes, and one
/// click to the demo cohort.
#[component]
pub fn StartScreen() -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    view! {
        <section class="card wide intro" data-test="start-screen">
            <h2>"Propose, simulate, refine"</h2>
            <p>
                "For a septic patient's current step, an LLM agent proposes fluid and vasopressor doses, simulates each in a learned world model of ICU patients, reads the simulated course with its uncertainty and the guideline checks, then prescribes. You see every candidate's simulated course and can simulate any treatment yourself."
            </p>
            <p>
                <strong>"What it is not: "</strong>
                "a medical device, or a substitute for clinical judgement. It is research decision support; its models were trained on simulated ICU-Sepsis patients."
            </p>
            <button type="button" class="primary" data-test="start-demo" on:click=move |_| open_demo(state, link)>
                "Open the demo cohort"
            </button>
        </section>
        <PrivacyStatement/>
        <ComputeStatus/>
        <ModelStatusPanel/>
    }
}
