//! The app's reactive state: what the worker has told us so far.

use leptos::prelude::*;
use sepsis_core::compute::BackendReport;
use sepsis_core::agent::decision::TraceEvent;
use sepsis_core::cohort::csv_format::Report;
use sepsis_core::cohort::Cohort;
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
    Running { request: sepsis_core::protocol::RequestId, steps: usize, horizon: usize },
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
    /// The patient and step asked about (`None`: the reference patient).
    pub of: Option<Selection>,
}

/// The screen on show (the app is one page; these are its views).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Start,
    Cohort,
    Bedside,
    Patient,
    Report,
    Checks,
}

/// The cohort in use: the demo file or one the user chose, as the worker
/// read it (only patients whose every row is valid), with what was wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CohortState {
    /// The file being read, while the worker reads it.
    pub loading: Option<String>,
    pub cohort: Cohort,
    pub report: Option<Report>,
    /// The world model's predicted survival by patient id (the list's risk
    /// column), and the request computing it for the listed ids.
    pub survival: std::collections::HashMap<String, f64>,
    pub survival_request: Option<(sepsis_core::protocol::RequestId, Vec<String>)>,
}

/// The patient and the step (0-based) a decision is asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    pub patient: String,
    pub step: usize,
}

/// All 25 held treatments simulated for the selected patient and step:
/// the treatment grid and the what-if fan charts read it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sweep {
    pub request: Option<sepsis_core::protocol::RequestId>,
    /// What was simulated (a new selection starts a new sweep).
    pub of: Selection,
    pub steps_done: usize,
    pub result: Option<Box<Simulated>>,
}

/// A short treatment plan simulated for the selected patient and step
/// (what-if): a different treatment for each of the next steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanRun {
    pub request: Option<sepsis_core::protocol::RequestId>,
    pub of: Selection,
    pub plan: Vec<sepsis_core::action::Action>,
    pub result: Option<Box<Simulated>>,
}

/// The cohort report: who decides, how far it got, and its result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportRun {
    pub request: Option<sepsis_core::protocol::RequestId>,
    pub running: bool,
    /// Stopped by the user before it finished.
    pub cancelled: bool,
    pub decided: usize,
    pub total: usize,
    /// The report and how long it took (ms).
    pub result: Option<Box<(sepsis_core::report::CohortReport, f64)>>,
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
    pub screen: RwSignal<Screen>,
    pub cohort: RwSignal<CohortState>,
    pub selection: RwSignal<Option<Selection>>,
    pub sweep: RwSignal<Sweep>,
    /// Actions the clinician picked on the grid to see their simulated course.
    pub what_if: RwSignal<Vec<sepsis_core::action::Action>>,
    pub report: RwSignal<ReportRun>,
    pub plan: RwSignal<PlanRun>,
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
            screen: RwSignal::new(Screen::Start),
            cohort: RwSignal::new(CohortState::default()),
            selection: RwSignal::new(None),
            sweep: RwSignal::new(Sweep::default()),
            what_if: RwSignal::new(Vec::new()),
            report: RwSignal::new(ReportRun::default()),
            plan: RwSignal::new(PlanRun::default()),
        }
    }
}
