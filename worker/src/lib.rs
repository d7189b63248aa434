//! The SepsisAgent Web worker. It owns every computation so the UI never
//! freezes: backend selection (WebGPU or candle on the CPU), the model store,
//! and, as they land, simulation and the agent loop.
//!
//! Messages are [`sepsis_core::protocol`] values passed with
//! serde-wasm-bindgen. A panic is reported as a typed `Panic` error event
//! before the wasm instance traps, so the app can restart the worker.

pub mod agent;
pub mod gpu;
pub mod gpu_world_model;
pub mod pool;
pub mod report;
pub mod simulator;
pub mod store;

use std::cell::RefCell;
use std::io::Cursor;
use std::rc::Rc;

use sepsis_core::compute::BackendReport;
use sepsis_core::gguf::GgufSummary;
use sepsis_core::protocol::{ErrorKind, Event, EventBody, Request, RequestBody, RequestId};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

/// What the worker holds between requests.
#[derive(Default)]
pub(crate) struct WorkerState {
    backend: Option<BackendReport>,
    models: Vec<store::LoadedModel>,
    /// Built from the loaded world model on the first simulation.
    simulator: Option<Rc<simulator::Simulator>>,
    /// Built from the loaded GGUF on the first recommendation.
    llm: Option<agent::LoadedLlm>,
    /// The AI Clinician's clusters, parsed on the first cohort report.
    support: Option<Rc<sepsis_core::baselines::ai_clinician::AiClinician>>,
    /// Recommendations and reports asked to stop.
    cancelled: std::collections::HashSet<RequestId>,
}

/// Entry point, called once when the worker's wasm starts.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(&Event::error(None, ErrorKind::Panic, info.to_string()));
    }));
    let state = Rc::new(RefCell::new(WorkerState::default()));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
        // This worker may be another one's simulation helper (pool.rs).
        if js_sys::Reflect::has(&message.data(), &pool::HELPER_KEY.into()).unwrap_or(false) {
            return pool::serve(&message.data());
        }
        match serde_wasm_bindgen::from_value::<Request>(message.data()) {
            Ok(request) => wasm_bindgen_futures::spawn_local(handle(state.clone(), request)),
            Err(e) => post(&Event::error(None, ErrorKind::BadRequest, format!("not a request: {e}"))),
        }
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(&Event { id: None, body: EventBody::Ready { worker_version: env!("CARGO_PKG_VERSION").into() } });
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Send one event to the app.
pub fn post(event: &Event) {
    match serde_wasm_bindgen::to_value(event) {
        Ok(value) => {
            if let Err(e) = scope().post_message(&value) {
                web_sys::console::error_2(&"worker: postMessage failed".into(), &e);
            }
        }
        Err(e) => web_sys::console::error_1(&format!("worker: cannot encode event: {e}").into()),
    }
}

async fn handle(state: Rc<RefCell<WorkerState>>, request: Request) {
    let id = request.id;
    let reply = |body: EventBody| post(&Event::reply(id, body));
    match request.body {
        RequestBody::ProbeBackend => {
            let report = gpu::choose_backend().await;
            state.borrow_mut().backend = Some(report.clone());
            reply(EventBody::Backend(report));
        }
        RequestBody::LoadModels => load_models(&state, id).await,
        RequestBody::Simulate(request) => simulator::handle(&state, id, request).await,
        RequestBody::Recommend(request) => agent::handle(&state, id, request).await,
        RequestBody::Cancel { request } => agent::cancel(&state, request),
        RequestBody::MeasureLlm { decode_tokens } => agent::measure(&state, id, decode_tokens),
        RequestBody::MeasureSimulation { helpers, repeats } => simulator::measure(&state, id, helpers, repeats).await,
        RequestBody::LoadCohort { file, text } => {
            let (cohort, report) = sepsis_core::cohort::csv_format::read_cohort(&file, text.as_bytes());
            reply(EventBody::CohortLoaded { cohort, report });
        }
        RequestBody::PredictRisks { courses } => simulator::risks(&state, id, courses).await,
        RequestBody::CohortReport(request) => report::handle(&state, id, request).await,
        RequestBody::DiagnosticPanic => panic!("diagnostic panic requested by the app (request {id})"),
    }
    reply(EventBody::Done);
}

async fn load_models(state: &Rc<RefCell<WorkerState>>, id: RequestId) {
    let emit = |body: EventBody| post(&Event::reply(id, body));
    let fail = |e: store::StoreResult<()>| {
        if let Err(e) = e {
            post(&Event { id: Some(id), body: EventBody::Error(e) });
        }
    };
    let manifest = match store::fetch_manifest().await {
        Ok(manifest) => manifest,
        Err(e) => return fail(Err(e)),
    };
    let mut models = Vec::new();
    for file in &manifest.files {
        let model = match store::load(file, &emit).await {
            Ok(model) => model,
            Err(e) => return fail(Err(e)),
        };
        match describe(&model) {
            Ok(description) => emit(store::verified_event(&model, description)),
            Err(message) => return fail(Err(sepsis_core::protocol::WorkerError { kind: ErrorKind::Internal, message })),
        }
        models.push(model);
    }
    fail(store::prune(&manifest).await);
    let mut state = state.borrow_mut();
    state.models = models;
    state.simulator = None;
    state.llm = None;
    state.support = None;
    emit(EventBody::ModelsReady);
}

/// Parse a verified file far enough to prove it is the model it claims to be.
fn describe(model: &store::LoadedModel) -> Result<String, String> {
    let name = &model.file.name;
    if name.ends_with(".gguf") {
        GgufSummary::read(&mut Cursor::new(&model.bytes))
            .map(|summary| summary.to_string())
            .map_err(|e| format!("{name}: not a readable GGUF file: {e}"))
    } else if name.ends_with(".safetensors") {
        candle_core::safetensors::load_buffer(&model.bytes, &candle_core::Device::Cpu)
            .map(|tensors| format!("{} tensors", tensors.len()))
            .map_err(|e| format!("{name}: not a readable safetensors file: {e}"))
    } else if name.ends_with(".json") {
        serde_json::from_slice::<serde_json::Value>(&model.bytes)
            .map(|_| "model card (JSON)".to_string())
            .map_err(|e| format!("{name}: not valid JSON: {e}"))
    } else {
        Ok(format!("{} bytes", model.bytes.len()))
    }
}
