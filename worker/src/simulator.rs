//! Answering `Simulate`: the loaded world model on WebGPU when the backend
//! probe chose it, else candle on the CPU, its rows split across helper
//! workers where the machine has the cores (`pool.rs`); any GPU or helper
//! error falls back to this worker's CPU for that request and says why.

use std::cell::RefCell;
use std::rc::Rc;

use sepsis_core::compute::BackendKind;
use sepsis_core::protocol::{ErrorKind, Event, EventBody, RequestId, Simulated, SimulationSpeed, WorkerError};
use sepsis_core::simulation::{reference_course, SimulateRequest};
use sepsis_core::world_model::simulate::{parity_diff, simulate_on_cpu};
use sepsis_core::world_model::WorldModel;

use crate::gpu::GpuContext;
use crate::gpu_world_model::{simulate_on_gpu, GpuWorldModel};
use crate::pool::{helpers_for_this_machine, simulate_with_pool, Pool};
use crate::{post, WorkerState};

/// Manifest file names of the world model.
pub const WEIGHTS: &str = "world-model.safetensors";
pub const CARD: &str = "world-model.json";

pub struct Simulator {
    pub cpu: WorldModel,
    /// The GPU path, or why there is none.
    pub gpu: Result<(GpuContext, GpuWorldModel), String>,
    /// Helper workers for the CPU path, where it is the chosen one and the
    /// machine has cores to spare.
    pub pool: Option<Pool>,
}

impl Simulator {
    /// Build from the verified files; the GPU path only when `want_gpu`.
    pub async fn build(weights: &[u8], card: &str, want_gpu: bool) -> Result<Self, String> {
        let cpu = WorldModel::from_bytes(card, weights.to_vec()).map_err(|e| format!("world model: {e}"))?;
        let gpu = if want_gpu {
            match GpuContext::new().await {
                Ok(context) => GpuWorldModel::upload(&context, weights, &cpu.card).map(|model| (context, model)),
                Err(e) => Err(e),
            }
        } else {
            Err("the backend probe chose the CPU".into())
        };
        let helpers = if want_gpu { 0 } else { helpers_for_this_machine() };
        let pool = if helpers == 0 {
            None
        } else {
            // Without helpers the simulation is slower, not wrong: say why and go on.
            Pool::spawn(helpers, weights, card)
                .await
                .map_err(|e| web_sys::console::warn_1(&format!("simulating on this worker alone: {e}").into()))
                .ok()
        };
        Ok(Self { cpu, gpu, pool })
    }
}

fn elapsed_ms(start: f64) -> f64 {
    js_sys::Date::now() - start
}

pub(crate) async fn handle(state: &Rc<RefCell<WorkerState>>, id: RequestId, request: SimulateRequest) {
    let fail = |kind: ErrorKind, message: String| post(&Event { id: Some(id), body: EventBody::Error(WorkerError { kind, message }) });
    if let Err(e) = request.validate(sepsis_core::cohort::schema::FEATURES.len()) {
        return fail(ErrorKind::InvalidRequest, e.to_string());
    }
    let simulator = match simulator(state).await {
        Ok(simulator) => simulator,
        Err((kind, message)) => return fail(kind, message),
    };
    let emit = |step: &sepsis_core::simulation::SimulationStep| post(&Event::reply(id, EventBody::SimulationStep(step.clone())));
    let start = js_sys::Date::now();
    let mut fallback_reason = String::new();
    if let Ok((context, model)) = &simulator.gpu {
        match simulate_on_gpu(context, model, &simulator.cpu.card, request.clone(), emit).await {
            Ok(simulation) => {
                let done = Simulated { simulation, backend: BackendKind::WebGpu, fallback_reason, elapsed_ms: elapsed_ms(start), workers: 1 };
                return post(&Event::reply(id, EventBody::Simulated(done)));
            }
            Err(e) => fallback_reason = format!("WebGPU simulation failed ({e}); ran on the CPU"),
        }
    }
    let start = js_sys::Date::now();
    if let Some(pool) = simulator.pool.as_ref().filter(|pool| pool.is_free()) {
        match simulate_with_pool(&simulator.cpu, pool, request.clone(), emit).await {
            Ok(simulation) => {
                let done = Simulated { simulation, backend: BackendKind::cpu(), fallback_reason, elapsed_ms: elapsed_ms(start), workers: pool.helpers() + 1 };
                return post(&Event::reply(id, EventBody::Simulated(done)));
            }
            Err(e) => fallback_reason = format!("the simulation helper workers failed ({e}); ran on this worker alone"),
        }
    }
    let start = js_sys::Date::now();
    match simulate_on_cpu(&simulator.cpu, request, emit) {
        Ok(simulation) => {
            let done = Simulated { simulation, backend: BackendKind::cpu(), fallback_reason, elapsed_ms: elapsed_ms(start), workers: 1 };
            post(&Event::reply(id, EventBody::Simulated(done)));
        }
        Err(e) => fail(ErrorKind::Internal, format!("simulation failed: {e}")),
    }
}

/// `MeasureSimulation`: see the request's doc. A pool of its own, so the
/// figures do not depend on how many helpers this machine would get.
pub(crate) async fn measure(state: &Rc<RefCell<WorkerState>>, id: RequestId, helpers: usize, repeats: usize) {
    let fail = |kind: ErrorKind, message: String| post(&Event { id: Some(id), body: EventBody::Error(WorkerError { kind, message }) });
    let simulator = match simulator(state).await {
        Ok(simulator) => simulator,
        Err((kind, message)) => return fail(kind, message),
    };
    let (weights, card, _) = match world_model_files(state) {
        Ok(files) => files,
        Err((kind, message)) => return fail(kind, message),
    };
    let pool = match Pool::spawn(helpers, &weights, &card).await {
        Ok(pool) => pool,
        Err(e) => return fail(ErrorKind::Internal, e),
    };
    let model = &simulator.cpu;
    let request = SimulateRequest::full_sweep(reference_course(), 6, 16, 1);
    // The first run of each is the warm-up, and the two are compared.
    let (alone, split) = match (simulate_on_cpu(model, request.clone(), |_| {}), simulate_with_pool(model, &pool, request.clone(), |_| {}).await) {
        (Ok(alone), Ok(split)) => (alone, split),
        (Err(e), _) => return fail(ErrorKind::Internal, format!("simulation failed: {e}")),
        (_, Err(e)) => return fail(ErrorKind::Internal, e),
    };
    let mut speed = SimulationSpeed { helpers, one_worker_ms: Vec::new(), pool_ms: Vec::new(), max_difference: parity_diff(&model.card, &alone, &split) };
    for _ in 0..repeats {
        let start = js_sys::Date::now();
        if let Err(e) = simulate_on_cpu(model, request.clone(), |_| {}) {
            return fail(ErrorKind::Internal, format!("simulation failed: {e}"));
        }
        speed.one_worker_ms.push(elapsed_ms(start));
        let start = js_sys::Date::now();
        if let Err(e) = simulate_with_pool(model, &pool, request.clone(), |_| {}).await {
            return fail(ErrorKind::Internal, e);
        }
        speed.pool_ms.push(elapsed_ms(start));
    }
    post(&Event::reply(id, EventBody::SimulationSpeed(speed)));
}

/// `PredictRisks`: one simulated step of each course with the treatment it
/// was given (the outcome head then reads the course as it stands), on the
/// CPU path with few draws: a ranking, not a forecast.
pub(crate) async fn risks(state: &Rc<RefCell<WorkerState>>, id: RequestId, courses: Vec<Vec<sepsis_core::simulation::CourseStep>>) {
    let fail = |kind: ErrorKind, message: String| post(&Event { id: Some(id), body: EventBody::Error(WorkerError { kind, message }) });
    let simulator = match simulator(state).await {
        Ok(simulator) => simulator,
        Err((kind, message)) => return fail(kind, message),
    };
    let mut survival = Vec::with_capacity(courses.len());
    for (i, course) in courses.into_iter().enumerate() {
        let Some(given) = course.last().map(|s| s.action) else { return fail(ErrorKind::InvalidRequest, format!("course {i} is empty")) };
        let request = SimulateRequest { history: course, candidates: vec![vec![given]], horizon: 1, samples: 4, seed: 1 };
        if let Err(e) = request.validate(sepsis_core::cohort::schema::FEATURES.len()) {
            return fail(ErrorKind::InvalidRequest, format!("course {i}: {e}"));
        }
        match simulate_on_cpu(&simulator.cpu, request, |_| {}) {
            Ok(simulation) => survival.push(simulation.steps.first().and_then(|s| s.candidates.first()).map(|c| c.survival).unwrap_or(f64::NAN)),
            Err(e) => return fail(ErrorKind::Internal, format!("course {i}: simulation failed: {e}")),
        }
    }
    post(&Event::reply(id, EventBody::Risks { survival }));
}

/// The world model's weights and card from the loaded models, and whether
/// the backend probe chose WebGPU.
fn world_model_files(state: &Rc<RefCell<WorkerState>>) -> Result<(Vec<u8>, String, bool), (ErrorKind, String)> {
    let state = state.borrow();
    let file = |name: &str| state.models.iter().find(|m| m.file.name == name).map(|m| m.bytes.clone());
    let missing = || (ErrorKind::ModelsNotLoaded, format!("the world model ({WEIGHTS}, {CARD}) is not loaded: load the models first"));
    let weights = file(WEIGHTS).ok_or_else(missing)?;
    let card = String::from_utf8(file(CARD).ok_or_else(missing)?).map_err(|e| (ErrorKind::Internal, format!("{CARD}: {e}")))?;
    let want_gpu = state.backend.as_ref().is_some_and(|b| b.chosen == BackendKind::WebGpu);
    Ok((weights, card, want_gpu))
}

/// The simulator, built on first use from the loaded model files.
pub(crate) async fn simulator(state: &Rc<RefCell<WorkerState>>) -> Result<Rc<Simulator>, (ErrorKind, String)> {
    if let Some(simulator) = state.borrow().simulator.clone() {
        return Ok(simulator);
    }
    let (weights, card, want_gpu) = world_model_files(state)?;
    let simulator = Rc::new(Simulator::build(&weights, &card, want_gpu).await.map_err(|e| (ErrorKind::Internal, e))?);
    state.borrow_mut().simulator = Some(simulator.clone());
    Ok(simulator)
}
