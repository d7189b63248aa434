//! SepsisAgent Web: the user interface. It renders state and sends requests;
//! every computation happens in the worker (`worker/`).

mod components;
mod course;
mod screens;
mod state;
mod worker_link;

use leptos::prelude::*;
use send_wrapper::SendWrapper;

use components::{Diagnostics, ErrorList};
use screens::{BedsideScreen, ChecksScreen, CohortScreen, PatientScreen, ReportScreen, StartScreen};
use state::{AppState, Screen};
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
        <Navigation/>
        <main>
            {move || match state.screen.get() {
                Screen::Start => view! { <StartScreen/> }.into_any(),
                Screen::Cohort => view! { <CohortScreen/> }.into_any(),
                Screen::Bedside => view! { <BedsideScreen/> }.into_any(),
                Screen::Patient => view! { <PatientScreen/> }.into_any(),
                Screen::Report => view! { <ReportScreen/> }.into_any(),
                Screen::Checks => view! { <ChecksScreen/> }.into_any(),
            }}
            <ErrorList/>
            <Diagnostics/>
        </main>
    }
}

/// The screens, as buttons (one page: nothing is loaded when switching).
#[component]
fn Navigation() -> impl IntoView {
    let state = expect_context::<AppState>();
    let item = move |screen: Screen, label: &'static str, test: &'static str| {
        let disabled = move || screen == Screen::Patient && state.selection.with(Option::is_none);
        view! {
            <button type="button" data-test=test aria-current=move || (state.screen.get() == screen).then_some("page")
                disabled=disabled on:click=move |_| state.screen.set(screen)>{label}</button>
        }
    };
    view! {
        <nav class="screens" aria-label="Screens">
            {item(Screen::Start, "Start", "nav-start")}
            {item(Screen::Cohort, "Cohort", "nav-cohort")}
            {item(Screen::Bedside, "Bedside entry", "nav-bedside")}
            {item(Screen::Patient, "Patient", "nav-patient")}
            {item(Screen::Report, "Cohort report", "nav-report")}
            {item(Screen::Checks, "Self-checks", "nav-checks")}
        </nav>
    }
}

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
