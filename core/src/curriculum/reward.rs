//! Stage 3's reward: what the world model says would follow a prescription.
//! The paper's form (Raghu et al. 2017; clinical-reference.md section 1):
//! a terminal +15 for survival and -15 for death, taken here in expectation
//! from the outcome head after the prescription is held for `horizon` steps;
//! per simulated step -0.025 when SOFA stays the same and above zero,
//! -0.125 per point of SOFA change and -2 tanh(lactate change), read from the
//! simulated medians. Our additions, as the issue asks: a penalty per
//! guideline rule the prescription breaks now and one when clinicians rarely
//! gave it in states like the patient's (out of support).
//!
//! All 25 actions are simulated at once for a state, so a group of sampled
//! decisions is scored by looking up each prescription.
//!
//! With `as_the_teacher_ranks` the terminal term reads survival as the
//! simulate tool answers it and the teacher ranks it (the planner's
//! survival over the world model's memory, less its penalty for the
//! ensemble's disagreement), not the sampled simulation's survival at the
//! horizon. Why: under the prescribed best the agent prescribes the
//! teacher's best of what it simulated, and stage 3 with the sampled
//! survival, which knows neither the memory's planning nor the penalty for
//! a question far from the data, moved the agent away from its teacher's
//! treatment (docs/training.md).

use serde::{Deserialize, Serialize};

use crate::action::{Action, N_ACTIONS};
use crate::agent::observation::LoggedPractice;
use crate::cohort::schema::idx;
use crate::guideline::{violations, Situation};
use crate::planner::{tool_scores, MpcConfig};
use crate::simulation::{CourseStep, SimulateRequest, Simulation};
use crate::world_model::simulate::simulate_on_cpu;
use crate::world_model::WorldModel;

/// Terminal reward for surviving (and minus this for dying).
pub const TERMINAL: f64 = 15.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// Steps (4 h each) the prescription is held in the simulation.
    pub horizon: usize,
    /// Draws per member and action.
    pub samples: usize,
    /// Subtracted per guideline rule the prescription breaks.
    pub guideline_penalty: f64,
    /// Subtracted when the prescription is out of support in logged
    /// states like this one (below the support model's threshold).
    pub support_penalty: f64,
    /// The terminal term from the teacher's ranking of survival (module
    /// comment); absent: from the sampled simulation, as the shipped
    /// stage-3 adapter was trained.
    #[serde(default)]
    pub as_the_teacher_ranks: bool,
}

/// One action's reward and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reward {
    pub action: Action,
    /// Predicted survival after the horizon (mean over members and draws),
    /// or as the teacher ranks it (`RewardConfig::as_the_teacher_ranks`).
    pub survival: f64,
    /// The SOFA and lactate terms summed over the simulated steps.
    pub shaping: f64,
    pub violations: usize,
    pub supported: bool,
    pub total: f64,
}

/// The per-step shaping term between two values of SOFA and lactate (either
/// missing: that part is left out).
pub fn shaping(sofa: (Option<f64>, Option<f64>), lactate: (Option<f64>, Option<f64>)) -> f64 {
    let mut term = 0.0;
    if let (Some(before), Some(after)) = sofa {
        if after == before && after > 0.0 {
            term -= 0.025;
        }
        term -= 0.125 * (after - before);
    }
    if let (Some(before), Some(after)) = lactate {
        term -= 2.0 * (after - before).tanh();
    }
    term
}

/// The reward of each of the 25 actions (index order) for the newest step
/// of `course`; `logged`: what clinicians gave in states like it, and how
/// often an action must have been given to be in support.
pub fn reward_table(model: &WorldModel, course: &[CourseStep], logged: &LoggedPractice, config: &RewardConfig, seed: u32) -> candle_core::Result<Vec<Reward>> {
    let actions: Vec<Action> = (0..N_ACTIONS).map(|a| Action::from_index(a).expect("0..25")).collect();
    let request = SimulateRequest {
        history: course.to_vec(),
        candidates: actions.iter().map(|&a| vec![a; config.horizon]).collect(),
        horizon: config.horizon,
        samples: config.samples,
        seed,
    };
    let simulation = simulate_on_cpu(model, request, |_| {})?;
    let situation = Situation::of_course(course);
    let now = &course.last().expect("a course has at least one step").values;
    let ranked = match config.as_the_teacher_ranks {
        true => Some(teachers_survival(model, course)?),
        false => None,
    };
    Ok(actions
        .iter()
        .enumerate()
        .map(|(a, &action)| {
            let survival = ranked.as_ref().map_or_else(|| simulation.steps.last().map_or(0.0, |s| s.candidates[a].survival), |r| r[a]);
            score(&simulation, a, action, survival, now, &situation, logged.supported(action), config)
        })
        .collect())
}

/// Each action's survival as the teacher ranks it: the planner's (the
/// simulate tool's answer) less its penalty for the ensemble's disagreement.
/// Guideline flags are left to the reward's own penalty.
fn teachers_survival(model: &WorldModel, course: &[CourseStep]) -> candle_core::Result<Vec<f64>> {
    let config = MpcConfig::default();
    Ok(tool_scores(model, course)?.iter().map(|s| config.score(s.survival, s.disagreement, 0)).collect())
}

#[allow(clippy::too_many_arguments)]
fn score(simulation: &Simulation, a: usize, action: Action, survival: f64, now: &[Option<f64>], situation: &Situation, supported: bool, config: &RewardConfig) -> Reward {
    let median = |step: usize, key: &str| simulation.steps[step].candidates[a].bands.iter().find(|b| b.feature == key).map(|b| b.p50);
    let (mut sofa, mut lactate) = (now[idx("sofa")], now[idx("lactate")]);
    let mut shaped = 0.0;
    for step in 0..simulation.steps.len() {
        let (next_sofa, next_lactate) = (median(step, "sofa"), median(step, "lactate"));
        shaped += shaping((sofa, next_sofa), (lactate, next_lactate));
        (sofa, lactate) = (next_sofa, next_lactate);
    }
    let violated = violations(situation, action).len();
    let total = TERMINAL * (2.0 * survival - 1.0) + shaped - config.guideline_penalty * violated as f64 - if supported { 0.0 } else { config.support_penalty };
    Reward { action, survival, shaping: shaped, violations: violated, supported, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaping_follows_the_papers_form() {
        // SOFA unchanged above zero: the small stagnation penalty only.
        assert!((shaping((Some(5.0), Some(5.0)), (None, None)) + 0.025).abs() < 1e-12);
        // Unchanged at zero is no penalty.
        assert_eq!(shaping((Some(0.0), Some(0.0)), (None, None)), 0.0);
        // SOFA up two points, lactate down one.
        let term = shaping((Some(4.0), Some(6.0)), (Some(3.0), Some(2.0)));
        assert!((term - (-0.25 + 2.0 * 1f64.tanh())).abs() < 1e-12);
        // Missing values leave their part out.
        assert_eq!(shaping((None, Some(6.0)), (Some(3.0), None)), 0.0);
    }
}
