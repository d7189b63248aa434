//! `wm-mpc`: a model-predictive planner over the learned world model. For a
//! patient's history it simulates every one of the 25 actions, held for a
//! short horizon, in every ensemble member, and picks the action with the
//! best predicted survival after penalties for guideline violations and for
//! ensemble disagreement (a question far from the data is not trusted).
//! It is a scoreboard policy and, later, the agent's teacher.

use serde::{Deserialize, Serialize};

use crate::action::{Action, N_ACTIONS};
use crate::guideline::{violations, Situation};
use crate::world_model::ensemble::History;
use crate::world_model::WorldModel;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MpcConfig {
    /// Steps each candidate is held for (4 h each).
    pub horizon: usize,
    /// Subtracted per unit of ensemble SD of predicted survival.
    pub disagreement_penalty: f64,
    /// Subtracted per guideline rule the candidate violates now.
    pub guideline_penalty: f64,
    /// A candidate is in support when clinicians gave it at least this often
    /// in logged states like the patient's (the AI Clinician's threshold and
    /// ICU-Sepsis's for admissible actions). Only supported candidates are
    /// chosen: the model's disagreement alone does not flag them
    /// (docs/world-model.md).
    pub min_support: u32,
}

impl Default for MpcConfig {
    fn default() -> Self {
        Self { horizon: 2, disagreement_penalty: 1.0, guideline_penalty: 0.05, min_support: 20 }
    }
}

/// The planner's view of one candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateScore {
    pub action: Action,
    /// Mean over members of the predicted survival after the horizon.
    pub survival: f64,
    /// SD over members of that prediction.
    pub disagreement: f64,
    pub violations: usize,
    /// Logged clinician decisions for this action in similar states.
    pub logged: u32,
    pub supported: bool,
    pub score: f64,
}

/// Score every action for each history (the last entry's action is ignored:
/// it is the decision being made). `logged[h][a]`: how often clinicians gave
/// action `a` in states like history `h`'s.
pub fn score_all(
    model: &WorldModel,
    histories: &[History],
    situations: &[Situation],
    logged: &[[u32; N_ACTIONS]],
    config: &MpcConfig,
) -> candle_core::Result<Vec<Vec<CandidateScore>>> {
    let members = model.members();
    // One rollout per (history, action, member), advanced together.
    let mut rollouts: Vec<(usize, usize, History)> = Vec::new();
    for (h, history) in histories.iter().enumerate() {
        for a in 0..N_ACTIONS {
            let action = Action::from_index(a).expect("0..25");
            for m in 0..members {
                let mut own = history.clone();
                own.last_mut().expect("non-empty history").1 = action;
                rollouts.push((h, m, own));
            }
        }
    }
    let mut survival = vec![0.0f64; rollouts.len()];
    for step in 0..config.horizon {
        let histories: Vec<History> = rollouts.iter().map(|(_, _, h)| h.clone()).collect();
        let predictions = model.predict(&model.encode(&histories)?)?;
        let means: Vec<Vec<Vec<f32>>> = predictions.iter().map(|p| p.mean.to_vec2()).collect::<candle_core::Result<_>>()?;
        let deaths: Vec<Vec<f32>> =
            predictions.iter().map(|p| candle_nn::ops::sigmoid(&p.outcome_logit)?.to_vec1()).collect::<candle_core::Result<_>>()?;
        for (r, (_, member, history)) in rollouts.iter_mut().enumerate() {
            // Each rollout follows its own member.
            survival[r] = 1.0 - deaths[*member][r] as f64;
            if step + 1 < config.horizon {
                let (current, action) = history.last().expect("non-empty").clone();
                history.push((model.predicted_values(&current, &means[*member][r]), action));
            }
        }
    }
    let mut scores = vec![Vec::with_capacity(N_ACTIONS); histories.len()];
    for (h, situation) in situations.iter().enumerate() {
        for a in 0..N_ACTIONS {
            let action = Action::from_index(a).expect("0..25");
            let start = (h * N_ACTIONS + a) * members;
            let values = &survival[start..start + members];
            let mean = values.iter().sum::<f64>() / members as f64;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / members as f64).sqrt();
            let violated = violations(situation, action).len();
            let score = mean - config.disagreement_penalty * sd - config.guideline_penalty * violated as f64;
            let count = logged[h][a];
            scores[h].push(CandidateScore { action, survival: mean, disagreement: sd, violations: violated, logged: count, supported: count >= config.min_support, score });
        }
    }
    Ok(scores)
}

/// The best-scoring supported candidate (ties to the lower index: less
/// treatment first). Where no candidate is supported, the most often logged.
pub fn best(scores: &[CandidateScore]) -> &CandidateScore {
    let supported: Vec<&CandidateScore> = scores.iter().filter(|c| c.supported).collect();
    match supported.first() {
        Some(&first) => supported.into_iter().fold(first, |best, c| if c.score > best.score + 1e-12 { c } else { best }),
        None => scores.iter().fold(&scores[0], |best, c| if c.logged > best.logged { c } else { best }),
    }
}

/// The guideline situation of the newest step of a history.
pub fn situation_of(history: &History) -> Situation {
    let (values, _) = history.last().expect("non-empty history");
    Situation::at(values, history.len().checked_sub(2).map(|i| history[i].1.vaso), history.len() == 1)
}

#[cfg(feature = "eval")]
pub mod icu_sepsis {
    //! The planner as a policy table on ICU-Sepsis: each state planned from
    //! its clinical values as a one-step history.
    use super::*;
    use crate::baselines::ai_clinician::AiClinician;
    use crate::env::clinical::state_features;
    use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
    use crate::policy::PolicyTable;

    /// `support`: the logged clinician decisions (the AI Clinician's clusters
    /// and counts from the training split).
    pub fn policy_table(model: &WorldModel, support: &AiClinician, env: &IcuSepsis, config: &MpcConfig) -> candle_core::Result<PolicyTable> {
        let histories: Vec<History> = (0..N_PATIENT_STATES).map(|s| vec![(state_features(env, s), Action::NONE)]).collect();
        let logged: Vec<[u32; N_ACTIONS]> = histories.iter().map(|h| support.logged_counts(&h[0].0)).collect();
        // State-level evaluation has no previous step: rules needing one do not apply.
        let situations: Vec<Situation> = histories.iter().map(|h| Situation { first_step: false, ..situation_of(h) }).collect();
        let mut actions = Vec::with_capacity(N_PATIENT_STATES);
        for ((chunk_h, chunk_s), chunk_l) in histories.chunks(64).zip(situations.chunks(64)).zip(logged.chunks(64)) {
            for scores in score_all(model, chunk_h, chunk_s, chunk_l, config)? {
                actions.push(best(&scores).action.index());
            }
        }
        PolicyTable::deterministic(&actions).map_err(candle_core::Error::wrap)
    }
}

#[cfg(all(test, feature = "eval"))]
mod tests {
    use super::*;
    use crate::cohort::normaliser::Normaliser;
    use crate::cohort::schema::{idx, FEATURES};
    use crate::cohort::{Cohort, Outcome, Patient, Step};
    use crate::world_model::card::ModelCard;
    use crate::world_model::data::{Layout, Windows};
    use crate::world_model::train::{export, train_member, Checkpoints};
    use crate::world_model::WorldModelConfig;

    /// Two steps. Fluid raises MAP by 10, no fluid lowers it by 10; a patient
    /// who starts below 65 and gets no fluid at the first step dies.
    fn cohort(n: usize) -> Cohort {
        let patients = (0..n)
            .map(|i| {
                let low = i % 2 == 0;
                let fluid = (i / 2) % 2 == 0;
                let start = if low { 55.0 } else { 85.0 };
                let step = |t: u32, map: f64, fluid: bool| {
                    let mut values = vec![Some(1.0); FEATURES.len()];
                    values[idx("map")] = Some(map);
                    Step { index: t, values, action: Action { fluid: u8::from(fluid), vaso: 0 }, state: None }
                };
                let next = start + if fluid { 10.0 } else { -10.0 };
                Patient {
                    id: format!("p{i}"),
                    steps: vec![step(0, start, fluid), step(1, next, (i / 4) % 2 == 0)],
                    outcome: if low && !fluid { Outcome::Died } else { Outcome::Survived },
                }
            })
            .collect();
        Cohort { patients }
    }

    #[test]
    fn the_planner_gives_fluid_where_fluid_saves_patients() {
        let train = cohort(400);
        let normaliser = Normaliser::fit(&train);
        let layout = Layout::default();
        let config = WorldModelConfig { hidden: 32, members: 2, epochs: 20, batch: 64, learning_rate: 3e-3, patience: 20, ..Default::default() };
        let windows = Windows::build(&train, &normaliser, &layout, config.window);
        let validation = Windows::build(&cohort(40), &normaliser, &layout, config.window);
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path()).unwrap();
        let training = (0..config.members)
            .map(|m| train_member(m, &windows, &validation, &config, &checkpoints, |_, _, _| {}, |_| {}).unwrap())
            .collect();
        let stem = dir.path().join("world-model");
        export(&ModelCard { config, layout, normaliser, training }, &checkpoints, &stem).unwrap();
        let model = WorldModel::load(&stem).unwrap();
        assert_eq!(model.members(), 2);

        let low: History = vec![(cohort(1).patients[0].steps[0].values.clone(), Action::NONE)];
        let situation = situation_of(&low);
        let config = MpcConfig { guideline_penalty: 0.0, ..MpcConfig::default() };
        let mut logged = [0u32; N_ACTIONS];
        logged[Action { fluid: 1, vaso: 0 }.index()] = 100;
        logged[Action::NONE.index()] = 100;
        let scores = score_all(&model, &[low], &[situation], &[logged], &config).unwrap();
        let fluid = scores[0].iter().find(|c| c.action == Action { fluid: 1, vaso: 0 }).unwrap();
        let none = scores[0].iter().find(|c| c.action == Action::NONE).unwrap();
        assert!(fluid.survival > none.survival + 0.5, "fluid {fluid:?} vs none {none:?}");
        assert_eq!(scores[0].len(), N_ACTIONS);
        assert_eq!(none.violations, 2, "G1 and initial resuscitation are counted even without a penalty");
        assert_eq!(best(&scores[0]).action, Action { fluid: 1, vaso: 0 });
        assert!(scores[0].iter().filter(|c| c.supported).count() == 2);
    }

    fn candidate(a: usize, score: f64, logged: u32) -> CandidateScore {
        CandidateScore { action: Action::from_index(a).unwrap(), survival: score, disagreement: 0.0, violations: 0, logged, supported: logged >= 20, score }
    }

    #[test]
    fn only_supported_candidates_are_chosen() {
        let scores = vec![candidate(0, 0.5, 30), candidate(1, 0.9, 3), candidate(2, 0.6, 25)];
        assert_eq!(best(&scores).action.index(), 2, "the better unsupported action is passed over");
        let none = vec![candidate(0, 0.5, 3), candidate(1, 0.9, 1), candidate(2, 0.6, 7)];
        assert_eq!(best(&none).action.index(), 2, "no support anywhere: the most often logged");
    }

    #[test]
    fn situations_know_the_previous_vasopressor_and_first_step() {
        let values = vec![Some(70.0); FEATURES.len()];
        let history: History = vec![(values.clone(), Action { fluid: 0, vaso: 2 }), (values, Action::NONE)];
        let s = situation_of(&history);
        assert_eq!((s.previous_vaso, s.first_step, s.map), (Some(2), false, Some(70.0)));
        assert!(situation_of(&history[..1].to_vec()).first_step);
    }
}
