//! The propose-simulate-refine loop live for the open patient and step: the
//! agent's streamed reasoning, each simulation it asked for as it arrives,
//! then its prescription next to what the clinician gave, with the
//! guideline flags and how it was reached. The grid below draws the
//! simulated course of each.

use leptos::prelude::*;
use sepsis_core::agent::decision::TraceEvent;
use sepsis_core::agent::observation::rule_code;
use sepsis_core::cohort::Patient;
use sepsis_core::guideline::Rule;
use sepsis_core::protocol::{AgentKind, RecommendRequest, RequestBody};

use super::export::{download, print, TraceExport, NOTICE};
use crate::course::course_until;
use crate::state::{AgentRun, AppState, ModelStatus, Selection};
use crate::Link;

fn flag_list(rules: &[Rule]) -> impl IntoView {
    let items = if rules.is_empty() {
        vec![view! { <li class="flag-none">"No guideline flags"</li> }.into_any()]
    } else {
        rules.iter().map(|r| view! { <li class="flag" data-test="guideline-flag">{r.explain()}</li> }.into_any()).collect()
    };
    view! { <ul class="flags">{items}</ul> }
}

fn codes(rules: &[Rule]) -> String {
    if rules.is_empty() {
        "none".into()
    } else {
        rules.iter().map(|r| rule_code(*r)).collect::<Vec<_>>().join(" ")
    }
}

#[component]
pub fn RecommendPanel(patient: Patient, step: usize) -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let selection = Selection { patient: patient.id.clone(), step };
    let given = patient.steps[step].action;
    let course = course_until(&patient, step);
    let (id, export_course) = (patient.id.clone(), course.clone());
    // Whether the agent's run is about this patient and step.
    let here = {
        let selection = selection.clone();
        Memo::new(move |_| state.agent.with(|run| run.of.as_ref() == Some(&selection)))
    };
    let ready = move || state.models.get() == ModelStatus::Ready;
    let running = move || state.agent.with(|run| run.running);
    let ask = move |_| {
        let request = RecommendRequest { course: course.clone(), agent: AgentKind::Agent, seed: 1 };
        let id = link.with_value(|l| l.send(RequestBody::Recommend(request)));
        state.agent.set(AgentRun { running: true, request: Some(id), of: Some(selection.clone()), ..AgentRun::default() });
    };
    let cancel = move |_| link.with_value(|l| l.cancel_agent());
    let simulations = move || {
        if !here.get() {
            return None;
        }
        Some(state.agent.with(|run| {
            run.steps
                .iter()
                .filter_map(|event| match event {
                    TraceEvent::Simulated { candidates, flags } => Some(
                        candidates
                            .iter()
                            .zip(flags)
                            .map(|(c, f)| {
                                let map = c.bands.iter().find(|b| b.feature == "map").map(|b| format!("MAP {:.0} ({:.0}–{:.0})", b.p50, b.p10, b.p90)).unwrap_or_default();
                                view! {
                                    <li data-test="agent-simulation">
                                        <strong>{c.action.to_string()}</strong>
                                        {format!(
                                            " simulated 4 h ahead: survival {:.0} % (± {:.0} across the ensemble), {map} mmHg, flags {}; {}",
                                            100.0 * c.survival,
                                            100.0 * c.disagreement,
                                            codes(f),
                                            c.logged_transitions.map_or("4-h values forecast by the GRU ensemble".to_string(), |n| format!("4-h values drawn from {n} logged transitions, survival reckoning the best supported treatment at each later step"))
                                        )}
                                    </li>
                                }
                            })
                            .collect_view()
                            .into_any(),
                    ),
                    TraceEvent::Malformed { error } => Some(view! { <li class="warning">{format!("Rejected turn: {error}")}</li> }.into_any()),
                    _ => None,
                })
                .collect_view()
        }))
    };
    let export = move |_| {
        let text = state.agent.with_untracked(|run| {
            run.done.as_ref().map(|done| {
                let export = TraceExport { notice: NOTICE, patient: &id, step, course: &export_course, clinician_action: given, recommendation: done };
                serde_json::to_string_pretty(&export).expect("plain data")
            })
        });
        if let Some(text) = text {
            if let Err(e) = download(&format!("sepsisagent-{id}-step{step}.json"), "application/json", &text) {
                state.errors.update(|list| list.push(sepsis_core::protocol::WorkerError { kind: sepsis_core::protocol::ErrorKind::Internal, message: format!("the trace could not be saved: {e}") }));
            }
        }
    };
    let outcome = move || {
        if !here.get() {
            return None;
        }
        state.agent.with(|run| {
            if run.cancelled {
                return Some(view! { <p data-test="agent-cancelled">"Cancelled: no prescription was made."</p> }.into_any());
            }
            run.done.as_ref().map(|done| {
                let trace = &done.trace;
                let agrees = trace.prescription == given;
                view! {
                    <div class="prescription" data-test="recommendation">
                        <div class="compare">
                            <div>
                                <h4>"Agent's prescription"</h4>
                                <p class="action" data-test="agent-prescription" data-fallback=trace.fallback.is_some().to_string()>{trace.prescription.to_string()}</p>
                                {trace.fallback.clone().map(|reason| view! { <p class="warning">{format!("Safe default, because: {reason}")}</p> })}
                                {flag_list(&trace.flags)}
                            </div>
                            <div>
                                <h4>"Clinician gave"</h4>
                                <p class="action" data-test="clinician-action">{given.to_string()}</p>
                                <p>{if agrees { "Same as the agent." } else { "Different from the agent." }}</p>
                            </div>
                        </div>
                        <details data-test="agent-observation">
                            <summary>"What the agent read about this patient"</summary>
                            <pre>{trace.observation.clone()}</pre>
                        </details>
                        <p class="note" data-test="agent-timing">{format!(
                            "{} tool calls, {} rejected turns; {} tokens written, {} read; {:.1} s on this device.",
                            trace.tool_calls, trace.malformed, done.generated_tokens, done.prompt_tokens, done.elapsed_ms / 1000.0
                        )}</p>
                        <button type="button" data-test="export-json" on:click=export.clone()>"Download the trace (JSON)"</button>
                        <button type="button" data-test="print-report" on:click=|_| print()>"Print the report"</button>
                    </div>
                }
                .into_any()
            })
        })
    };
    let text = move || if here.get() { state.agent.with(|run| run.text.clone()) } else { String::new() };
    view! {
        <section class="card wide" data-test="recommend-panel">
            <h3>"Recommendation for this step"</h3>
            <p class="note">
                "The agent (SmolLM2-135M with a LoRA adapter trained on patient dynamics, then to imitate the world-model planner, then by reinforcement learning in the world model; see docs/results.md for how well it does) reads the course and what clinicians gave in similar logged states, proposes treatments among those clinicians gave there often enough to be in support (where the world model has seen them), simulates them in the world model (where the first 4 h are drawn from logged transitions, the survival shown reckons the best supported treatment at each later step, planned over the logged outcomes), then prescribes. It cannot contradict what it was shown: its first words, MAP and lactate low, high or at target, are written from the values, and it may prescribe only a treatment it simulated, with the survival its note names. Decision support for research, not a medical device: weigh the simulated evidence yourself."
            </p>
            <button type="button" data-test="recommend" disabled=move || !ready() || running() on:click=ask>"Ask the agent"</button>
            <button type="button" data-test="cancel-recommendation" disabled=move || !running() on:click=cancel>"Cancel"</button>
            {move || (!ready()).then(|| view! { <span class="note">" The models are still loading (see Start)."</span> })}
            <pre class="agent-text" data-test="agent-text" aria-live="polite">{text}</pre>
            <ul class="simulations">{simulations}</ul>
            {outcome}
        </section>
    }
}
