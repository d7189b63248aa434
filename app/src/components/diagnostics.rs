use leptos::prelude::*;
use sepsis_core::protocol::RequestBody;

use crate::state::{AppState, WorkerStatus};
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
    view! {
        <details class="card diagnostics" data-test="diagnostics">
            <summary>"Diagnostics"</summary>
            <p>"Worker: " <span data-test="worker-status">{status}</span></p>
            <p>"Restarts after a crash: " <span data-test="restart-count">{move || state.restarts.get().len()}</span></p>
            <button type="button" data-test="crash-drill"
                on:click=move |_| { link.with_value(|l| l.send(RequestBody::DiagnosticPanic)); }>
                "Crash drill: make the worker panic"
            </button>
        </details>
    }
}
