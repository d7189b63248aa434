//! The app's reactive state: what the worker has told us so far.

use leptos::prelude::*;
use sepsis_core::compute::BackendReport;
use sepsis_core::agent::decision::TraceEvent;
use sepsis_core::protocol::{ModelProgress, ModelVerified, Recommended, Simulated, WorkerError};

#[derive(Clone, Debug, PartialEq)]
pub enum WorkerStatus {
    Starting,
    Ready { version: String },
    /// Crashed too often in a short time; the app stopped restarting it.
    GaveUp { reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ModelStatus {
    Waiting,
    Loading(ModelProgress),
    Ready,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum SimulationStatus {
    Idle,
    /// Steps received so far out of the horizon.
    Running { steps: usize, horizon: usize },
    Done(Box<Simulated>),
}

/// A running or finished decision of the agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentRun {
    pub running: bool,
    /// The running request (what `Cancel` names).
    pub request: Option<sepsis_core::protocol::RequestId>,
    /// Stopped by the user before a prescription.
    pub cancelled: bool,
    /// The LLM's text as it streams.
    pub text: String,
    pub steps: Vec<TraceEvent>,
    pub done: Option<Box<Recommended>>,
}

/// One copy in the context; every field is a signal, so the struct is `Copy`.
#[derive(Clone, Copy)]
pub struct AppState {
    pub worker: RwSignal<WorkerStatus>,
    /// How often the worker was restarted after a crash, and why the last time.
    pub restarts: RwSignal<Vec<String>>,
    pub backend: RwSignal<Option<BackendReport>>,
    pub models: RwSignal<ModelStatus>,
    pub verified: RwSignal<Vec<ModelVerified>>,
    pub errors: RwSignal<Vec<WorkerError>>,
    pub simulation: RwSignal<SimulationStatus>,
    pub agent: RwSignal<AgentRun>,
    /// The LLM's measured speed on this device (diagnostics).
    pub llm_speed: RwSignal<Option<sepsis_core::protocol::LlmSpeed>>,
}

impl AppState {
    pub fn new() -> Self {
        Self {
            worker: RwSignal::new(WorkerStatus::Starting),
            restarts: RwSignal::new(Vec::new()),
            backend: RwSignal::new(None),
            models: RwSignal::new(ModelStatus::Waiting),
            verified: RwSignal::new(Vec::new()),
            errors: RwSignal::new(Vec::new()),
            simulation: RwSignal::new(SimulationStatus::Idle),
            agent: RwSignal::new(AgentRun::default()),
            llm_speed: RwSignal::new(None),
        }
    }
}
