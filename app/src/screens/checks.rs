use leptos::prelude::*;

use crate::components::{AgentCheck, SimulationCheck};

/// Self-checks on a fixed, made-up patient: proof that simulation and the
/// agent run on this machine, and on which compute path.
#[component]
pub fn ChecksScreen() -> impl IntoView {
    view! {
        <SimulationCheck/>
        <AgentCheck/>
    }
}
