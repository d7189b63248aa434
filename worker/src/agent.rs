//! Answering `Recommend`: the propose-simulate-refine loop in the worker,
//! streaming the LLM's text, each turn, simulation and the prescription as
//! they happen. The LLM and the world model come from the verified model
//! store; simulations run on the CPU path inside the loop.
//!
//! The decision advances one token (or one tool call) at a time and yields
//! to the worker's event loop in between, so a `Cancel` message is read and
//! honoured before the next token. The system prompts' KV caches are built
//! once per loaded model and kept for every later decision.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use sepsis_core::agent::decision::{Decision, Progress, Simulator, Trace};
use sepsis_core::agent::observation::{system_prompt, LoggedPractice, ObservationFormat};
use sepsis_core::agent::runtime::{system_session, Decoding, LlmProposer, WorldModelSimulator};
use sepsis_core::llm::generate::{Llm, Sampling, Session};
use sepsis_core::llm::model::LoraAdapter;
use sepsis_core::llm::tokenizer::{system_turn, user_turn};
use sepsis_core::protocol::{AgentKind, ErrorKind, Event, EventBody, LlmSpeed, RecommendRequest, Recommended, RequestId, WorkerError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{post, WorkerState};

/// The manifest's LLM file.
pub const LLM_FILE: &str = "SmolLM2-135M-Instruct.Q8_0.gguf";
/// The manifest's trained agent adapter (LoRA on the LLM).
pub const ADAPTER_FILE: &str = "agent.safetensors";

/// The LLM (base, and with the trained adapter) and their system prompts,
/// each read once.
pub(crate) struct LoadedLlm {
    base: Arc<Llm>,
    trained: Option<Arc<Llm>>,
    /// What the adapter was trained to read.
    trained_format: ObservationFormat,
    /// Keyed by (trained, simulate tool offered).
    systems: Vec<((bool, bool), Session)>,
}

impl LoadedLlm {
    /// What `agent`'s LLM reads: the adapter's format for the trained
    /// agent, the course alone for the base model.
    fn format(&self, agent: AgentKind) -> ObservationFormat {
        if agent.trained() {
            self.trained_format
        } else {
            ObservationFormat::Course
        }
    }
}

pub(crate) async fn handle(state: &Rc<RefCell<WorkerState>>, id: RequestId, request: RecommendRequest) {
    let fail = |kind: ErrorKind, message: String| post(&Event { id: Some(id), body: EventBody::Error(WorkerError { kind, message }) });
    if request.course.is_empty() || request.course.iter().any(|s| s.values.len() != sepsis_core::cohort::schema::FEATURES.len()) {
        return fail(ErrorKind::InvalidRequest, "the course needs at least one step with one value per schema feature".into());
    }
    let simulator = match crate::simulator::simulator(state).await {
        Ok(simulator) => simulator,
        Err((kind, message)) => return fail(kind, message),
    };
    let start = js_sys::Date::now();
    let can_simulate = request.agent.can_simulate();
    let mut proposer = match proposer(state, request.agent) {
        Ok(proposer) => proposer,
        Err((kind, message)) => return fail(kind, message),
    };
    let logged = match logged_practice(state, request.agent, &request.course) {
        Ok(logged) => logged,
        Err((kind, message)) => return fail(kind, message),
    };
    let mut world_model = WorldModelSimulator { model: &simulator.cpu, samples: 16, seed: request.seed };
    let tool: Option<&mut dyn Simulator> = if can_simulate { Some(&mut world_model) } else { None };
    let mut events = Vec::new();
    let streamed = drive(state, id, Decision::new(&mut proposer, tool, &request.course, logged.as_ref()), |progress| match progress {
        Progress::Text(text) => post(&Event::reply(id, EventBody::AgentToken { text })),
        Progress::Event(event) => {
            post(&Event::reply(id, EventBody::AgentStep(event.clone())));
            events.push(event);
        }
        Progress::Done(_) => {}
    })
    .await;
    match streamed {
        Ok(Some(trace)) => {
            let done = Recommended { trace, elapsed_ms: js_sys::Date::now() - start, generated_tokens: proposer.generated_tokens, prompt_tokens: proposer.prompt_tokens };
            post(&Event::reply(id, EventBody::Recommended(done)));
        }
        Ok(None) => post(&Event::reply(id, EventBody::Cancelled { events, elapsed_ms: js_sys::Date::now() - start })),
        Err(message) => fail(ErrorKind::Internal, message),
    }
}

/// Run one decision to its end, handing every step of progress to
/// `on_progress` and yielding in between; `None` if request `id` was
/// cancelled first.
pub(crate) async fn drive(state: &Rc<RefCell<WorkerState>>, id: RequestId, mut decision: Decision<'_>, mut on_progress: impl FnMut(Progress)) -> Result<Option<Trace>, String> {
    loop {
        if cancelled(state, id) {
            return Ok(None);
        }
        match decision.advance().map_err(|e| format!("the decision failed: {e}"))? {
            Progress::Done(trace) => return Ok(Some(trace)),
            progress => on_progress(progress),
        }
        yield_now().await;
    }
}

/// A proposer for LLM agent `agent`, starting from its system prompt (read once per model).
pub(crate) fn proposer(state: &Rc<RefCell<WorkerState>>, agent: AgentKind) -> Result<LlmProposer, (ErrorKind, String)> {
    Ok(LlmProposer::new(system(state, agent)?, Sampling::GREEDY, Decoding::DEFAULT))
}

/// What `agent` is shown of the clinicians' logged practice in states like
/// the course's newest: the support clusters' counts where its adapter was
/// trained to read them, else nothing. After [`proposer`] (which loads the LLM).
pub(crate) fn logged_practice(state: &Rc<RefCell<WorkerState>>, agent: AgentKind, course: &[sepsis_core::simulation::CourseStep]) -> Result<Option<LoggedPractice>, (ErrorKind, String)> {
    match observation_format(state, agent) {
        ObservationFormat::Course => Ok(None),
        ObservationFormat::CourseAndLoggedPractice => {
            let newest = course.last().ok_or_else(|| (ErrorKind::InvalidRequest, "an empty course".to_string()))?;
            Ok(Some(crate::report::support(state)?.practice(&newest.values)))
        }
    }
}

/// [`LoadedLlm::format`], the course alone before the LLM is loaded.
fn observation_format(state: &Rc<RefCell<WorkerState>>, agent: AgentKind) -> ObservationFormat {
    state.borrow().llm.as_ref().map_or(ObservationFormat::Course, |loaded| loaded.format(agent))
}

/// `MeasureLlm`: prefill and decode timings on this device.
pub(crate) fn measure(state: &Rc<RefCell<WorkerState>>, id: RequestId, decode_tokens: usize) {
    let fail = |kind: ErrorKind, message: String| post(&Event { id: Some(id), body: EventBody::Error(WorkerError { kind, message }) });
    if let Err((kind, message)) = system(state, AgentKind::LlmZeroShotWm) {
        return fail(kind, message);
    }
    let llm = state.borrow().llm.as_ref().expect("loaded above").base.clone();
    let llm_error = |e: candle_core::Error| fail(ErrorKind::Internal, format!("LLM: {e}"));
    let clock = js_sys::Date::now;
    let mut session = llm.session();
    let start = clock();
    let system_prompt_tokens = match session.read(&system_turn(&system_prompt(true, None))) {
        Ok(n) => n,
        Err(e) => return llm_error(e),
    };
    let system_prompt_ms = clock() - start;
    let observation = sepsis_core::agent::observation::render_observation(&sepsis_core::simulation::reference_course(), true, None);
    let start = clock();
    let prompt_tokens = match session.read(&user_turn(&observation)) {
        Ok(n) => n,
        Err(e) => return llm_error(e),
    };
    let prompt_ms = clock() - start;
    let start = clock();
    // No stop sequence and no end of turn: exactly `decode_tokens` tokens.
    let mut generator = sepsis_core::llm::generate::Generator::new(Sampling::GREEDY, decode_tokens, &[]).ignoring_end_of_turn();
    let mut written = 0;
    loop {
        match session.next_token(&mut generator) {
            Ok(Some(_)) => written += 1,
            Ok(None) => break,
            Err(e) => return llm_error(e),
        }
    }
    let decode_ms = clock() - start;
    post(&Event::reply(id, EventBody::LlmSpeed(LlmSpeed { system_prompt_tokens, system_prompt_ms, prompt_tokens, prompt_ms, decode_tokens: written, decode_ms })));
}

/// A `Cancel` for `request`: noted, and acted on at the work's next step.
pub(crate) fn cancel(state: &Rc<RefCell<WorkerState>>, request: RequestId) {
    state.borrow_mut().cancelled.insert(request);
}

/// Whether `request` was asked to stop (the note is used up).
pub(crate) fn cancelled(state: &Rc<RefCell<WorkerState>>, request: RequestId) -> bool {
    state.borrow_mut().cancelled.remove(&request)
}

/// Let the worker read its messages (a `Cancel`) before going on. A message
/// to ourselves is a macrotask without `setTimeout`'s minimum delay.
pub(crate) async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let Ok(channel) = web_sys::MessageChannel::new() else {
            let _ = resolve.call0(&JsValue::NULL);
            return;
        };
        let (receiver, sender) = (channel.port1(), channel.port2());
        // The closure owns the channel, so it lives until the message lands.
        let wake = Closure::once_into_js(move || {
            drop(channel);
            let _ = resolve.call0(&JsValue::NULL);
        });
        receiver.set_onmessage(Some(wake.unchecked_ref()));
        let _ = sender.post_message(&JsValue::NULL);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// The session that has read the system prompt for this agent (model and
/// tool set), built on first use from the verified files.
fn system(state: &Rc<RefCell<WorkerState>>, agent: AgentKind) -> Result<Session, (ErrorKind, String)> {
    if state.borrow().llm.is_none() {
        let loaded = {
            let state = state.borrow();
            let file = state.models.iter().find(|m| m.file.name == LLM_FILE).ok_or_else(|| (ErrorKind::ModelsNotLoaded, format!("the LLM ({LLM_FILE}) is not loaded: load the models first")))?;
            let base = Llm::from_gguf(&mut std::io::Cursor::new(&file.bytes)).map_err(|e| (ErrorKind::Internal, format!("{LLM_FILE}: {e}")))?;
            let (trained, trained_format) = match state.models.iter().find(|m| m.file.name == ADAPTER_FILE) {
                Some(file) => {
                    let adapter = LoraAdapter::from_safetensors(&file.bytes).map_err(|e| (ErrorKind::Internal, format!("{ADAPTER_FILE}: {e}")))?;
                    (Some(Arc::new(base.with_adapter(&adapter).map_err(|e| (ErrorKind::Internal, format!("{ADAPTER_FILE}: {e}")))?)), adapter.observation)
                }
                None => (None, ObservationFormat::Course),
            };
            LoadedLlm { base: Arc::new(base), trained, trained_format, systems: Vec::new() }
        };
        state.borrow_mut().llm = Some(loaded);
    }
    // The support threshold the prompt states, where this agent is shown the logged practice.
    let practice = match observation_format(state, agent) {
        ObservationFormat::Course => None,
        ObservationFormat::CourseAndLoggedPractice => Some(crate::report::support(state)?.min_support()),
    };
    let mut state = state.borrow_mut();
    let loaded = state.llm.as_mut().expect("set above");
    let key = (agent.trained(), agent.can_simulate());
    if let Some((_, session)) = loaded.systems.iter().find(|(k, _)| *k == key) {
        return Ok(session.clone());
    }
    let llm = if agent.trained() {
        loaded.trained.clone().ok_or_else(|| (ErrorKind::ModelsNotLoaded, format!("the trained agent's adapter ({ADAPTER_FILE}) is not in the model manifest")))?
    } else {
        loaded.base.clone()
    };
    let session = system_session(&llm, &system_prompt(agent.can_simulate(), practice)).map_err(|e| (ErrorKind::Internal, e.to_string()))?;
    loaded.systems.push((key, session.clone()));
    Ok(session)
}
