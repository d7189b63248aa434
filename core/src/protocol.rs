//! Messages between the app (main thread) and the worker.
//!
//! Every [`Request`] carries an id chosen by the app; every [`Event`] the
//! worker sends in answer carries the same id, so the UI can route streamed
//! events. Events not caused by a request (the start-up `Ready`) have no id.
//! Both cross the `postMessage` boundary via serde-wasm-bindgen.

use serde::{Deserialize, Serialize};

use crate::cohort::csv_format::Report;
use crate::cohort::Cohort;
use crate::compute::{BackendKind, BackendReport};
use crate::report::CohortReport;
use crate::agent::decision::{Trace, TraceEvent};
use crate::simulation::{CourseStep, SimulateRequest, Simulation, SimulationStep};

pub type RequestId = u32;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub body: RequestBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RequestBody {
    /// Probe WebGPU, run the parity kernel, and choose the compute backend.
    ProbeBackend,
    /// Fetch (or read from the Cache API) every file of the model manifest,
    /// verify it, and report progress.
    LoadModels,
    /// Simulate candidate plans in the world model (needs `LoadModels`
    /// first). Streams a `SimulationStep` per simulated step, then
    /// `Simulated`.
    Simulate(SimulateRequest),
    /// One propose-simulate-refine decision for the newest step of a course
    /// (needs `LoadModels` first). Streams `AgentToken` and `AgentStep`
    /// events as they happen, then `Recommended`.
    Recommend(RecommendRequest),
    /// Stop a running `Recommend` within one token: it answers `Cancelled`
    /// (with the trace so far), then `Done`.
    Cancel { request: RequestId },
    /// Measure the LLM on this device: read the system prompt and the
    /// reference patient's decision prompt, then write `decode_tokens` tokens
    /// greedily. Answers `LlmSpeed` (the browser benchmark uses it).
    MeasureLlm { decode_tokens: usize },
    /// Time the benchmark's full sweep (25 candidates x 16 samples x 6
    /// steps from the reference patient) on this worker alone and with its
    /// rows split across `helpers` helper workers, `repeats` times each
    /// after a warm-up. Answers `SimulationSpeed` (the browser benchmark and
    /// the helpers' parity test use it).
    MeasureSimulation { helpers: usize, repeats: usize },
    /// Validate and read a cohort CSV (the demo file or one the user chose;
    /// it never leaves the device). Answers `CohortLoaded`: the patients
    /// whose rows are all valid, and every problem by row and column.
    LoadCohort { file: String, text: String },
    /// The world model's predicted survival for each course as it stands
    /// (its last step with the treatment given): the cohort list's risk
    /// column. Answers `Risks`, in the courses' order.
    PredictRisks { courses: Vec<Vec<CourseStep>> },
    /// Diagnostics: make the worker panic, so the crash-recovery path (typed
    /// error event, restart, UI notice) can be exercised on demand.
    DiagnosticPanic,
    /// Decide at every step of the cohort's patients and report the
    /// decisions against the clinicians' (`ReportProgress`, then
    /// `CohortReported`); `Cancel` stops it between decisions.
    CohortReport(CohortReportRequest),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The request this event answers; `None` for unsolicited events.
    pub id: Option<RequestId>,
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    /// First message after the worker's wasm has started: requests sent
    /// before it would be lost, so the app waits for this.
    Ready { worker_version: String },
    Backend(BackendReport),
    ModelProgress(ModelProgress),
    ModelVerified(ModelVerified),
    /// Every manifest file is verified and loaded.
    ModelsReady,
    /// One simulated step of every candidate, as soon as it is computed.
    SimulationStep(SimulationStep),
    /// The whole simulation, which compute path ran it, and how long it took.
    Simulated(Simulated),
    /// Text the agent's LLM just wrote.
    AgentToken { text: String },
    /// A turn, simulation, rejection or prescription of the running decision.
    AgentStep(TraceEvent),
    Recommended(Recommended),
    LlmSpeed(LlmSpeed),
    SimulationSpeed(SimulationSpeed),
    CohortLoaded { cohort: Cohort, report: Report },
    /// Predicted probability of surviving the stay, one per course asked.
    Risks { survival: Vec<f64> },
    /// The request was cancelled; what it had done so far.
    Cancelled { events: Vec<TraceEvent>, elapsed_ms: f64 },
    /// Decisions made so far for a cohort report.
    ReportProgress { decided: usize, total: usize },
    CohortReported { report: CohortReport, elapsed_ms: f64 },
    Error(WorkerError),
    /// The request finished (successfully or after an `Error`).
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelSource {
    Network,
    Cache,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelProgress {
    pub file: String,
    pub loaded_bytes: u64,
    pub total_bytes: u64,
    pub source: ModelSource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVerified {
    pub file: String,
    pub role: String,
    pub bytes: u64,
    pub sha256: String,
    pub source: ModelSource,
    /// What the worker read from the file itself (e.g. GGUF architecture and
    /// tensor count), proving it parsed, not just hashed.
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Simulated {
    pub simulation: Simulation,
    pub backend: BackendKind,
    /// Why a faster path did not run it (a WebGPU error, a helper worker's
    /// error); empty otherwise.
    pub fallback_reason: String,
    pub elapsed_ms: f64,
    /// Workers that computed it on the CPU: this one and its simulation
    /// helpers (worker/src/pool.rs); 1 on WebGPU.
    pub workers: usize,
}

impl Simulated {
    /// The compute path as the app says it: "WebGPU", "CPU (wasm SIMD)",
    /// "CPU (wasm SIMD) across 2 workers".
    pub fn ran_on(&self) -> String {
        match self.workers {
            0 | 1 => self.backend.name().to_string(),
            n => format!("{} across {n} workers", self.backend.name()),
        }
    }
}

/// Full-sweep timings on one worker and split across helpers (`MeasureSimulation`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationSpeed {
    pub helpers: usize,
    pub one_worker_ms: Vec<f64>,
    pub pool_ms: Vec<f64>,
    /// `parity_diff` between the two simulations: 0 when identical.
    pub max_difference: f64,
}

/// Which agent decides (docs/agent.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentKind {
    /// The LLM without the simulate tool.
    LlmZeroShot,
    /// The LLM with the world model as its simulate tool.
    LlmZeroShotWm,
    /// The trained agent (the base LLM with the manifest's agent adapter),
    /// with the world model as its simulate tool: what the app recommends with.
    Agent,
    /// The trained agent with the simulate tool removed.
    AgentNoSim,
}

impl AgentKind {
    pub fn can_simulate(self) -> bool {
        matches!(self, AgentKind::LlmZeroShotWm | AgentKind::Agent)
    }

    /// Whether the trained adapter is applied.
    pub fn trained(self) -> bool {
        matches!(self, AgentKind::Agent | AgentKind::AgentNoSim)
    }
}

/// Who decides at each step of a cohort report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportDecider {
    /// The world-model planner (`wm-mpc`, the agent's teacher): seconds for
    /// a whole cohort.
    Planner,
    /// An LLM agent, one full decision per step: seconds per step.
    Agent(AgentKind),
}

impl ReportDecider {
    /// How the report names who decided.
    pub fn name(self) -> String {
        match self {
            ReportDecider::Planner => "World-model planner (wm-mpc)".into(),
            ReportDecider::Agent(AgentKind::Agent) => "Trained agent (with simulation)".into(),
            ReportDecider::Agent(AgentKind::AgentNoSim) => "Trained agent (no simulation)".into(),
            ReportDecider::Agent(AgentKind::LlmZeroShot) => "Untrained LLM (no simulation)".into(),
            ReportDecider::Agent(AgentKind::LlmZeroShotWm) => "Untrained LLM (with simulation)".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CohortReportRequest {
    pub cohort: Cohort,
    pub decider: ReportDecider,
    /// Seeds the agent's simulations and the bootstrap intervals.
    pub seed: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecommendRequest {
    pub course: Vec<CourseStep>,
    pub agent: AgentKind,
    /// Seeds the world model's draws (the LLM decodes greedily).
    pub seed: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommended {
    pub trace: Trace,
    pub elapsed_ms: f64,
    /// Tokens the LLM chose, and tokens it read as prompt (its system prompt
    /// is read once per worker and not counted again).
    pub generated_tokens: usize,
    pub prompt_tokens: usize,
}

/// Prefill and decode timings of the LLM (`MeasureLlm`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmSpeed {
    pub system_prompt_tokens: usize,
    pub system_prompt_ms: f64,
    /// The decision prompt read after the cached system prompt.
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    pub decode_tokens: usize,
    pub decode_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The message could not be decoded as a [`Request`].
    BadRequest,
    /// A model file failed its size or SHA-256 check and was discarded.
    ModelVerification,
    /// A fetch failed or returned a non-success status.
    Network,
    /// The request needs the models: send `LoadModels` first.
    ModelsNotLoaded,
    /// The request's contents are invalid (the message says which part).
    InvalidRequest,
    /// The worker panicked; it must be restarted.
    Panic,
    /// Anything else that went wrong inside the worker.
    Internal,
}

impl Event {
    pub fn reply(id: RequestId, body: EventBody) -> Self {
        Self { id: Some(id), body }
    }

    pub fn error(id: Option<RequestId>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { id, body: EventBody::Error(WorkerError { kind, message: message.into() }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::BackendReport;

    #[test]
    fn a_simulation_says_how_many_workers_shared_it() {
        let done = |backend, workers| Simulated { simulation: Simulation::default(), backend, fallback_reason: String::new(), elapsed_ms: 1.0, workers };
        assert_eq!(done(BackendKind::Cpu, 1).ran_on(), "CPU (wasm SIMD)");
        assert_eq!(done(BackendKind::Cpu, 2).ran_on(), "CPU (wasm SIMD) across 2 workers");
        assert_eq!(done(BackendKind::CpuRelaxedSimd, 2).ran_on(), "CPU (wasm relaxed SIMD) across 2 workers");
        assert_eq!(done(BackendKind::WebGpu, 1).ran_on(), "WebGPU");
    }

    fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(value: &T) -> T {
        serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let simulate = RequestBody::Simulate(crate::simulation::SimulateRequest::full_sweep(crate::simulation::reference_course(), 6, 16, 3));
        let recommend = RequestBody::Recommend(RecommendRequest { course: crate::simulation::reference_course(), agent: AgentKind::Agent, seed: 2 });
        for body in [RequestBody::ProbeBackend, RequestBody::LoadModels, RequestBody::DiagnosticPanic, RequestBody::Cancel { request: 3 }, RequestBody::MeasureLlm { decode_tokens: 32 }, RequestBody::MeasureSimulation { helpers: 1, repeats: 3 }, RequestBody::LoadCohort { file: "c.csv".into(), text: "patient_id\n".into() }, RequestBody::PredictRisks { courses: vec![crate::simulation::reference_course()] }, simulate, recommend] {
            let request = Request { id: 7, body };
            assert_eq!(round_trip(&request), request);
        }
    }

    #[test]
    fn every_event_round_trips() {
        let events = [
            Event { id: None, body: EventBody::Ready { worker_version: "0.1.0".into() } },
            Event::reply(1, EventBody::Backend(BackendReport::cpu("navigator.gpu is not available"))),
            Event::reply(2, EventBody::ModelProgress(ModelProgress { file: "m".into(), loaded_bytes: 5, total_bytes: 10, source: ModelSource::Network })),
            Event::reply(2, EventBody::ModelVerified(ModelVerified { file: "m".into(), role: "llm-base".into(), bytes: 10, sha256: "ab".into(), source: ModelSource::Cache, description: "gguf".into() })),
            Event::reply(2, EventBody::ModelsReady),
            Event::error(Some(3), ErrorKind::ModelVerification, "mismatch"),
            Event::reply(3, EventBody::Done),
            Event::reply(4, EventBody::SimulationStep(SimulationStep { step: 1, candidates: vec![] })),
            Event::reply(4, EventBody::Simulated(Simulated { simulation: Simulation::default(), backend: BackendKind::Cpu, fallback_reason: String::new(), elapsed_ms: 3.5, workers: 2 })),
            Event::reply(4, EventBody::SimulationSpeed(SimulationSpeed { helpers: 1, one_worker_ms: vec![240.0], pool_ms: vec![140.0], max_difference: 0.0 })),
            Event::error(Some(5), ErrorKind::ModelsNotLoaded, "load the models first"),
            Event::reply(6, EventBody::AgentToken { text: " fluid".into() }),
            Event::reply(6, EventBody::AgentStep(TraceEvent::Malformed { error: "no tool call".into() })),
            Event::reply(7, EventBody::LlmSpeed(LlmSpeed { system_prompt_tokens: 300, system_prompt_ms: 900.0, prompt_tokens: 150, prompt_ms: 400.0, decode_tokens: 32, decode_ms: 500.0 })),
            Event::reply(9, EventBody::Risks { survival: vec![0.8, 0.6] }),
            Event::reply(8, EventBody::CohortLoaded { cohort: Cohort::default(), report: Report::default() }),
            Event::reply(6, EventBody::Cancelled { events: vec![TraceEvent::Turn { text: "<simulate>".into() }], elapsed_ms: 12.0 }),
        ];
        for event in events {
            assert_eq!(round_trip(&event), event);
        }
    }

    #[test]
    fn requests_use_a_readable_tagged_form() {
        let json = serde_json::to_value(Request { id: 4, body: RequestBody::LoadModels }).unwrap();
        assert_eq!(json, serde_json::json!({"id": 4, "body": {"type": "LoadModels"}}));
        assert_eq!(BackendReport::cpu("x").chosen, BackendKind::Cpu);
    }

    #[test]
    fn agent_kinds_say_what_they_use() {
        let uses = |k: AgentKind| (k.trained(), k.can_simulate());
        assert_eq!(uses(AgentKind::LlmZeroShot), (false, false));
        assert_eq!(uses(AgentKind::LlmZeroShotWm), (false, true));
        assert_eq!(uses(AgentKind::Agent), (true, true));
        assert_eq!(uses(AgentKind::AgentNoSim), (true, false));
    }
}
