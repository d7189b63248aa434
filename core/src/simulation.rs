//! What a simulation of candidate treatments asks and answers: the types the
//! app, the worker and the CLI share (browser-safe, no candle). The engine
//! that fills them in is `world_model::simulate`.

use serde::{Deserialize, Serialize};

use crate::action::Action;

/// Features whose simulated course is reported (schema keys), in display order.
pub const KEY_FEATURES: [&str; 5] = ["map", "hr", "lactate", "urine_ml_4h", "sofa"];

/// The predictive quantiles reported for each key feature.
pub const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Longest horizon a request may ask for (6 steps = 24 h, the model's window).
pub const MAX_HORIZON: usize = 6;
/// Most samples per candidate and member a request may ask for.
pub const MAX_SAMPLES: usize = 64;
/// Most candidates in one request (the whole 5 x 5 grid).
pub const MAX_CANDIDATES: usize = 25;

/// One recorded step of a patient's course: clinical values in schema order
/// (`None` = not measured) and the treatment given in that step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CourseStep {
    pub values: Vec<Option<f64>>,
    pub action: Action,
}

/// Simulate each candidate from the end of `history`. A candidate is a plan:
/// its actions are given at the current step and the next ones; a plan
/// shorter than the horizon holds its last action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulateRequest {
    /// Oldest first; the last step's own action is replaced by each candidate.
    pub history: Vec<CourseStep>,
    pub candidates: Vec<Vec<Action>>,
    /// Steps of 4 h to simulate, 1..=MAX_HORIZON.
    pub horizon: usize,
    /// Draws per candidate and ensemble member, 1..=MAX_SAMPLES.
    pub samples: usize,
    /// Seeds the Gaussian draws: the same request gives the same answer.
    pub seed: u32,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("the history is empty: at least the current step is needed")]
    EmptyHistory,
    #[error("history step {step} has {found} values, expected {expected} (one per schema feature)")]
    Values { step: usize, found: usize, expected: usize },
    #[error("{0} candidates: expected 1 to {MAX_CANDIDATES}")]
    Candidates(usize),
    #[error("candidate {0} has no action")]
    EmptyPlan(usize),
    #[error("horizon {0}: expected 1 to {MAX_HORIZON} steps")]
    Horizon(usize),
    #[error("{0} samples: expected 1 to {MAX_SAMPLES}")]
    Samples(usize),
    #[error("the world model reads windows of {window} steps; simulating needs at least {needed} (context + horizon): retrain it with a longer window")]
    ModelWindow { window: usize, needed: usize },
}

impl SimulateRequest {
    pub fn validate(&self, features: usize) -> Result<(), RequestError> {
        if self.history.is_empty() {
            return Err(RequestError::EmptyHistory);
        }
        if let Some((step, s)) = self.history.iter().enumerate().find(|(_, s)| s.values.len() != features) {
            return Err(RequestError::Values { step, found: s.values.len(), expected: features });
        }
        if self.candidates.is_empty() || self.candidates.len() > MAX_CANDIDATES {
            return Err(RequestError::Candidates(self.candidates.len()));
        }
        if let Some(c) = self.candidates.iter().position(|plan| plan.is_empty()) {
            return Err(RequestError::EmptyPlan(c));
        }
        if !(1..=MAX_HORIZON).contains(&self.horizon) {
            return Err(RequestError::Horizon(self.horizon));
        }
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            return Err(RequestError::Samples(self.samples));
        }
        Ok(())
    }

    /// The action a candidate gives at simulated step `t`.
    pub fn action(&self, candidate: usize, t: usize) -> Action {
        let plan = &self.candidates[candidate];
        plan[t.min(plan.len() - 1)]
    }
}

impl SimulateRequest {
    /// Every one of the 25 actions, held for `horizon` steps: the sweep the
    /// planner and the 5 x 5 grid need.
    pub fn full_sweep(history: Vec<CourseStep>, horizon: usize, samples: usize, seed: u32) -> Self {
        let candidates = (0..crate::action::N_ACTIONS).map(|a| vec![Action::from_index(a).expect("0..25")]).collect();
        Self { history, candidates, horizon, samples, seed }
    }
}

/// A fixed, made-up hypotensive patient (two steps: fluids given, MAP still
/// 58 mmHg, lactate 4.1 mmol/L; every other value mid-band). The app's
/// world-model check and the benchmarks simulate it; it is nobody's data.
pub fn reference_course() -> Vec<CourseStep> {
    use crate::cohort::schema::{idx, FEATURES};
    let mut values: Vec<Option<f64>> = FEATURES.iter().map(|f| Some(((f.clip.0 + f.clip.1) / 2.0).round())).collect();
    for (key, value) in [("map", 58.0), ("lactate", 4.1), ("sex_male", 1.0), ("mechvent", 0.0), ("sofa", 8.0), ("age_years", 67.0)] {
        values[idx(key)] = Some(value);
    }
    vec![CourseStep { values: values.clone(), action: Action { fluid: 2, vaso: 0 } }, CourseStep { values, action: Action::NONE }]
}

/// 10 / 50 / 90 % of one feature's simulated values, in clinical units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureBand {
    pub feature: String,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
}

/// One candidate at one simulated step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateStep {
    pub candidate: usize,
    pub action: Action,
    /// The key features' values after this step (`KEY_FEATURES` order).
    pub bands: Vec<FeatureBand>,
    /// Predicted probability of surviving the stay, given the course up to
    /// and including this step's treatment (mean over members and samples).
    pub survival: f64,
    /// SD over ensemble members of their predicted means (z units, averaged
    /// over features and samples): how far this question is from the data.
    /// (The agent's simulate tool answers the SD over members of their
    /// survival instead, `agent/runtime.rs`.)
    pub disagreement: f64,
    /// Where this step's values were drawn from the world model's memory of
    /// logged transitions (the first step only, where the memory holds the
    /// patient's state and this action): how many logged transitions the
    /// draw is from. `None`: the GRU's forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_transitions: Option<u32>,
}

/// Every candidate at one simulated step (what the worker streams).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationStep {
    /// 1-based: step 1 is 4 h after the current step.
    pub step: usize,
    pub candidates: Vec<CandidateStep>,
}

/// The whole answer, step by step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Simulation {
    pub steps: Vec<SimulationStep>,
}

impl Simulation {
    /// A candidate's course, step by step.
    pub fn course(&self, candidate: usize) -> impl Iterator<Item = &CandidateStep> {
        self.steps.iter().map(move |s| &s.candidates[candidate])
    }
}

/// Quantile of an ascending sorted sample by linear interpolation (the
/// "linear" definition: numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of an empty sample");
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// A standard normal draw that depends only on `(seed, counter)`: the CPU and
/// the WGSL sampling kernel (`worker/src/kernels/sample.wgsl`) compute the
/// same function, so both compute paths draw the same numbers.
pub fn standard_normal(seed: u32, counter: u32) -> f32 {
    let (u1, u2) = uniform_pair(seed, counter);
    (-2.0 * u1.ln()).sqrt() * cos_turns(u2)
}

/// The uniform in (0, 1) that decides whether a simulated row's values stay
/// as they are (`core/src/world_model/mixture.rs`): its own stream, apart
/// from the Gaussian draws of [`standard_normal`].
pub fn stay_uniform(seed: u32, counter: u32) -> f32 {
    uniform_pair(seed ^ 0x57A7_0000, counter).0
}

/// cos(2 pi u) for u in [0, 1): reduced by symmetry to an angle in
/// [0, pi/2] and summed as a Taylor polynomial (error < 1e-8). WGSL's own
/// `cos` may be off by 2^-11, too much for the 1e-4 parity the two compute
/// paths are held to, so both evaluate this polynomial.
pub fn cos_turns(u: f32) -> f32 {
    // cos(2 pi u) = -cos(2 pi t) with t = |u - 1/2| in [0, 1/2].
    let t = (u - 0.5).abs();
    let (angle, sign) = if t > 0.25 { (std::f32::consts::TAU * (0.5 - t), 1.0) } else { (std::f32::consts::TAU * t, -1.0) };
    let x2 = angle * angle;
    let c = 1.0
        + x2 * (-1.0 / 2.0 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40_320.0 + x2 * (-1.0 / 3_628_800.0 + x2 * (1.0 / 479_001_600.0))))));
    sign * c
}

/// Two uniforms in (0, 1) from a PCG-style hash (24 bits each: exact in f32).
pub fn uniform_pair(seed: u32, counter: u32) -> (f32, f32) {
    let key = pcg_hash(seed ^ 0x9E37_79B9);
    let a = pcg_hash(counter.wrapping_mul(2) ^ key);
    let b = pcg_hash(counter.wrapping_mul(2).wrapping_add(1) ^ key);
    let unit = |h: u32| ((h >> 8) as f32 + 0.5) / 16_777_216.0;
    (unit(a), unit(b))
}

/// The PCG-RXS-M-XS 32-bit output permutation of one LCG step (O'Neill 2014).
pub fn pcg_hash(input: u32) -> u32 {
    let state = input.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SimulateRequest {
        SimulateRequest {
            history: vec![CourseStep { values: vec![None; 3], action: Action::NONE }],
            candidates: vec![vec![Action { fluid: 1, vaso: 0 }, Action { fluid: 0, vaso: 2 }]],
            horizon: 3,
            samples: 4,
            seed: 1,
        }
    }

    #[test]
    fn plans_shorter_than_the_horizon_hold_their_last_action() {
        let r = request();
        assert_eq!(r.action(0, 0), Action { fluid: 1, vaso: 0 });
        assert_eq!(r.action(0, 1), Action { fluid: 0, vaso: 2 });
        assert_eq!(r.action(0, 2), Action { fluid: 0, vaso: 2 });
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(request().validate(3), Ok(()));
        assert_eq!(request().validate(4), Err(RequestError::Values { step: 0, found: 3, expected: 4 }));
        assert_eq!(SimulateRequest { horizon: 7, ..request() }.validate(3), Err(RequestError::Horizon(7)));
        assert_eq!(SimulateRequest { samples: 0, ..request() }.validate(3), Err(RequestError::Samples(0)));
        assert_eq!(SimulateRequest { candidates: vec![vec![]], ..request() }.validate(3), Err(RequestError::EmptyPlan(0)));
        assert_eq!(SimulateRequest { candidates: vec![], ..request() }.validate(3), Err(RequestError::Candidates(0)));
        assert_eq!(SimulateRequest { history: vec![], ..request() }.validate(3), Err(RequestError::EmptyHistory));
    }

    #[test]
    fn the_full_sweep_and_reference_course_are_valid_requests() {
        let sweep = SimulateRequest::full_sweep(reference_course(), 6, 16, 1);
        assert_eq!(sweep.validate(crate::cohort::schema::FEATURES.len()), Ok(()));
        assert_eq!(sweep.candidates.len(), 25);
        assert_eq!(sweep.candidates[7], vec![Action { fluid: 1, vaso: 2 }]);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&sorted, 0.5), 3.0);
        assert!((quantile(&sorted, 0.1) - 1.4).abs() < 1e-12);
        assert!((quantile(&sorted, 0.9) - 4.6).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn the_cosine_polynomial_matches_cos() {
        for i in 0..10_000 {
            let u = i as f32 / 10_000.0;
            let exact = (std::f64::consts::TAU * u as f64).cos();
            assert!((cos_turns(u) as f64 - exact).abs() < 1e-6, "u = {u}");
        }
    }

    #[test]
    fn normal_draws_are_reproducible_and_standard() {
        assert_eq!(standard_normal(3, 10), standard_normal(3, 10));
        assert_ne!(standard_normal(3, 10), standard_normal(4, 10));
        let n = 200_000u32;
        let draws: Vec<f64> = (0..n).map(|i| standard_normal(11, i) as f64).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let below = draws.iter().filter(|&&x| x < 1.2816).count() as f64 / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!((below - 0.9).abs() < 0.005, "P(x < z_0.9) = {below}");
    }
}
