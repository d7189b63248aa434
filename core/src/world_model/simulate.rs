//! Simulating candidate treatments in the ensemble, as a state machine that
//! does no arithmetic of the networks itself: each step it hands out every
//! member's new input steps, takes back the member's outputs and Gaussian
//! draws, and turns them into the step's forecasts. The compute paths carry
//! each rollout's recurrent state: the first step feeds the context (the
//! newest `CONTEXT_STEPS` of the history, the current step with the
//! candidate's action), every later step feeds one simulated step. A rollout
//! therefore never reads more than `CONTEXT_STEPS + MAX_HORIZON` steps, the
//! model's training window. The candle CPU path
//! ([`simulate_on_cpu`]) and the worker's WGSL path drive the same
//! [`Rollout`], so they can only differ in the forward pass and the draws,
//! which the parity tests compare.
//!
//! Rows: member `m` simulates `candidates x samples` rollouts, row
//! `r = candidate * samples + sample`. Every rollout follows its own member
//! (members are whole hypotheses of the dynamics, not mixed per step) and
//! draws its next values from that member's Gaussian.
//!
//! The context is the same for every rollout up to its current step, and the
//! same for a candidate's samples after it, so the CPU reads the earlier
//! steps once and each candidate's current step once, then repeats the state
//! for the samples ([`Feed::Context`]): on the reference patient that is 26
//! row-steps per member where reading it for every rollout was 800, and
//! 27 % of a full sweep's multiply-adds.

use std::borrow::Cow;
use std::ops::Range;

use candle_core::Result;

use super::card::ModelCard;
use super::cpu_inference::FastState;
use super::WorldModel;
use crate::cohort::schema::{idx, FEATURES};
use super::memory::{Next, TransitionMemory};
use super::mixture::{expected_value, stay_probability};
use crate::simulation::{
    quantile, standard_normal, stay_uniform, CandidateStep, FeatureBand, RequestError, SimulateRequest, Simulation, SimulationStep, KEY_FEATURES, MAX_HORIZON,
};

/// History steps a simulation reads before its first simulated step. With
/// the horizon, at most the model's window (`configs/world-model.json`).
pub const CONTEXT_STEPS: usize = 6;

/// One member's outputs for all of its rows, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberOutput {
    /// `rows x dynamic`: logit of "the value stays exactly as it is".
    pub stay_logit: Vec<f32>,
    /// `rows x dynamic`, z units: the Gaussian of a changed value.
    pub mean: Vec<f32>,
    /// `rows x dynamic`, already clamped to `LOG_SIGMA_RANGE`.
    pub log_sigma: Vec<f32>,
    /// `rows`: logit of death by the end of the stay.
    pub outcome_logit: Vec<f32>,
}

impl MemberOutput {
    /// One member's outputs for consecutive ranges of rows, as one.
    pub fn concat(parts: impl IntoIterator<Item = MemberOutput>) -> MemberOutput {
        let mut joined = MemberOutput { stay_logit: Vec::new(), mean: Vec::new(), log_sigma: Vec::new(), outcome_logit: Vec::new() };
        for part in parts {
            joined.stay_logit.extend(part.stay_logit);
            joined.mean.extend(part.mean);
            joined.log_sigma.extend(part.log_sigma);
            joined.outcome_logit.extend(part.outcome_logit);
        }
        joined
    }

    /// Row `i` of the result is row `rows[i]` of `self`.
    pub fn select_rows(&self, rows: &[u32]) -> MemberOutput {
        let width = self.stay_logit.len() / self.outcome_logit.len().max(1);
        let pick = |values: &[f32], width: usize| -> Vec<f32> { rows.iter().flat_map(|&r| values[r as usize * width..(r as usize + 1) * width].iter().copied()).collect() };
        MemberOutput {
            stay_logit: pick(&self.stay_logit, width),
            mean: pick(&self.mean, width),
            log_sigma: pick(&self.log_sigma, width),
            outcome_logit: pick(&self.outcome_logit, 1),
        }
    }
}

/// What a member reads next for a range of its rows.
#[derive(Clone, Debug)]
pub enum Feed<'r> {
    /// The first step, the same for every member: every rollout reads the
    /// same earlier history steps (`earlier`, `steps x input_dim`, possibly
    /// none), then its candidate's current step (`current`, `candidates x
    /// input_dim`); row `r` is candidate `r / samples`. Fed from a zero state.
    Context { earlier: &'r [f32], current: &'r [f32], samples: usize, rows: Range<usize> },
    /// A later step: one simulated step per row of the range, `rows x
    /// input_dim`, read on top of the rows' carried states.
    Simulated(&'r [f32]),
}

pub struct Rollout<'a> {
    card: &'a ModelCard,
    request: SimulateRequest,
    members: usize,
    /// The history steps before the current one that the context reads
    /// (`steps x input_dim`), shared by every rollout.
    earlier: Vec<f32>,
    /// Each candidate's current step, with its first action
    /// (`candidates x input_dim`).
    current_steps: Vec<f32>,
    /// Per member after the first step: `rows x input_dim`, each rollout's
    /// newest simulated step, what it reads next. Empty before.
    simulated: Vec<Vec<f32>>,
    /// z bounds of each dynamic feature (its plausible range): draws are clipped to them.
    bounds: Vec<(f32, f32)>,
    /// (position among the dynamic features, schema index) of each key feature.
    key: Vec<(usize, usize)>,
    /// Per candidate: the memory's row of logged transitions for its first
    /// action from the current state, where the model has a memory and the
    /// row exists (`memory.rs`).
    first_from_memory: Vec<Option<usize>>,
    /// Per member, per row: `Some(survived)` once the rollout's stay has
    /// ended (a logged transition out of the ICU was drawn).
    ended: Vec<Vec<Option<bool>>>,
    result: Simulation,
}

/// One member's transition for all of its rows.
struct MemberStep {
    /// `rows x dynamic`, z units: each row's next values.
    next: Vec<f32>,
    /// `rows x dynamic`: whether each next value is measured.
    observed: Vec<bool>,
    /// `rows x dynamic`: the member's expected next values.
    expected: Vec<f64>,
    /// Per row: the stay ends in this transition (`Some(survived)`).
    ends: Vec<Option<bool>>,
}

impl<'a> Rollout<'a> {
    pub fn new(card: &'a ModelCard, request: SimulateRequest) -> std::result::Result<Self, RequestError> {
        request.validate(FEATURES.len())?;
        if card.config.window < CONTEXT_STEPS + MAX_HORIZON {
            return Err(RequestError::ModelWindow { window: card.config.window, needed: CONTEXT_STEPS + MAX_HORIZON });
        }
        let layout = &card.layout;
        let context = request.history.len().min(CONTEXT_STEPS);
        let history = &request.history[request.history.len() - context..];
        let (before, now) = history.split_at(context - 1);
        let mut earlier = Vec::with_capacity(before.len() * layout.input_dim());
        for step in before {
            layout.encode(&card.normaliser, &step.values, step.action, &mut earlier);
        }
        let mut current_steps = Vec::with_capacity(request.candidates.len() * layout.input_dim());
        for c in 0..request.candidates.len() {
            layout.encode(&card.normaliser, &now[0].values, request.action(c, 0), &mut current_steps);
        }
        let bounds = layout
            .dynamic
            .iter()
            .map(|&f| {
                let (low, high) = FEATURES[f].plausible;
                (card.normaliser.z(f, low) as f32, card.normaliser.z(f, high) as f32)
            })
            .collect();
        let key = KEY_FEATURES
            .iter()
            .map(|k| {
                let f = idx(k);
                (layout.dynamic.iter().position(|&d| d == f).expect("key features are per-step features"), f)
            })
            .collect();
        let members = card.config.members;
        let first_from_memory = match &card.memory {
            Some(memory) => {
                let cluster = memory.cluster_of(layout, &card.normaliser, &now[0].values);
                (0..request.candidates.len()).map(|c| memory.row(cluster, request.action(c, 0).index())).collect()
            }
            None => vec![None; request.candidates.len()],
        };
        let ended = vec![vec![None; request.candidates.len() * request.samples]; members];
        Ok(Self { card, request, members, earlier, current_steps, simulated: Vec::new(), bounds, key, first_from_memory, ended, result: Simulation::default() })
    }

    pub fn members(&self) -> usize {
        self.members
    }

    /// Rollouts per member: candidates x samples.
    pub fn rows(&self) -> usize {
        self.request.candidates.len() * self.request.samples
    }

    pub fn dynamic_dim(&self) -> usize {
        self.card.layout.dynamic.len()
    }

    pub fn input_dim(&self) -> usize {
        self.card.layout.input_dim()
    }

    /// Steps simulated so far.
    pub fn steps_done(&self) -> usize {
        self.result.steps.len()
    }

    pub fn is_done(&self) -> bool {
        self.steps_done() == self.request.horizon
    }

    pub fn seed(&self) -> u32 {
        self.request.seed
    }

    /// What member `m` reads next for `rows` of its rollouts.
    pub fn feed(&self, member: usize, rows: Range<usize>) -> Feed<'_> {
        if self.steps_done() == 0 {
            Feed::Context { earlier: &self.earlier, current: &self.current_steps, samples: self.request.samples, rows }
        } else {
            let width = self.input_dim();
            Feed::Simulated(&self.simulated[member][rows.start * width..rows.end * width])
        }
    }

    /// Member `m`'s next steps written out for every row, `rows x steps() x
    /// input_dim`: the context repeated per rollout at first. The WebGPU
    /// path reads it so, as its rows run in parallel anyway.
    pub fn expanded_inputs(&self, member: usize) -> Cow<'_, [f32]> {
        if self.steps_done() > 0 {
            return Cow::Borrowed(&self.simulated[member]);
        }
        let width = self.input_dim();
        let mut inputs = Vec::with_capacity(self.rows() * self.steps() * width);
        for r in 0..self.rows() {
            inputs.extend_from_slice(&self.earlier);
            inputs.extend_from_slice(self.newest_step(member, r));
        }
        Cow::Owned(inputs)
    }

    /// Steps per row in `expanded_inputs`: the context length first, then 1.
    pub fn steps(&self) -> usize {
        if self.steps_done() == 0 {
            self.earlier.len() / self.input_dim() + 1
        } else {
            1
        }
    }

    /// The newest step row `r` of member `m` has read (or reads now).
    fn newest_step(&self, member: usize, r: usize) -> &[f32] {
        let width = self.input_dim();
        if self.steps_done() == 0 {
            let c = r / self.request.samples;
            &self.current_steps[c * width..(c + 1) * width]
        } else {
            &self.simulated[member][r * width..(r + 1) * width]
        }
    }

    /// The noise counter of member `m`'s first draw this step; draw `i`
    /// (row-major over `rows x dynamic`) uses counter `base + i`.
    pub fn counter_base(&self, member: usize) -> u32 {
        ((self.steps_done() * self.members + member) * self.rows() * self.dynamic_dim()) as u32
    }

    /// The noise counter of member `m`'s first draw for `row` this step:
    /// where a share of the rows starts drawing, so that whoever draws a
    /// row draws the same numbers.
    pub fn row_counter(&self, member: usize, row: usize) -> u32 {
        self.counter_base(member).wrapping_add((row * self.dynamic_dim()) as u32)
    }

    /// One member's next values and expected next values (z units, row-major
    /// over `rows x dynamic`). Each row keeps a value that is observed now
    /// with the member's stay probability, and otherwise takes the Gaussian
    /// draw, clipped to what is physically possible. A row uses one uniform
    /// for all of its features, so the values that stay together do so
    /// together, as they do when a patient's state holds. The expected value
    /// (what the members' disagreement is measured on) reuses the same stay
    /// probability: one pass, one `exp` per value.
    ///
    /// At the first transition, a candidate whose first action the memory
    /// holds enough logged transitions for takes its row's next state from
    /// them instead (the same uniform picks it), and its expected values are
    /// the member's bootstrap average over them.
    fn step_member(&self, member: usize, output: &MemberOutput, gaussian: &[f32]) -> MemberStep {
        let dims = self.dynamic_dim();
        let base = ((self.steps_done() * self.members + member) * self.rows()) as u32;
        let n = gaussian.len();
        let mut step = MemberStep { next: Vec::with_capacity(n), observed: Vec::with_capacity(n), expected: Vec::with_capacity(n), ends: vec![None; self.rows()] };
        let memory = self.card.memory.as_ref().filter(|_| self.steps_done() == 0);
        for r in 0..self.rows() {
            let u = stay_uniform(self.request.seed, base + r as u32) as f64;
            let now = self.newest_step(member, r);
            if self.ended[member][r].is_some() {
                // A stay that has ended holds its values; its survival is fixed.
                for d in 0..dims {
                    let value = observed(now, dims, d).unwrap_or(f64::from(output.mean[r * dims + d]));
                    step.next.push(value as f32);
                    step.observed.push(true);
                    step.expected.push(value);
                }
                continue;
            }
            if let Some((memory, row)) = memory.zip(self.first_from_memory[r / self.request.samples]) {
                step.ends[r] = match self.recall(memory, member, row, u, now, &output.mean[r * dims..(r + 1) * dims], &mut step) {
                    Next::Cluster(_) => None,
                    Next::Died => Some(false),
                    Next::Survived => Some(true),
                };
                continue;
            }
            for d in 0..dims {
                let i = r * dims + d;
                let current = observed(now, dims, d);
                // A missing value cannot stay.
                let stay = if current.is_some() { stay_probability(output.stay_logit[i] as f64) } else { 0.0 };
                step.next.push(match current {
                    Some(value) if u < stay => value as f32,
                    _ => gaussian[i].clamp(self.bounds[d].0, self.bounds[d].1),
                });
                step.observed.push(true);
                step.expected.push(expected_value(stay, current, output.mean[i] as f64));
            }
        }
        step
    }

    /// A row's next values drawn from the memory's `row` with uniform `u`:
    /// a logged step of the drawn cluster, or, where the stay ends, the
    /// values as they are now (missing ones at the member's mean), which
    /// the bands then keep. Expected values: the member's bootstrap average
    /// over the row's outcomes valued the same way. Returns what was drawn.
    #[allow(clippy::too_many_arguments)]
    fn recall(&self, memory: &TransitionMemory, member: usize, row: usize, u: f64, now: &[f32], mean: &[f32], step: &mut MemberStep) -> Next {
        let dims = self.dynamic_dim();
        let value_of = |next: Next, d: usize| -> (f32, bool) {
            match next {
                Next::Cluster(k) => {
                    let logged = &memory.representatives[k as usize];
                    (logged.z[d], logged.observed[d])
                }
                Next::Died | Next::Survived => (observed(now, dims, d).map_or(mean[d], |v| v as f32), true),
            }
        };
        let drawn = memory.next(row, memory.pick(self.members, member, row, u));
        let probabilities = memory.probabilities(self.members, member, row);
        for d in 0..dims {
            let (value, measured) = value_of(drawn, d);
            step.next.push(value);
            step.observed.push(measured);
            step.expected.push(probabilities.iter().enumerate().map(|(e, p)| p * f64::from(value_of(memory.next(row, e), d).0)).sum());
        }
        drawn
    }

    /// Take every member's outputs and Gaussian draws for this step, record
    /// the step's forecasts, and move every window one step on.
    pub fn advance(&mut self, outputs: &[MemberOutput], draws: &[Vec<f32>]) -> &SimulationStep {
        assert!(!self.is_done(), "the simulation is complete");
        assert_eq!((outputs.len(), draws.len()), (self.members, self.members), "one output and one draw set per member");
        let (dims, samples) = (self.dynamic_dim(), self.request.samples);
        let t = self.steps_done();
        let steps: Vec<MemberStep> = (0..self.members).map(|m| self.step_member(m, &outputs[m], &draws[m])).collect();
        let draws: Vec<&[f32]> = steps.iter().map(|s| s.next.as_slice()).collect();
        let expected: Vec<&[f64]> = steps.iter().map(|s| s.expected.as_slice()).collect();
        let mut candidates = Vec::with_capacity(self.request.candidates.len());
        for c in 0..self.request.candidates.len() {
            let rows_of = || c * samples..(c + 1) * samples;
            let bands = self
                .key
                .iter()
                .map(|&(d, f)| {
                    let mut values: Vec<f64> =
                        draws.iter().flat_map(|member| rows_of().map(move |r| member[r * dims + d] as f64)).map(|z| self.card.normaliser.value(f, z)).collect();
                    values.sort_unstable_by(f64::total_cmp);
                    FeatureBand { feature: FEATURES[f].key.to_string(), p10: quantile(&values, 0.1), p50: quantile(&values, 0.5), p90: quantile(&values, 0.9) }
                })
                .collect();
            // A rollout whose stay has ended has its outcome.
            let death = |m: usize, r: usize| match self.ended[m][r] {
                Some(survived) => f64::from(u8::from(!survived)),
                None => sigmoid(outputs[m].outcome_logit[r] as f64),
            };
            let deaths: f64 = (0..self.members).flat_map(|m| rows_of().map(move |r| death(m, r))).sum();
            let survival = 1.0 - deaths / (self.members * samples) as f64;
            // SD over members of the expected next value, per row and feature.
            let mut spread = 0.0;
            for r in rows_of() {
                for d in 0..dims {
                    let at = r * dims + d;
                    let mean = expected.iter().map(|e| e[at]).sum::<f64>() / self.members as f64;
                    let var = expected.iter().map(|e| (e[at] - mean).powi(2)).sum::<f64>() / self.members as f64;
                    spread += var.sqrt();
                }
            }
            let disagreement = spread / (samples * dims) as f64;
            let logged_transitions = match (&self.card.memory, self.first_from_memory[c]) {
                (Some(memory), Some(row)) if t == 0 => Some(memory.transitions(row)),
                _ => None,
            };
            candidates.push(CandidateStep { candidate: c, action: self.request.action(c, t), bands, survival, disagreement, logged_transitions });
        }
        for (ended, step) in self.ended.iter_mut().zip(&steps) {
            for (status, ends) in ended.iter_mut().zip(&step.ends) {
                *status = status.or(*ends);
            }
        }
        self.encode_simulated(&steps, t + 1);
        self.result.steps.push(SimulationStep { step: t + 1, candidates });
        self.result.steps.last().expect("just pushed")
    }

    /// One step of a CPU simulation: each member's Gaussian draws (`draw`),
    /// then `advance`. The GPU path draws on the GPU and calls `advance`.
    pub fn draw_and_advance(&mut self, outputs: &[MemberOutput]) -> &SimulationStep {
        let draws: Vec<Vec<f32>> = outputs.iter().enumerate().map(|(m, o)| draw(o, self.seed(), self.counter_base(m))).collect();
        self.advance(outputs, &draws)
    }

    /// Encode each rollout's simulated step as the next input: drawn values
    /// (observed, but for a logged step's missing ones), the statics carried
    /// over, and the action the candidate gives at step `next`.
    fn encode_simulated(&mut self, steps: &[MemberStep], next: usize) {
        let (rows, dims, width) = (self.rows(), self.dynamic_dim(), self.input_dim());
        let statics = self.card.layout.statics.len();
        let levels = crate::action::LEVELS as usize;
        let simulated = (0..self.members)
            .map(|member| {
                let mut encoded = vec![0.0f32; rows * width];
                for r in 0..rows {
                    let action = self.request.action(r / self.request.samples, next);
                    // Statics: from the newest step this row read.
                    let previous = self.newest_step(member, r);
                    let step = &mut encoded[r * width..(r + 1) * width];
                    let drawn = r * dims..(r + 1) * dims;
                    step[..dims].copy_from_slice(&steps[member].next[drawn.clone()]);
                    for (mask, &measured) in step[dims..2 * dims].iter_mut().zip(&steps[member].observed[drawn]) {
                        *mask = f32::from(u8::from(measured));
                    }
                    step[2 * dims..2 * dims + statics].copy_from_slice(&previous[2 * dims..2 * dims + statics]);
                    step[2 * dims + statics + action.fluid as usize] = 1.0;
                    step[2 * dims + statics + levels + action.vaso as usize] = 1.0;
                }
                encoded
            })
            .collect();
        self.simulated = simulated;
    }

    pub fn finish(self) -> Simulation {
        assert!(self.is_done(), "finish() before the last step");
        self.result
    }
}

/// The largest difference between two simulations of the same request, with
/// every band in z units (divided by its feature's SD, so that urine in mL
/// and pH count alike), survival and disagreement as they are. Parity tests
/// hold the compute paths to this.
pub fn parity_diff(card: &ModelCard, a: &Simulation, b: &Simulation) -> f64 {
    assert_eq!(a.steps.len(), b.steps.len(), "simulations of different horizons");
    let mut diff: f64 = 0.0;
    for (x, y) in a.steps.iter().flat_map(|s| &s.candidates).zip(b.steps.iter().flat_map(|s| &s.candidates)) {
        assert_eq!(x.action, y.action, "simulations of different candidates");
        assert_eq!(x.logged_transitions, y.logged_transitions, "{:?}: drawn from logged transitions in one simulation, not the other", x.action);
        diff = diff.max((x.survival - y.survival).abs()).max((x.disagreement - y.disagreement).abs());
        for (p, q) in x.bands.iter().zip(&y.bands) {
            let sd = card.normaliser.sd[idx(&p.feature)];
            for (u, v) in [(p.p10, q.p10), (p.p50, q.p50), (p.p90, q.p90)] {
                diff = diff.max((u - v).abs() / sd);
            }
        }
    }
    diff
}

/// Feature `d` of an encoded step (`[values | observed masks | ...]`, z
/// units): its value, or `None` where it is missing.
fn observed(step: &[f32], dims: usize, d: usize) -> Option<f64> {
    (step[dims + d] > 0.0).then_some(step[d] as f64)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `mean + exp(log_sigma) * N(0, 1)` for every value, the noise keyed by
/// `(seed, base + i)`: what the WGSL sampling kernel computes on the GPU.
pub fn draw(output: &MemberOutput, seed: u32, base: u32) -> Vec<f32> {
    output
        .mean
        .iter()
        .zip(&output.log_sigma)
        .enumerate()
        .map(|(i, (&m, &ls))| m + ls.exp() * standard_normal(seed, base.wrapping_add(i as u32)))
        .collect()
}

/// `rows` split into `workers` contiguous ranges in order, as even as can
/// be: how the CPU path shares a simulation between threads natively and
/// between helper workers in the browser (`worker/src/pool.rs`).
pub fn row_ranges(rows: usize, workers: usize) -> Vec<Range<usize>> {
    (0..workers).map(|w| w * rows / workers..(w + 1) * rows / workers).collect()
}

/// The CPU forward pass (plain-slice matmuls, fused gates:
/// `cpu_inference.rs`), carrying every member's recurrent state.
pub struct CpuForward<'m> {
    model: &'m WorldModel,
    /// Per thread, per member: the recurrent state of the thread's rows.
    states: Vec<Vec<Option<FastState>>>,
}

impl<'m> CpuForward<'m> {
    pub fn new(model: &'m WorldModel) -> Self {
        Self { model, states: Vec::new() }
    }

    /// Every member's next outputs for all of the rollout's rows. Natively
    /// the rows are split between candle's threads (`RAYON_NUM_THREADS`),
    /// each computing every member for its rows, as the browser's helper
    /// workers do: rows divide evenly where five members on two threads
    /// would not, and one member's matrices are too small to split inside a
    /// product. Each row is computed alike whichever thread has it.
    pub fn feed_all(&mut self, rollout: &Rollout<'_>) -> Result<Vec<MemberOutput>> {
        let threads = if cfg!(target_arch = "wasm32") { 1 } else { candle_core::utils::get_num_threads() };
        self.feed_all_on(rollout, threads)
    }

    /// `feed_all` on `threads` threads (at most one per row); a simulation
    /// keeps its thread count from its first step.
    pub fn feed_all_on(&mut self, rollout: &Rollout<'_>, threads: usize) -> Result<Vec<MemberOutput>> {
        let (rows, members) = (rollout.rows(), rollout.members());
        let threads = threads.clamp(1, rows.max(1));
        if self.states.len() != threads {
            self.states = vec![vec![None; members]; threads];
        }
        let model = self.model;
        let ranges = row_ranges(rows, threads);
        let parts: Vec<Result<Vec<MemberOutput>>> = if threads == 1 {
            vec![feed_rows(model, rollout, 0..rows, &mut self.states[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = ranges.into_iter().zip(self.states.iter_mut()).map(|(range, states)| scope.spawn(move || feed_rows(model, rollout, range, states))).collect();
                handles.into_iter().map(|h| h.join().expect("a simulation thread panicked")).collect()
            })
        };
        let mut per_thread = parts.into_iter().collect::<Result<Vec<_>>>()?.into_iter().map(Vec::into_iter).collect::<Vec<_>>();
        Ok((0..members).map(|_| MemberOutput::concat(per_thread.iter_mut().map(|t| t.next().expect("every thread ran every member")))).collect())
    }
}

/// Every member reads its next step for `rows` of the rollout on top of
/// `states` (one per member, those rows' states; `None` before the first
/// step); returns each member's outputs for those rows. One thread natively,
/// or the browser worker's own share beside its helpers.
pub fn feed_rows(model: &WorldModel, rollout: &Rollout<'_>, rows: Range<usize>, states: &mut [Option<FastState>]) -> Result<Vec<MemberOutput>> {
    (0..rollout.members())
        .map(|m| {
            let (state, output) = feed_member(model, m, states[m].take(), &rollout.feed(m, rows.clone()))?;
            states[m] = Some(state);
            Ok(output)
        })
        .collect()
}

/// One member reads `feed` (a context from a zero state, or a simulated
/// step on top of `state`); returns the new state of the feed's rows and
/// their predictions. The browser's simulation helpers call it for the rows
/// they hold (worker/src/pool.rs).
pub fn feed_member(model: &WorldModel, member: usize, state: Option<FastState>, feed: &Feed<'_>) -> Result<(FastState, MemberOutput)> {
    let net = model.fast_member(member);
    let dim = model.card.layout.input_dim();
    match *feed {
        Feed::Context { earlier, current, samples, ref rows } => {
            if earlier.len() % dim != 0 || current.is_empty() || current.len() % dim != 0 || samples == 0 {
                candle_core::bail!("member {member}: a context of {} + {} inputs is not whole steps of {dim}", earlier.len(), current.len());
            }
            let candidates = current.len() / dim;
            if rows.end > candidates * samples {
                candle_core::bail!("member {member}: rows {rows:?} of {candidates} candidates x {samples} samples");
            }
            let mut shared = net.zero_state(1);
            for step in earlier.chunks_exact(dim) {
                net.step(step, &mut shared);
            }
            let mut branched = FastState::select(&[shared], &vec![0; candidates]);
            net.step(current, &mut branched);
            let output = net.heads(&branched);
            let candidate_of: Vec<u32> = rows.clone().map(|r| (r / samples) as u32).collect();
            Ok((FastState::select(&[branched], &candidate_of), output.select_rows(&candidate_of)))
        }
        Feed::Simulated(inputs) => {
            let Some(mut state) = state else { candle_core::bail!("member {member}: a simulated step before the context") };
            if inputs.len() != state.rows() * dim {
                candle_core::bail!("member {member}: {} inputs for {} rows x {dim}", inputs.len(), state.rows());
            }
            net.step(inputs, &mut state);
            let output = net.heads(&state);
            Ok((state, output))
        }
    }
}

/// Run a whole simulation with candle on the CPU, calling `on_step` as each
/// step completes (the worker streams these).
pub fn simulate_on_cpu(model: &WorldModel, request: SimulateRequest, mut on_step: impl FnMut(&SimulationStep)) -> Result<Simulation> {
    let mut rollout = Rollout::new(&model.card, request).map_err(candle_core::Error::wrap)?;
    let mut forward = CpuForward::new(model);
    while !rollout.is_done() {
        let outputs = forward.feed_all(&rollout)?;
        on_step(rollout.draw_and_advance(&outputs));
    }
    Ok(rollout.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::simulation::CourseStep;

    pub const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../public/models/world-model");

    /// The shipped GRU ensemble without its memory of logged transitions:
    /// these tests are about the GRU's rollouts; the memory's tests give a
    /// model their own.
    fn shipped() -> WorldModel {
        let mut model = WorldModel::load(std::path::Path::new(SHIPPED)).expect("the shipped world model");
        model.card.memory = None;
        model
    }

    fn course() -> Vec<CourseStep> {
        crate::simulation::reference_course()
    }

    #[test]
    fn a_model_with_too_short_a_window_is_an_error_not_a_panic() {
        let mut card = shipped().card;
        card.config.window = CONTEXT_STEPS;
        let error = Rollout::new(&card, request(1)).err().expect("refused");
        assert_eq!(error, RequestError::ModelWindow { window: CONTEXT_STEPS, needed: CONTEXT_STEPS + MAX_HORIZON });
        assert!(error.to_string().contains("retrain it with a longer window"));
    }

    fn request(seed: u32) -> SimulateRequest {
        SimulateRequest {
            history: course(),
            candidates: vec![vec![Action::NONE], vec![Action { fluid: 3, vaso: 2 }], vec![Action { fluid: 4, vaso: 0 }, Action::NONE]],
            horizon: 4,
            samples: 8,
            seed,
        }
    }

    #[test]
    fn a_simulation_has_every_step_and_candidate_with_ordered_bands() {
        let model = shipped();
        let mut streamed = 0;
        let simulation = simulate_on_cpu(&model, request(1), |_| streamed += 1).unwrap();
        assert_eq!((simulation.steps.len(), streamed), (4, 4));
        for step in &simulation.steps {
            assert_eq!(step.candidates.len(), 3);
            for c in &step.candidates {
                assert_eq!(c.bands.len(), KEY_FEATURES.len());
                for b in &c.bands {
                    assert!(b.p10 <= b.p50 && b.p50 <= b.p90, "{b:?}");
                    let f = FEATURES[idx(&b.feature)];
                    assert!(b.p10 >= f.plausible.0 - 1e-6 && b.p90 <= f.plausible.1 + 1e-6, "{b:?} outside {:?}", f.plausible);
                }
                assert!((0.0..=1.0).contains(&c.survival));
                assert!(c.disagreement > 0.0, "independently trained members never agree exactly");
            }
        }
        // The plan is followed: candidate 2 gives fluid 4 first, then nothing.
        let actions: Vec<Action> = simulation.course(2).map(|c| c.action).collect();
        assert_eq!(actions, vec![Action { fluid: 4, vaso: 0 }, Action::NONE, Action::NONE, Action::NONE]);
    }

    #[test]
    fn the_same_seed_gives_the_same_simulation_and_another_seed_does_not() {
        let model = shipped();
        let a = simulate_on_cpu(&model, request(5), |_| {}).unwrap();
        assert_eq!(a, simulate_on_cpu(&model, request(5), |_| {}).unwrap());
        assert_ne!(a, simulate_on_cpu(&model, request(6), |_| {}).unwrap());
    }

    #[test]
    fn carrying_the_state_predicts_what_the_whole_window_predicts() {
        // The design's premise: feeding the context, then one simulated step
        // at a time, gives the same predictions as reading the whole course
        // as one left-padded window (docs/world-model.md).
        let model = shipped();
        let request = SimulateRequest { samples: 1, ..request(3) };
        let mut rollout = Rollout::new(&model.card, request.clone()).unwrap();
        let mut forward = CpuForward::new(&model);
        let mut courses: Vec<super::super::History> = (0..3)
            .map(|c| {
                let mut h: super::super::History = course().into_iter().map(|s| (s.values, s.action)).collect();
                h.last_mut().unwrap().1 = request.action(c, 0);
                h
            })
            .collect();
        for t in 0..3 {
            assert_eq!(rollout.steps(), if t == 0 { 2 } else { 1 });
            let outputs = forward.feed_all(&rollout).unwrap();
            let windowed = model.predict(&model.encode(&courses).unwrap()).unwrap();
            for (m, output) in outputs.iter().enumerate() {
                let mean: Vec<f32> = windowed[m].mean.flatten_all().unwrap().to_vec1().unwrap();
                let stay: Vec<f32> = windowed[m].stay_logit.flatten_all().unwrap().to_vec1().unwrap();
                let logit: Vec<f32> = windowed[m].outcome_logit.to_vec1().unwrap();
                let pairs = output.mean.iter().zip(&mean).chain(output.stay_logit.iter().zip(&stay)).chain(output.outcome_logit.iter().zip(&logit));
                let diff = pairs.map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(diff < 1e-5, "step {t} member {m}: carried state differs from the window by {diff}");
            }
            // Member 0's course continues with its own next values.
            let draws: Vec<Vec<f32>> = outputs.iter().enumerate().map(|(m, o)| draw(o, rollout.seed(), rollout.counter_base(m))).collect();
            rollout.advance(&outputs, &draws);
            // Only member 0 is checked against the window from here on: give
            // every member member 0's values so all courses agree.
            let (dims, width) = (rollout.dynamic_dim(), rollout.input_dim());
            for (c, history) in courses.iter_mut().enumerate() {
                let current = history.last().unwrap().0.clone();
                let values = model.predicted_values(&current, &rollout.simulated[0][c * width..c * width + dims]);
                history.push((values, request.action(c, t + 1)));
            }
            let member0 = rollout.simulated[0].clone();
            for simulated in rollout.simulated.iter_mut() {
                simulated.clone_from(&member0);
            }
        }
    }

    #[test]
    fn reading_the_shared_context_once_predicts_what_every_rollout_reading_it_predicts() {
        let model = shipped();
        let rollout = Rollout::new(&model.card, request(1)).unwrap();
        let (rows, width, steps) = (rollout.rows(), rollout.input_dim(), rollout.steps());
        let max_diff = |a: &MemberOutput, b: &MemberOutput| {
            let pairs = a.stay_logit.iter().zip(&b.stay_logit).chain(a.mean.iter().zip(&b.mean)).chain(a.log_sigma.iter().zip(&b.log_sigma));
            pairs.chain(a.outcome_logit.iter().zip(&b.outcome_logit)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
        };
        for m in 0..rollout.members() {
            let (state, shared) = feed_member(&model, m, None, &rollout.feed(m, 0..rows)).unwrap();
            assert_eq!((state.rows(), shared.outcome_logit.len()), (rows, rows));
            // Every rollout reads its whole context, as the WebGPU path does.
            let net = model.fast_member(m);
            let mut each_state = net.zero_state(rows);
            let expanded = rollout.expanded_inputs(m);
            for t in 0..steps {
                let x: Vec<f32> = expanded.chunks_exact(steps * width).flat_map(|row| row[t * width..(t + 1) * width].iter().copied()).collect();
                net.step(&x, &mut each_state);
            }
            let diff = max_diff(&shared, &net.heads(&each_state));
            assert!(diff < 1e-6, "member {m}: the shared context differs by {diff}");
        }
        // A range of rows gets exactly those rows (the helpers' share).
        let (_, part) = feed_member(&model, 0, None, &rollout.feed(0, 5..13)).unwrap();
        let (_, whole) = feed_member(&model, 0, None, &rollout.feed(0, 0..rows)).unwrap();
        assert_eq!(part, whole.select_rows(&(5..13).collect::<Vec<u32>>()));
        let error = feed_member(&model, 0, None, &rollout.feed(0, 0..rows + 1)).unwrap_err();
        assert!(error.to_string().contains("candidates x 8 samples"), "{error}");
    }

    #[test]
    fn a_share_of_the_rows_drawn_from_its_row_counter_is_those_rows_draws() {
        let model = shipped();
        let rollout = Rollout::new(&model.card, request(4)).unwrap();
        let outputs = CpuForward::new(&model).feed_all(&rollout).unwrap();
        let dims = rollout.dynamic_dim();
        for (m, output) in outputs.iter().enumerate() {
            let whole = draw(output, rollout.seed(), rollout.counter_base(m));
            let rows = 3..rollout.rows();
            let share = MemberOutput {
                stay_logit: output.stay_logit[rows.start * dims..].to_vec(),
                mean: output.mean[rows.start * dims..].to_vec(),
                log_sigma: output.log_sigma[rows.start * dims..].to_vec(),
                outcome_logit: output.outcome_logit[rows.clone()].to_vec(),
            };
            assert_eq!(draw(&share, rollout.seed(), rollout.row_counter(m, rows.start)), whole[rows.start * dims..], "member {m}");
        }
    }

    #[test]
    fn threads_sharing_the_rows_give_the_simulation_of_one_thread() {
        let model = shipped();
        let (mut one, mut three) = (Rollout::new(&model.card, request(4)).unwrap(), Rollout::new(&model.card, request(4)).unwrap());
        let (mut alone, mut shared) = (CpuForward::new(&model), CpuForward::new(&model));
        while !one.is_done() {
            let (a, b) = (alone.feed_all_on(&one, 1).unwrap(), shared.feed_all_on(&three, 3).unwrap());
            assert_eq!(a, b, "step {}", one.steps_done() + 1);
            one.draw_and_advance(&a);
            three.draw_and_advance(&b);
        }
        assert_eq!(one.finish(), three.finish());
    }

    #[test]
    fn the_context_is_the_newest_history_steps_with_the_candidates_action() {
        let model = shipped();
        let long: Vec<CourseStep> = (0..9).flat_map(|_| course()).collect();
        let rollout = Rollout::new(&model.card, SimulateRequest { history: long, ..request(1) }).unwrap();
        assert_eq!(rollout.steps(), CONTEXT_STEPS);
        let history: super::super::History = course().into_iter().map(|s| (s.values, s.action)).collect();
        let mut expected = Vec::new();
        let steps: Vec<(&[Option<f64>], Action)> = history.iter().map(|(v, a)| (v.as_slice(), *a)).collect();
        let mut context: Vec<(&[Option<f64>], Action)> = steps.iter().cycle().take(CONTEXT_STEPS).copied().collect();
        context.last_mut().unwrap().1 = Action { fluid: 3, vaso: 2 };
        model.card.layout.encode_window(&model.card.normaliser, &context, CONTEXT_STEPS, &mut expected);
        let width = CONTEXT_STEPS * rollout.input_dim();
        // Candidate 1, every sample, every member.
        for m in 0..rollout.members() {
            for s in 0..8 {
                let r = 8 + s;
                assert_eq!(&rollout.expanded_inputs(m)[r * width..(r + 1) * width], expected.as_slice());
            }
        }
    }

    #[test]
    fn advancing_appends_the_draws_and_next_action_and_scores_members() {
        let model = shipped();
        let mut rollout = Rollout::new(&model.card, SimulateRequest { samples: 1, ..request(1) }).unwrap();
        let (rows, dims) = (rollout.rows(), rollout.dynamic_dim());
        // Every member says the same: no disagreement; death logit 0: survival
        // 0.5; nothing stays.
        let same = MemberOutput { stay_logit: vec![-40.0; rows * dims], mean: vec![0.25; rows * dims], log_sigma: vec![-1.0; rows * dims], outcome_logit: vec![0.0; rows] };
        let outputs = vec![same.clone(); rollout.members()];
        let draws = vec![vec![0.25f32; rows * dims]; rollout.members()];
        let step = rollout.advance(&outputs, &draws).clone();
        for c in &step.candidates {
            assert!(c.disagreement < 1e-9, "{}", c.disagreement);
            assert!((c.survival - 0.5).abs() < 1e-12);
            let map = &c.bands[0];
            let expected = model.card.normaliser.value(idx("map"), 0.25);
            assert!((map.p10 - expected).abs() < 1e-4 && (map.p90 - expected).abs() < 1e-4, "{map:?} vs {expected}");
        }
        assert_eq!(rollout.steps(), 1);
        let width = rollout.input_dim();
        // Candidate 2 (row 2) holds nothing after its first fluid-4 step.
        let newest = &rollout.expanded_inputs(0)[2 * width..3 * width];
        assert!(newest[..dims].iter().all(|&z| z == 0.25));
        assert!(newest[dims..2 * dims].iter().all(|&m| m == 1.0));
        let statics = model.card.layout.statics.len();
        let one_hot = &newest[2 * dims + statics..];
        assert_eq!(one_hot, &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn values_stay_with_the_members_stay_probability_and_together() {
        let model = shipped();
        let mut rollout = Rollout::new(&model.card, SimulateRequest { samples: 64, ..request(2) }).unwrap();
        let (rows, dims, members) = (rollout.rows(), rollout.dynamic_dim(), rollout.members());
        // Each row's newest step, the last of the context it reads.
        let (inputs, steps, width) = (rollout.expanded_inputs(0), rollout.steps(), rollout.input_dim());
        let newest = |r: usize| &inputs[(r * steps + steps - 1) * width..(r * steps + steps) * width];
        let current: Vec<Vec<Option<f64>>> = (0..rows).map(|r| (0..dims).map(|d| observed(newest(r), dims, d)).collect()).collect();
        // Member k keeps its values with probability k / (members - 1).
        let outputs: Vec<MemberOutput> = (0..members)
            .map(|k| {
                let p = k as f64 / (members - 1) as f64;
                let logit = if p == 0.0 { -40.0 } else if p == 1.0 { 40.0 } else { (p / (1.0 - p)).ln() } as f32;
                MemberOutput { stay_logit: vec![logit; rows * dims], mean: vec![3.0; rows * dims], log_sigma: vec![-8.0; rows * dims], outcome_logit: vec![0.0; rows] }
            })
            .collect();
        let draws: Vec<Vec<f32>> = outputs.iter().enumerate().map(|(m, o)| draw(o, rollout.seed(), rollout.counter_base(m))).collect();
        rollout.advance(&outputs, &draws);
        let width = rollout.input_dim();
        for k in 0..members {
            let mut stayed_rows = 0;
            for r in 0..rows {
                let next = &rollout.expanded_inputs(k)[r * width..r * width + dims];
                let gaussian = |d: usize| draws[k][r * dims + d].clamp(rollout.bounds[d].0, rollout.bounds[d].1);
                // Features whose Gaussian draw differs from the current value tell a stay apart.
                let stayed: Vec<bool> = (0..dims)
                    .filter_map(|d| current[r][d].filter(|&v| (gaussian(d) as f64 - v).abs() > 1e-4).map(|v| (next[d] as f64 - v).abs() < 1e-6))
                    .collect();
                assert!(stayed.len() > dims / 2 && stayed.iter().all(|&s| s == stayed[0]), "member {k} row {r}: features stayed apart {stayed:?}");
                stayed_rows += usize::from(stayed[0]);
            }
            let share = stayed_rows as f64 / rows as f64;
            let p = k as f64 / (members - 1) as f64;
            assert!((share - p).abs() < 0.1, "member {k}: {share} of rows stayed, expected {p}");
        }
    }

    /// A memory whose only cluster with rows is the reference patient's
    /// current state: candidate `NONE` always dies there, fluid 4 always goes
    /// to a logged state of cluster 1 (MAP 80, lactate 1.2: far from now).
    fn model_with_memory() -> (WorldModel, Vec<Option<f64>>) {
        use crate::world_model::memory::{two_state_memory, MemoryRow};
        let mut model = shipped();
        let now = course().last().unwrap().values.clone();
        let mut reached = now.clone();
        reached[idx("map")] = Some(80.0);
        reached[idx("lactate")] = Some(1.2);
        let rows = vec![
            MemoryRow { cluster: 0, action: Action::NONE.index() as u8, next: vec![(2, 40)] },
            MemoryRow { cluster: 0, action: Action { fluid: 4, vaso: 0 }.index() as u8, next: vec![(1, 25)] },
        ];
        model.card.memory = Some(two_state_memory(&model.card, &now, &reached, rows));
        (model, reached)
    }

    #[test]
    fn the_first_transition_comes_from_the_memory_where_it_holds_the_candidate() {
        let (with_memory, reached) = model_with_memory();
        let remembered = simulate_on_cpu(&with_memory, request(3), |_| {}).unwrap();
        let plain = simulate_on_cpu(&shipped(), request(3), |_| {}).unwrap();
        // Candidate 0 (nothing): its stay ends in death at the first transition.
        let none: Vec<&CandidateStep> = remembered.course(0).collect();
        assert!(none[0].survival > 0.0, "step 1 is read before the transition");
        assert!(none[1..].iter().all(|c| c.survival == 0.0), "{:?}", none.iter().map(|c| c.survival).collect::<Vec<_>>());
        assert!(none[1..].iter().all(|c| c.bands == none[0].bands), "an ended stay holds its values");
        // Candidate 2 (fluid 4, then nothing): every rollout reaches the logged state.
        let fluid: Vec<&CandidateStep> = remembered.course(2).collect();
        for band in &fluid[0].bands {
            let logged = reached[idx(&band.feature)].unwrap();
            assert!((band.p10 - logged).abs() < 1e-3 && (band.p90 - logged).abs() < 1e-3, "{band:?} vs {logged}");
        }
        assert_eq!(fluid[0].disagreement, 0.0, "one logged outcome: every member's bootstrap agrees");
        // Each says what its first step was drawn from.
        assert_eq!((none[0].logged_transitions, fluid[0].logged_transitions), (Some(40), Some(25)));
        assert!(none[1..].iter().chain(&fluid[1..]).all(|c| c.logged_transitions.is_none()), "later steps are the GRU's");
        assert_ne!(fluid[1].bands, plain.course(2).nth(1).unwrap().bands, "later steps go on from the logged state");
        // Candidate 1 has no logged transitions: the GRU simulates it exactly as without a memory.
        assert_eq!(remembered.course(1).cloned().collect::<Vec<_>>(), plain.course(1).cloned().collect::<Vec<_>>());
        // Before the first transition, nothing differs.
        assert_eq!(none[0].survival, plain.course(0).next().unwrap().survival);
    }

    #[test]
    fn cpu_draws_follow_each_members_gaussian() {
        let output = MemberOutput { stay_logit: vec![], mean: vec![2.0; 20_000], log_sigma: vec![(0.5f32).ln(); 20_000], outcome_logit: vec![] };
        let draws = draw(&output, 9, 0);
        let mean = draws.iter().map(|&x| x as f64).sum::<f64>() / 20_000.0;
        let sd = (draws.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / 20_000.0).sqrt();
        assert!((mean - 2.0).abs() < 0.02 && (sd - 0.5).abs() < 0.02, "mean {mean} sd {sd}");
    }
}
