//! Answering `CohortReport`: a decision at every step of every patient of
//! the cohort, by the world-model planner or an LLM agent, then the report
//! against the clinicians' decisions (`sepsis_core::eval::cohort_report`,
//! the code `sepsis report` runs natively). Progress after each batch of
//! decisions; `Cancel` is read between them.

use std::cell::RefCell;
use std::rc::Rc;

use sepsis_core::action::Action;
use sepsis_core::agent::decision::{Decision, Simulator};
use sepsis_core::agent::runtime::WorldModelSimulator;
use sepsis_core::baselines::ai_clinician::AiClinician;
use sepsis_core::eval::cohort_report::cohort_report;
use sepsis_core::planner::{choose, situation_of, step_histories, MpcConfig};
use sepsis_core::protocol::{AgentKind, CohortReportRequest, ErrorKind, Event, EventBody, ReportDecider, RequestId, WorkerError};
use sepsis_core::simulation::CourseStep;

use crate::agent::{cancelled, drive, logged_practice, proposer, yield_now};
use crate::{post, WorkerState};

/// The manifest's AI Clinician: its clusters are the report's states and the
/// planner's support.
pub const SUPPORT_FILE: &str = "ai-clinician.json";
/// Planner decisions per batch between progress events (one batch of
/// rollouts: 25 actions x members each).
const PLANNER_BATCH: usize = 16;

pub(crate) async fn handle(state: &Rc<RefCell<WorkerState>>, id: RequestId, request: CohortReportRequest) {
    let fail = |kind: ErrorKind, message: String| post(&Event { id: Some(id), body: EventBody::Error(WorkerError { kind, message }) });
    let start = js_sys::Date::now();
    let cohort = request.cohort;
    if cohort.patients.iter().any(|p| p.steps.is_empty()) || cohort.patients.is_empty() {
        return fail(ErrorKind::InvalidRequest, "the cohort needs at least one patient, each with at least one step".into());
    }
    let support = match support(state) {
        Ok(support) => support,
        Err((kind, message)) => return fail(kind, message),
    };
    let simulator = match crate::simulator::simulator(state).await {
        Ok(simulator) => simulator,
        Err((kind, message)) => return fail(kind, message),
    };
    let total = cohort.steps();
    let progress = |decided: usize| post(&Event::reply(id, EventBody::ReportProgress { decided, total }));
    progress(0);
    let decided: Result<Option<Vec<Action>>, String> = match request.decider {
        ReportDecider::Planner => planner_decisions(state, id, &cohort, &simulator.cpu, &support, progress).await,
        ReportDecider::Agent(agent) => agent_decisions(state, id, agent, &cohort, &simulator.cpu, request.seed, progress).await,
    };
    let decisions = match decided {
        Ok(Some(decisions)) => decisions,
        Ok(None) => return post(&Event::reply(id, EventBody::Cancelled { events: Vec::new(), elapsed_ms: js_sys::Date::now() - start })),
        Err(message) => return fail(ErrorKind::Internal, message),
    };
    match cohort_report(&request.decider.name(), &cohort, &decisions, &support, u64::from(request.seed)) {
        Ok(report) => post(&Event::reply(id, EventBody::CohortReported { report, elapsed_ms: js_sys::Date::now() - start })),
        Err(e) => fail(ErrorKind::InvalidRequest, e.to_string()),
    }
}

/// The planner's decision at every step, oldest first, a batch at a time;
/// `None` when cancelled.
async fn planner_decisions(
    state: &Rc<RefCell<WorkerState>>,
    id: RequestId,
    cohort: &sepsis_core::cohort::Cohort,
    model: &sepsis_core::world_model::WorldModel,
    support: &AiClinician,
    progress: impl Fn(usize),
) -> Result<Option<Vec<Action>>, String> {
    let histories: Vec<_> = cohort.patients.iter().flat_map(step_histories).collect();
    let situations: Vec<_> = histories.iter().map(situation_of).collect();
    let mut actions = Vec::with_capacity(histories.len());
    for (chunk_h, chunk_s) in histories.chunks(PLANNER_BATCH).zip(situations.chunks(PLANNER_BATCH)) {
        if cancelled(state, id) {
            return Ok(None);
        }
        actions.extend(choose(model, support, chunk_h, chunk_s, &MpcConfig::default()).map_err(|e| format!("the planner failed: {e}"))?);
        progress(actions.len());
        yield_now().await;
    }
    Ok(Some(actions))
}

/// One full decision of the LLM agent at every step, oldest first; `None`
/// when cancelled.
async fn agent_decisions(
    state: &Rc<RefCell<WorkerState>>,
    id: RequestId,
    agent: AgentKind,
    cohort: &sepsis_core::cohort::Cohort,
    model: &sepsis_core::world_model::WorldModel,
    seed: u32,
    progress: impl Fn(usize),
) -> Result<Option<Vec<Action>>, String> {
    let mut actions = Vec::with_capacity(cohort.steps());
    for patient in &cohort.patients {
        let course: Vec<CourseStep> = patient.steps.iter().map(|s| CourseStep { values: s.values.clone(), action: s.action }).collect();
        for end in 1..=course.len() {
            let mut proposer = proposer(state, agent).map_err(|(_, message)| message)?;
            let logged = logged_practice(state, agent, &course[..end]).map_err(|(_, message)| message)?;
            let mut world_model = WorldModelSimulator { model, samples: 16, seed };
            let tool: Option<&mut dyn Simulator> = if agent.can_simulate() { Some(&mut world_model) } else { None };
            match drive(state, id, Decision::new(&mut proposer, tool, &course[..end], logged.as_ref()), |_| {}).await? {
                Some(trace) => actions.push(trace.prescription),
                None => return Ok(None),
            }
            progress(actions.len());
        }
    }
    Ok(Some(actions))
}

/// The AI Clinician from the verified model files, parsed on first use.
pub(crate) fn support(state: &Rc<RefCell<WorkerState>>) -> Result<Rc<AiClinician>, (ErrorKind, String)> {
    if let Some(support) = state.borrow().support.clone() {
        return Ok(support);
    }
    let parsed: AiClinician = {
        let state = state.borrow();
        let file = state
            .models
            .iter()
            .find(|m| m.file.name == SUPPORT_FILE)
            .ok_or_else(|| (ErrorKind::ModelsNotLoaded, format!("the support clusters ({SUPPORT_FILE}) are not loaded: load the models first")))?;
        serde_json::from_slice(&file.bytes).map_err(|e| (ErrorKind::Internal, format!("{SUPPORT_FILE}: {e}")))?
    };
    let support = Rc::new(parsed);
    state.borrow_mut().support = Some(support.clone());
    Ok(support)
}
