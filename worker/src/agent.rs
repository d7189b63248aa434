//! Answering `Recommend`: the propose-simulate-refine loop in the worker,
//! streaming the LLM's text, each turn, simulation and the prescription as
//! they happen. The LLM and the world model come from the verified model
//! store; simulations run on the CPU path inside the loop.

use std::cell::RefCell;
use std::rc::Rc;

use sepsis_core::agent::decision::{decide, Simulator};
use sepsis_core::agent::observation::SYSTEM_PROMPT;
use sepsis_core::agent::runtime::{LlmProposer, WorldModelSimulator};
use sepsis_core::llm::generate::{Flow, Llm, Sampling};
use sepsis_core::protocol::{AgentKind, ErrorKind, Event, EventBody, RecommendRequest, Recommended, RequestId, WorkerError};

use crate::{post, WorkerState};

/// The manifest's LLM file.
pub const LLM_FILE: &str = "SmolLM2-135M-Instruct.Q8_0.gguf";
/// Longest turn the agent may write (tokens).
const MAX_TURN_TOKENS: usize = 160;

pub(crate) async fn handle(state: &Rc<RefCell<WorkerState>>, id: RequestId, request: RecommendRequest) {
    let fail = |kind: ErrorKind, message: String| post(&Event { id: Some(id), body: EventBody::Error(WorkerError { kind, message }) });
    if request.course.is_empty() || request.course.iter().any(|s| s.values.len() != sepsis_core::cohort::schema::FEATURES.len()) {
        return fail(ErrorKind::InvalidRequest, "the course needs at least one step with one value per schema feature".into());
    }
    let llm = match llm(state) {
        Ok(llm) => llm,
        Err((kind, message)) => return fail(kind, message),
    };
    let simulator = match crate::simulator::simulator(state).await {
        Ok(simulator) => simulator,
        Err((kind, message)) => return fail(kind, message),
    };
    let start = js_sys::Date::now();
    let mut proposer = match LlmProposer::new(&llm, SYSTEM_PROMPT, Sampling::GREEDY, MAX_TURN_TOKENS) {
        Ok(proposer) => proposer,
        Err(e) => return fail(ErrorKind::Internal, e.to_string()),
    };
    proposer.on_token = Some(Box::new(move |text: &str| {
        post(&Event::reply(id, EventBody::AgentToken { text: text.to_string() }));
        Flow::Continue
    }));
    let mut world_model = WorldModelSimulator { model: &simulator.cpu, samples: 16, seed: request.seed };
    let tool: Option<&mut dyn Simulator> = match request.agent {
        AgentKind::LlmZeroShotWm => Some(&mut world_model),
        AgentKind::LlmZeroShot => None,
    };
    let result = decide(&mut proposer, tool, &request.course, &mut |event| post(&Event::reply(id, EventBody::AgentStep(event.clone()))));
    match result {
        Ok(trace) => {
            let done = Recommended { trace, elapsed_ms: js_sys::Date::now() - start, generated_tokens: proposer.generated_tokens };
            post(&Event::reply(id, EventBody::Recommended(done)));
        }
        Err(e) => fail(ErrorKind::Internal, format!("the decision failed: {e}")),
    }
}

/// The LLM, built on first use from the verified GGUF.
fn llm(state: &Rc<RefCell<WorkerState>>) -> Result<Rc<Llm>, (ErrorKind, String)> {
    if let Some(llm) = state.borrow().llm.clone() {
        return Ok(llm);
    }
    let llm = {
        let state = state.borrow();
        let file = state.models.iter().find(|m| m.file.name == LLM_FILE).ok_or_else(|| (ErrorKind::ModelsNotLoaded, format!("the LLM ({LLM_FILE}) is not loaded: load the models first")))?;
        Llm::from_gguf(&mut std::io::Cursor::new(&file.bytes)).map_err(|e| (ErrorKind::Internal, format!("{LLM_FILE}: {e}")))?
    };
    let llm = Rc::new(llm);
    state.borrow_mut().llm = Some(llm.clone());
    Ok(llm)
}
