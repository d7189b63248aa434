use leptos::prelude::*;
use sepsis_core::agent::decision::TraceEvent;
use sepsis_core::agent::grammar::render_action;
use sepsis_core::agent::observation::rule_flag;
use sepsis_core::protocol::{AgentKind, RecommendRequest, RequestBody};
use sepsis_core::simulation::reference_course;

use crate::state::{AgentRun, AppState, ModelStatus};
use crate::Link;

/// Runs one decision of the agent (the base LLM with the world model as its
/// simulate tool) on the fixed, made-up reference patient, streaming what
/// the LLM writes. The trained agent and the full recommendation screen
/// replace this check as they land.
#[component]
pub fn AgentCheck() -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let ready = move || state.models.get() == ModelStatus::Ready;
    let running = move || state.agent.with(|run| run.running);
    let run = move |_| {
        let request = RecommendRequest { course: reference_course(), agent: AgentKind::LlmZeroShotWm, seed: 1 };
        let id = link.with_value(|l| l.send(RequestBody::Recommend(request)));
        state.agent.set(AgentRun { running: true, request: Some(id), ..AgentRun::default() });
    };
    let cancel = move |_| link.with_value(|l| l.cancel_agent());
    let steps = move || {
        state.agent.with(|run| {
            run.steps
                .iter()
                .filter_map(|event| match event {
                    TraceEvent::Simulated { candidates, .. } => Some(format!(
                        "Simulated: {}",
                        candidates.iter().map(|c| format!("{} → survival {:.0} %", render_action(c.action), 100.0 * c.survival)).collect::<Vec<_>>().join("; ")
                    )),
                    TraceEvent::Malformed { error } => Some(format!("Rejected turn: {error}")),
                    _ => None,
                })
                .map(|line| view! { <li data-test="agent-step">{line}</li> })
                .collect_view()
        })
    };
    let outcome = move || {
        state.agent.with(|run| {
            run.done.as_ref().map(|done| {
                let trace = &done.trace;
                let flags: Vec<&str> = trace.flags.iter().map(|r| rule_flag(*r)).collect();
                let how = match &trace.fallback {
                    Some(reason) => format!(" — safe default, because: {reason}"),
                    None => String::new(),
                };
                view! {
                    <p data-test="agent-prescription" data-fallback=trace.fallback.is_some().to_string()>
                        {format!("Prescription: {}{how}", render_action(trace.prescription))}
                    </p>
                    <p>{format!("Guideline flags: {}", if flags.is_empty() { "none".to_string() } else { flags.join(", ") })}</p>
                    <p data-test="agent-timing">{format!("{} tokens chosen by the model, {} read, {} tool calls, {} rejected turns, {:.1} s.", done.generated_tokens, done.prompt_tokens, trace.tool_calls, trace.malformed, done.elapsed_ms / 1000.0)}</p>
                }
            })
        })
    };
    view! {
        <section class="card wide" data-test="agent-check">
            <h2>"Agent check"</h2>
            <p>"One decision by the untrained base LLM with the world model as its simulation tool, for the same made-up patient, entirely in this browser. It writes a short thought, then its tool calls to the grammar (it chooses the tool, the levels and the candidates). Untrained, its choices are not yet clinical judgement."</p>
            <button type="button" data-test="recommend-reference" disabled=move || !ready() || running() on:click=run>
                "Ask the agent"
            </button>
            <button type="button" data-test="cancel-recommendation" disabled=move || !running() on:click=cancel>
                "Cancel"
            </button>
            {move || state.agent.with(|run| run.cancelled.then(|| view! { <p data-test="agent-cancelled">"Cancelled: no prescription was made."</p> }))}
            <pre class="agent-text" data-test="agent-text">{move || state.agent.with(|run| run.text.clone())}</pre>
            <ul>{steps}</ul>
            {outcome}
        </section>
    }
}
