//! Simulation helpers: a simulation's rows split across extra dedicated
//! workers (this same worker binary, spawned by this worker), so a candidate
//! sweep on the CPU uses more than one core. A wasm worker is one thread,
//! and wasm threads would need cross-origin isolation headers that a
//! hospital's static file server may not send; separate workers need
//! nothing.
//!
//! Each worker takes a contiguous range of the rollouts (rows) for every
//! member, and each helper keeps its rows' recurrent states between steps:
//! first it reads the shared context (a few KB) and keeps its rows, then per
//! step it receives their new inputs and answers their outputs and Gaussian
//! draws (a few hundred KB), while this worker computes and draws its own
//! rows, then keeps the rollout. A row is computed by the same operations whichever
//! batch it is in (the products' sums run over the inputs in the same order
//! for every row) and the draws are keyed by seed and counter, not by who
//! computes, so the simulation is identical to the last bit
//! (`tests/e2e/pool.test.mjs` checks it); any helper error makes the request
//! run on this worker alone.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::Range;
use std::rc::Rc;

use futures_channel::oneshot;
use js_sys::{Array, Float32Array, Object, Reflect, Uint8Array};
use sepsis_core::simulation::{SimulateRequest, Simulation, SimulationStep};
use sepsis_core::world_model::cpu_inference::FastState;
use sepsis_core::world_model::simulate::{draw, feed_member, feed_rows, row_ranges, Feed, MemberOutput, Rollout};
use sepsis_core::world_model::WorldModel;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker};

/// The property that marks a message between this worker and a helper; its
/// value says what the message is. The app's requests never carry it.
pub const HELPER_KEY: &str = "simulationHelper";

type Reply = Result<JsValue, String>;

/// Most helpers a worker starts: past this, a step's messages cost more than
/// the few rows each helper would compute.
pub const MAX_HELPERS: usize = 7;

/// Helpers worth having here: one per further core.
pub fn helpers_for_this_machine() -> usize {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let cores = scope.navigator().hardware_concurrency() as usize;
    cores.saturating_sub(1).min(MAX_HELPERS)
}

struct Helper {
    worker: Worker,
    /// Answers are in the order asked: one sender per question.
    waiting: Rc<RefCell<VecDeque<oneshot::Sender<Reply>>>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

impl Helper {
    /// Start a helper; it is usable once its `Ready` arrives.
    async fn spawn() -> Result<Self, String> {
        let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let url = scope.location().href();
        let worker = Worker::new(&url).map_err(|e| format!("cannot start a simulation helper from {url}: {e:?}"))?;
        let waiting: Rc<RefCell<VecDeque<oneshot::Sender<Reply>>>> = Rc::default();
        let on_message = {
            let waiting = waiting.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
                let data = message.data();
                let reply = match Reflect::get(&data, &HELPER_KEY.into()).ok().and_then(|v| v.as_string()).as_deref() {
                    Some("error") => Err(string_field(&data, "message")),
                    Some(_) => Ok(data),
                    // The worker protocol's own events: `Ready` answers the
                    // start, an `Error` (a panic) fails what is waiting.
                    None => match event_type(&data).as_deref() {
                        Some("Ready") => Ok(data),
                        Some("Error") => Err(format!("simulation helper failed: {}", Reflect::get(&data, &"body".into()).map(|b| string_field(&b, "message")).unwrap_or_default())),
                        _ => return,
                    },
                };
                if let Some(sender) = waiting.borrow_mut().pop_front() {
                    let _ = sender.send(reply);
                }
            })
        };
        let on_error = {
            let waiting = waiting.clone();
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
                // A helper that fails fails every question it was asked.
                for sender in waiting.borrow_mut().drain(..) {
                    let _ = sender.send(Err(format!("simulation helper failed: {}", event.message())));
                }
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let helper = Self { worker, waiting, _on_message: on_message, _on_error: on_error };
        let (sender, ready) = oneshot::channel();
        helper.waiting.borrow_mut().push_back(sender);
        ready.await.map_err(|_| "a simulation helper never started".to_string())??;
        Ok(helper)
    }

    /// Post `message` now; the future is its answer. Posting before
    /// awaiting lets every helper work while this worker computes.
    fn ask(&self, message: &JsValue) -> impl std::future::Future<Output = Reply> + '_ {
        let (sender, answer) = oneshot::channel();
        self.waiting.borrow_mut().push_back(sender);
        let posted = self.worker.post_message(message).map_err(|e| format!("cannot reach a simulation helper: {e:?}"));
        async move {
            posted?;
            answer.await.map_err(|_| "a simulation helper went away".to_string())?
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

/// `body.type` of a worker protocol event.
fn event_type(data: &JsValue) -> Option<String> {
    Reflect::get(data, &"body".into()).and_then(|body| Reflect::get(&body, &"type".into())).ok()?.as_string()
}

fn string_field(data: &JsValue, name: &str) -> String {
    Reflect::get(data, &name.into()).ok().and_then(|v| v.as_string()).unwrap_or_else(|| format!("(no {name})"))
}

fn message(kind: &str, fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    let _ = Reflect::set(&object, &HELPER_KEY.into(), &kind.into());
    for (name, value) in fields {
        let _ = Reflect::set(&object, &(*name).into(), value);
    }
    object.into()
}

/// Helpers holding the world model, ready to compute rows.
pub struct Pool {
    helpers: Vec<Helper>,
    /// A simulation is using the helpers' states. Requests run concurrently
    /// in this worker; a second one meanwhile runs without the pool.
    busy: std::cell::Cell<bool>,
}

impl Pool {
    /// Start `count` helpers and give each the world model's files.
    pub async fn spawn(count: usize, weights: &[u8], card: &str) -> Result<Self, String> {
        let mut helpers = Vec::with_capacity(count);
        for _ in 0..count {
            helpers.push(Helper::spawn().await?);
        }
        let load = message("load", &[("weights", Uint8Array::from(weights).into()), ("card", card.into())]);
        for helper in &helpers {
            helper.ask(&load).await?;
        }
        Ok(Self { helpers, busy: Default::default() })
    }

    pub fn helpers(&self) -> usize {
        self.helpers.len()
    }

    /// No simulation is using the helpers now.
    pub fn is_free(&self) -> bool {
        !self.busy.get()
    }

    /// The rows each worker computes, for every member: `[0]` this one,
    /// `[1..]` the helpers; contiguous and in order, so each member's
    /// outputs join back by concatenation.
    fn row_ranges(&self, rows: usize) -> Vec<Range<usize>> {
        row_ranges(rows, self.helpers.len() + 1)
    }
}

/// A whole simulation with the rows split between this worker and the
/// pool's helpers; `on_step` as in `simulate_on_cpu`, whose result it equals.
pub async fn simulate_with_pool(model: &WorldModel, pool: &Pool, request: SimulateRequest, mut on_step: impl FnMut(&SimulationStep)) -> Result<Simulation, String> {
    if pool.busy.replace(true) {
        return Err("the simulation helpers are busy with another simulation".into());
    }
    let result = simulate_on_helpers(model, pool, request, &mut on_step).await;
    pool.busy.set(false);
    result
}

async fn simulate_on_helpers(model: &WorldModel, pool: &Pool, request: SimulateRequest, on_step: &mut impl FnMut(&SimulationStep)) -> Result<Simulation, String> {
    let mut rollout = Rollout::new(&model.card, request).map_err(|e| e.to_string())?;
    let members = model.members();
    let ranges = pool.row_ranges(rollout.rows());
    let mut local: Vec<Option<FastState>> = vec![None; members];
    while !rollout.is_done() {
        let questions: Vec<_> = pool.helpers.iter().zip(&ranges[1..]).map(|(helper, rows)| helper.ask(&feed_message(&rollout, rows))).collect();
        // Each worker draws for its own rows too: the draws are keyed by
        // counter, so who draws does not change them.
        let own = feed_rows(model, &rollout, ranges[0].clone(), &mut local).map_err(|e| e.to_string())?;
        let mut parts: Vec<Vec<(MemberOutput, Vec<f32>)>> = own
            .into_iter()
            .enumerate()
            .map(|(m, output)| {
                let draws = draw(&output, rollout.seed(), rollout.row_counter(m, ranges[0].start));
                vec![(output, draws)]
            })
            .collect();
        for question in questions {
            let answer = question.await?;
            let answers = Reflect::get(&answer, &"outputs".into()).map_err(|_| "a helper answered without outputs".to_string())?;
            let answers: Array = answers.dyn_into().map_err(|_| "a helper's outputs are not a list".to_string())?;
            if answers.length() as usize != members {
                return Err(format!("a helper answered {} members of {members}", answers.length()));
            }
            for (member_parts, output) in parts.iter_mut().zip(answers.iter()) {
                member_parts.push(output_from_js(&output)?);
            }
        }
        let (outputs, draws): (Vec<MemberOutput>, Vec<Vec<f32>>) = parts
            .into_iter()
            .map(|member_parts| {
                let (outputs, draws): (Vec<_>, Vec<_>) = member_parts.into_iter().unzip();
                (MemberOutput::concat(outputs), draws.concat())
            })
            .unzip();
        on_step(rollout.advance(&outputs, &draws));
    }
    Ok(rollout.finish())
}

/// A helper's share of the rollout's next step: the context (the same for
/// every member) with the helper's rows, or each member's simulated step
/// for those rows; and the seed and each member's first noise counter for
/// the rows' draws.
fn feed_message(rollout: &Rollout<'_>, rows: &Range<usize>) -> JsValue {
    let feed = match rollout.feed(0, rows.clone()) {
        Feed::Context { earlier, current, samples, rows } => message(
            "context",
            &[
                ("earlier", Float32Array::from(earlier).into()),
                ("current", Float32Array::from(current).into()),
                ("samples", samples.into()),
                ("start", rows.start.into()),
                ("end", rows.end.into()),
            ],
        ),
        Feed::Simulated(_) => {
            let inputs: Array = (0..rollout.members())
                .map(|m| match rollout.feed(m, rows.clone()) {
                    Feed::Simulated(x) => JsValue::from(Float32Array::from(x)),
                    Feed::Context { .. } => unreachable!("every member is at the same step"),
                })
                .collect();
            message("step", &[("inputs", inputs.into())])
        }
    };
    let counters: Array = (0..rollout.members()).map(|m| JsValue::from(rollout.row_counter(m, rows.start))).collect();
    let _ = Reflect::set(&feed, &"seed".into(), &rollout.seed().into());
    let _ = Reflect::set(&feed, &"counters".into(), &counters);
    feed
}

const OUTPUT_FIELDS: [&str; 5] = ["stay_logit", "mean", "log_sigma", "outcome_logit", "draws"];

fn output_to_js(output: &MemberOutput, draws: &[f32]) -> JsValue {
    let object = Object::new();
    for (name, values) in OUTPUT_FIELDS.iter().zip([&output.stay_logit[..], &output.mean, &output.log_sigma, &output.outcome_logit, draws]) {
        let _ = Reflect::set(&object, &(*name).into(), &Float32Array::from(values));
    }
    object.into()
}

fn output_from_js(value: &JsValue) -> Result<(MemberOutput, Vec<f32>), String> {
    let field = |name: &str| -> Result<Vec<f32>, String> {
        let array = Reflect::get(value, &name.into()).map_err(|_| format!("a helper's output lacks {name}"))?;
        Ok(array.dyn_into::<Float32Array>().map_err(|_| format!("a helper's {name} is not a Float32Array"))?.to_vec())
    };
    let output = MemberOutput { stay_logit: field("stay_logit")?, mean: field("mean")?, log_sigma: field("log_sigma")?, outcome_logit: field("outcome_logit")? };
    Ok((output, field("draws")?))
}

/// The helper's side: the world model it was given and, per member, the
/// recurrent states of the rows it computes.
struct HelperModel {
    model: WorldModel,
    states: Vec<Option<FastState>>,
}

thread_local! {
    static HELPER: RefCell<Option<HelperModel>> = const { RefCell::new(None) };
}

/// Answer a pool message (in a helper); the answer goes to the worker that
/// spawned this one.
pub fn serve(data: &JsValue) {
    let answer = match answer(data) {
        Ok(answer) => answer,
        Err(e) => message("error", &[("message", e.into())]),
    };
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    if let Err(e) = scope.post_message(&answer) {
        web_sys::console::error_2(&"simulation helper: postMessage failed".into(), &e);
    }
}

fn answer(data: &JsValue) -> Result<JsValue, String> {
    match string_field(data, HELPER_KEY).as_str() {
        "load" => {
            let weights = Reflect::get(data, &"weights".into()).ok().and_then(|v| v.dyn_into::<Uint8Array>().ok()).ok_or("load without weights")?;
            let model = WorldModel::from_bytes(&string_field(data, "card"), weights.to_vec()).map_err(|e| format!("world model: {e}"))?;
            let states = vec![None; model.members()];
            HELPER.with(|helper| *helper.borrow_mut() = Some(HelperModel { model, states }));
            Ok(message("loaded", &[]))
        }
        kind @ ("context" | "step") => HELPER.with(|helper| {
            let mut helper = helper.borrow_mut();
            let helper = helper.as_mut().ok_or("a simulation step before the world model was loaded")?;
            let floats = |value: JsValue, name: &str| -> Result<Vec<f32>, String> {
                Ok(value.dyn_into::<Float32Array>().map_err(|_| format!("{name} is not a Float32Array"))?.to_vec())
            };
            let field = |name: &str| Reflect::get(data, &name.into()).map_err(|_| format!("{kind} without {name}"));
            let number = |name: &str| field(name)?.as_f64().map(|v| v as usize).ok_or(format!("{kind}: {name} is not a number"));
            let members = helper.states.len();
            let seed = field("seed")?.as_f64().ok_or(format!("{kind}: seed is not a number"))? as u32;
            let counters: Array = field("counters")?.dyn_into().map_err(|_| format!("{kind}: counters is not a list"))?;
            if counters.length() as usize != members {
                return Err(format!("{kind}: counters for {} members of {members}", counters.length()));
            }
            // The context is the same for every member; a step has one
            // input array per member, in member order.
            let (mut context, mut steps) = (None, Vec::new());
            if kind == "context" {
                context = Some((floats(field("earlier")?, "earlier")?, floats(field("current")?, "current")?, number("samples")?, number("start")?..number("end")?));
            } else {
                let inputs: Array = field("inputs")?.dyn_into().map_err(|_| "inputs is not a list")?;
                if inputs.length() as usize != members {
                    return Err(format!("inputs for {} members of {members}", inputs.length()));
                }
                steps = inputs.iter().map(|x| floats(x, "inputs")).collect::<Result<_, _>>()?;
            }
            let outputs = Array::new();
            for m in 0..members {
                let feed = match &context {
                    Some((earlier, current, samples, rows)) => Feed::Context { earlier, current, samples: *samples, rows: rows.clone() },
                    None => Feed::Simulated(&steps[m]),
                };
                // A context starts from a zero state whatever is held.
                let (state, output) = feed_member(&helper.model, m, helper.states[m].take(), &feed).map_err(|e| e.to_string())?;
                helper.states[m] = Some(state);
                let counter = counters.get(m as u32).as_f64().ok_or(format!("{kind}: counter {m} is not a number"))? as u32;
                outputs.push(&output_to_js(&output, &draw(&output, seed, counter)));
            }
            Ok(message("outputs", &[("outputs", outputs.into())]))
        }),
        other => Err(format!("unknown simulation helper message {other:?}")),
    }
}
