//! SepsisAgent Web: the user interface. It renders state and sends requests;
//! every computation happens in the worker (`worker/`).

mod components;
mod state;
mod worker_link;

use leptos::prelude::*;
use send_wrapper::SendWrapper;

use components::{AgentCheck, ComputeStatus, Diagnostics, ErrorList, ModelStatusPanel, PrivacyStatement, SimulationCheck};
use state::AppState;
use worker_link::WorkerLink;

/// The worker link is single-threaded (it holds JS objects); the wrapper lets
/// it live in a `StoredValue` that components can copy.
pub type Link = StoredValue<SendWrapper<WorkerLink>>;

#[component]
fn App() -> impl IntoView {
    let state = AppState::new();
    let link: Link = StoredValue::new(SendWrapper::new(WorkerLink::start(state)));
    provide_context(state);
    provide_context(link);
    view! {
        <header class="banner">
            <h1>"SepsisAgent Web"</h1>
            <p class="disclaimer" data-test="disclaimer">
                "Research decision support for sepsis fluid and vasopressor treatment. "
                <strong>"Not a medical device"</strong>
                ": recommendations are simulated evidence for clinicians to weigh, never orders."
            </p>
        </header>
        <main>
            <PrivacyStatement/>
            <ComputeStatus/>
            <ModelStatusPanel/>
            <SimulationCheck/>
            <AgentCheck/>
            <ErrorList/>
            <Diagnostics/>
        </main>
    }
}

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
