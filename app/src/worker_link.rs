//! The app's side of the worker: start it, send typed requests, turn its
//! events into state, and restart it when it crashes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::prelude::*;
use sepsis_core::protocol::{ErrorKind, Event, EventBody, Request, RequestBody, RequestId, WorkerError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, Worker};

use crate::state::{AppState, CohortState, ModelStatus, ReportRun, SimulationStatus, WorkerStatus};

/// The worker's loader (public/worker_loader.js): it picks the relaxed-SIMD
/// or the baseline build of the worker bin.
const WORKER_URL: &str = "./worker_loader.js";
/// More crashes than this and the app stops restarting and asks for a reload.
const MAX_RESTARTS: usize = 3;

struct Running {
    worker: Worker,
    // Kept alive as long as the worker they are attached to.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

#[derive(Clone)]
pub struct WorkerLink {
    running: Rc<RefCell<Option<Running>>>,
    /// Requests made before the worker said `Ready`: its wasm is still
    /// starting and would drop them, so they wait here.
    waiting: Rc<RefCell<Vec<Request>>>,
    next_id: Rc<Cell<RequestId>>,
    state: AppState,
}

impl WorkerLink {
    pub fn start(state: AppState) -> Self {
        let link = Self { running: Rc::default(), waiting: Rc::default(), next_id: Rc::new(Cell::new(1)), state };
        link.spawn();
        link
    }

    fn spawn(&self) {
        let worker = match Worker::new(WORKER_URL) {
            Ok(worker) => worker,
            Err(e) => {
                self.state.worker.set(WorkerStatus::GaveUp { reason: format!("the worker could not start: {e:?}") });
                return;
            }
        };
        let link = self.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            match serde_wasm_bindgen::from_value::<Event>(message.data()) {
                Ok(event) => link.on_event(event),
                Err(e) => link.report(WorkerError { kind: ErrorKind::Internal, message: format!("unreadable worker message: {e}") }),
            }
        });
        let link = self.clone();
        let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |error: ErrorEvent| {
            link.crashed(format!("uncaught error in the worker: {}", error.message()));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        *self.running.borrow_mut() = Some(Running { worker, _on_message: on_message, _on_error: on_error });
    }

    /// Send a request; returns its id. Until the worker (or its replacement
    /// after a crash) says `Ready`, requests wait and then go in order after
    /// its start-up requests; with no worker at all they are reported.
    pub fn send(&self, body: RequestBody) -> RequestId {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let request = Request { id, body };
        if !matches!(self.state.worker.get_untracked(), WorkerStatus::Ready { .. }) && self.running.borrow().is_some() {
            self.waiting.borrow_mut().push(request);
            return id;
        }
        self.post(request);
        id
    }

    fn post(&self, request: Request) {
        let sent = self.running.borrow().as_ref().map(|running| {
            serde_wasm_bindgen::to_value(&request)
                .map_err(|e| e.to_string())
                .and_then(|value| running.worker.post_message(&value).map_err(|e| format!("{e:?}")))
        });
        match sent {
            Some(Ok(())) => {}
            Some(Err(e)) => self.report(WorkerError { kind: ErrorKind::Internal, message: format!("could not send request: {e}") }),
            None => self.report(WorkerError { kind: ErrorKind::Internal, message: "the worker is not running".into() }),
        }
    }

    /// Ask the worker to stop the running cohort report, if one runs.
    pub fn cancel_report(&self) {
        if let Some(request) = self.state.report.with_untracked(|run| run.request.filter(|_| run.running)) {
            self.send(RequestBody::Cancel { request });
        }
    }

    /// Ask the worker to stop the agent's running decision, if one runs.
    pub fn cancel_agent(&self) {
        if let Some(request) = self.state.agent.with_untracked(|run| run.request.filter(|_| run.running)) {
            self.send(RequestBody::Cancel { request });
        }
    }

    fn report(&self, error: WorkerError) {
        self.state.errors.update(|errors| errors.push(error));
    }

    fn on_event(&self, event: Event) {
        let state = self.state;
        match event.body {
            EventBody::Ready { worker_version } => {
                state.worker.set(WorkerStatus::Ready { version: worker_version });
                self.send(RequestBody::ProbeBackend);
                self.send(RequestBody::LoadModels);
                let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
                for request in waiting {
                    self.post(request);
                }
            }
            EventBody::Backend(report) => state.backend.set(Some(report)),
            EventBody::ModelProgress(progress) => state.models.set(ModelStatus::Loading(progress)),
            EventBody::ModelVerified(verified) => state.verified.update(|list| list.push(verified)),
            EventBody::ModelsReady => state.models.set(ModelStatus::Ready),
            EventBody::Error(error) if error.kind == ErrorKind::Panic => {
                self.report(error.clone());
                self.crashed(format!("the worker panicked: {}", error.message));
            }
            EventBody::Error(error) => {
                // A failed simulation stops; the error list says why.
                if self.is_check(event.id) {
                    state.simulation.set(SimulationStatus::Idle);
                }
                if self.is_report(event.id) {
                    state.report.update(|run| run.running = false);
                } else {
                    state.agent.update(|run| run.running = false);
                }
                state.cohort.update(|c| c.loading = None);
                if self.is_sweep(event.id) {
                    state.sweep.update(|s| s.request = None);
                }
                if self.is_plan(event.id) {
                    state.plan.update(|p| p.request = None);
                }
                if matches!(error.kind, ErrorKind::ModelVerification | ErrorKind::Network) {
                    state.models.set(ModelStatus::Failed(error.message.clone()));
                }
                self.report(error);
            }
            // Simulations are routed by request: the grid's sweep, a plan,
            // the self-check, or none (a sweep for a step no longer shown).
            EventBody::SimulationStep(step) if self.is_sweep(event.id) => state.sweep.update(|s| s.steps_done = step.step),
            EventBody::Simulated(done) if self.is_sweep(event.id) => state.sweep.update(|s| s.result = Some(Box::new(done))),
            EventBody::SimulationStep(step) if self.is_check(event.id) => state.simulation.update(|s| {
                if let SimulationStatus::Running { steps, .. } = s {
                    *steps = step.step;
                }
            }),
            EventBody::Simulated(done) if self.is_check(event.id) => state.simulation.set(SimulationStatus::Done(Box::new(done))),
            EventBody::Simulated(done) if self.is_plan(event.id) => state.plan.update(|p| p.result = Some(Box::new(done))),
            EventBody::SimulationStep(_) | EventBody::Simulated(_) => {}
            EventBody::AgentToken { text } => state.agent.update(|run| run.text.push_str(&text)),
            EventBody::AgentStep(step) => state.agent.update(|run| {
                // One line between the agent's turns in the streamed text.
                if matches!(step, sepsis_core::agent::decision::TraceEvent::Turn { .. }) {
                    run.text.push('\n');
                }
                run.steps.push(step);
            }),
            EventBody::Recommended(done) => state.agent.update(|run| {
                run.running = false;
                run.done = Some(Box::new(done));
            }),
            EventBody::LlmSpeed(speed) => state.llm_speed.set(Some(speed)),
            // The app never asks for it: the browser benchmark and tests do.
            EventBody::SimulationSpeed(_) => {}
            EventBody::CohortLoaded { cohort, report } => {
                // A report describes the cohort it was run on: a new cohort ends it.
                self.cancel_report();
                state.report.set(ReportRun::default());
                state.cohort.set(CohortState { loading: None, cohort, report: Some(report), ..CohortState::default() });
            }
            EventBody::ReportProgress { decided, total } if self.is_report(event.id) => state.report.update(|run| {
                run.decided = decided;
                run.total = total;
            }),
            EventBody::CohortReported { report, elapsed_ms } if self.is_report(event.id) => state.report.update(|run| {
                run.running = false;
                run.result = Some(Box::new((report, elapsed_ms)));
            }),
            EventBody::ReportProgress { .. } | EventBody::CohortReported { .. } => {}
            EventBody::Cancelled { .. } if self.is_report(event.id) => state.report.update(|run| {
                run.running = false;
                run.cancelled = true;
            }),
            EventBody::Risks { survival } => state.cohort.update(|c| {
                if let Some((_, ids)) = c.survival_request.take_if(|(request, _)| Some(*request) == event.id) {
                    c.survival.extend(ids.into_iter().zip(survival));
                }
            }),
            EventBody::Cancelled { .. } => state.agent.update(|run| {
                run.running = false;
                run.cancelled = true;
            }),
            EventBody::Done => {}
        }
    }

    /// Whether an event answers the current cohort report.
    fn is_report(&self, id: Option<RequestId>) -> bool {
        id.is_some() && self.state.report.with_untracked(|r| r.request) == id
    }

    /// Whether an event answers the current plan simulation.
    fn is_plan(&self, id: Option<RequestId>) -> bool {
        id.is_some() && self.state.plan.with_untracked(|p| p.request) == id
    }

    /// Whether an event answers the running treatment-grid sweep.
    fn is_sweep(&self, id: Option<RequestId>) -> bool {
        id.is_some() && self.state.sweep.with_untracked(|s| s.request) == id
    }

    /// Whether an event answers the running self-check simulation.
    fn is_check(&self, id: Option<RequestId>) -> bool {
        matches!(self.state.simulation.get_untracked(), SimulationStatus::Running { request, .. } if Some(request) == id)
    }

    /// Replace a crashed worker. Deferred to a fresh task: this may run inside
    /// one of the worker's own callbacks, which must not be dropped mid-call.
    fn crashed(&self, reason: String) {
        let link = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(running) = link.running.borrow_mut().take() {
                running.worker.terminate();
            }
            let state = link.state;
            let restarts = state.restarts.with_untracked(Vec::len);
            if restarts >= MAX_RESTARTS {
                state.worker.set(WorkerStatus::GaveUp { reason: format!("{reason}; it crashed {} times, so it was not restarted again", restarts + 1) });
                return;
            }
            state.restarts.update(|list| list.push(reason));
            state.worker.set(WorkerStatus::Starting);
            state.backend.set(None);
            state.models.set(ModelStatus::Waiting);
            state.verified.set(Vec::new());
            link.spawn();
        });
    }
}
