//! Fidelity where it matters for decisions: a policy's value estimated by
//! rolling it out inside the learned model, against its exact value on
//! ICU-Sepsis. Each rollout starts from an ICU-Sepsis initial state, follows
//! one ensemble member (rollout i uses member i mod K), reads the policy's
//! action at the ICU-Sepsis state nearest to the predicted values, and ends
//! after a fixed horizon, where the member's outcome head gives the
//! probability of death.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::ensemble::{History, WorldModel};
use crate::action::Action;
use crate::env::clinical::state_features;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
use crate::policy::PolicyTable;

/// The ICU-Sepsis patient states as the model sees them (z-scored per-step features).
pub struct StateIndex {
    points: Vec<Vec<f64>>,
}

impl StateIndex {
    pub fn new(model: &WorldModel, env: &IcuSepsis) -> Self {
        let card = &model.card;
        let points = (0..N_PATIENT_STATES)
            .map(|s| {
                let values = state_features(env, s);
                card.layout.dynamic_z(&card.normaliser, &values)
            })
            .collect();
        Self { points }
    }

    pub fn nearest(&self, model: &WorldModel, values: &[Option<f64>]) -> usize {
        let card = &model.card;
        let z = card.layout.dynamic_z(&card.normaliser, values);
        let distance = |p: &Vec<f64>| p.iter().zip(&z).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
        (0..self.points.len()).min_by(|&a, &b| distance(&self.points[a]).total_cmp(&distance(&self.points[b]))).expect("states")
    }
}

/// Survival estimated in the model: 1 - mean predicted death after `horizon` steps.
pub fn value_in_model(model: &WorldModel, env: &IcuSepsis, index: &StateIndex, policy: &PolicyTable, rollouts: usize, horizon: usize, seed: u64) -> candle_core::Result<f64> {
    let members = model.members();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut histories: Vec<History> = (0..rollouts)
        .map(|_| {
            let state = env.sample_initial(&mut rng);
            vec![(state_features(env, state), Action::from_index(policy.sample(state, &mut rng)).expect("0..25"))]
        })
        .collect();
    let mut death = vec![0.0f64; rollouts];
    for step in 0..horizon {
        let predictions = model.predict(&model.encode(&histories)?)?;
        let rows = |pick: fn(&super::model::Prediction) -> &candle_core::Tensor| -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
            predictions.iter().map(|p| pick(p).to_vec2()).collect()
        };
        let (stays, means, log_sigmas) = (rows(|p| &p.stay_logit)?, rows(|p| &p.mean)?, rows(|p| &p.log_sigma)?);
        let deaths: Vec<Vec<f32>> =
            predictions.iter().map(|p| candle_nn::ops::sigmoid(&p.outcome_logit)?.to_vec1()).collect::<candle_core::Result<_>>()?;
        for (i, history) in histories.iter_mut().enumerate() {
            let member = i % members;
            death[i] = deaths[member][i] as f64;
            if step + 1 < horizon {
                let next = model.expected_next(&history.last().expect("non-empty").0, &stays[member][i], &means[member][i], &log_sigmas[member][i]);
                let state = index.nearest(model, &next);
                let action = Action::from_index(policy.sample(state, &mut rng)).expect("0..25");
                history.push((next, action));
            }
        }
    }
    Ok(1.0 - death.iter().sum::<f64>() / rollouts as f64)
}
