use leptos::prelude::*;
use sepsis_core::protocol::RequestBody;

use crate::state::{AppState, ModelStatus, WorkerStatus};
use crate::Link;

/// Worker facts and a crash drill, for support staff and tests.
#[component]
pub fn Diagnostics() -> impl IntoView {
    let state = expect_context::<AppState>();
    let link = expect_context::<Link>();
    let status = move || match state.worker.get() {
        WorkerStatus::Starting => "starting".to_string(),
        WorkerStatus::Ready { version } => format!("ready (version {version})"),
        WorkerStatus::GaveUp { reason } => format!("stopped: {reason}. Reload the page."),
    };
    let speed = move || {
        state.llm_speed.get().map(|s| {
            let rate = |tokens: usize, ms: f64| tokens as f64 / (ms / 1000.0);
            format!(
                "Reading the prompt: {:.0} tokens/s ({} tokens in {:.0} ms); writing: {:.0} tokens/s ({} tokens in {:.0} ms).",
                rate(s.prompt_tokens, s.prompt_ms),
                s.prompt_tokens,
                s.prompt_ms,
                rate(s.decode_tokens, s.decode_ms),
                s.decode_tokens,
                s.decode_ms
            )
        })
    };
    view! {
        <details class="card diagnostics" data-test="diagnostics">
            <summary>"Diagnostics"</summary>
            <p>"Worker: " <span data-test="worker-status">{status}</span></p>
            <p>"Restarts after a crash: " <span data-test="restart-count">{move || state.restarts.get().len()}</span></p>
            <button type="button" data-test="crash-drill"
                on:click=move |_| { link.with_value(|l| l.send(RequestBody::DiagnosticPanic)); }>
                "Crash drill: make the worker panic"
            </button>
            <button type="button" data-test="measure-llm" disabled=move || state.models.get() != ModelStatus::Ready
                on:click=move |_| { link.with_value(|l| l.send(RequestBody::MeasureLlm { decode_tokens: 32 })); }>
                "Measure the agent's LLM on this device"
            </button>
            <p data-test="llm-speed">{speed}</p>
        </details>
    }
}
