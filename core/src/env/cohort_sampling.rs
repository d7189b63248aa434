//! Cohorts sampled from ICU-Sepsis: episodes under a policy, each step
//! written in clinical units (state centroids, see [`super::clinical`]) with
//! its state id, and a patient-level train / validation / test split.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clinical::state_features;
use super::icu_sepsis::{IcuSepsis, STATE_SURVIVAL};
use crate::action::Action;
use crate::cohort::{Cohort, Outcome, Patient, Step};
use crate::policy::PolicyTable;

/// Share of patients in the training and validation splits; the rest is test.
pub const SPLIT: (f64, f64) = (0.70, 0.15);

/// Sample `episodes` patients. Patient `i` uses its own random stream derived
/// from `seed` and `i`, so any prefix of a larger cohort is the smaller cohort.
pub fn sample_cohort(env: &IcuSepsis, policy: &PolicyTable, episodes: usize, seed: u64) -> Cohort {
    let patients = (0..episodes)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            sample_patient(env, policy, &format!("icu-{seed}-{i:06}"), &mut rng)
        })
        .collect();
    Cohort { patients }
}

fn sample_patient<R: Rng>(env: &IcuSepsis, policy: &PolicyTable, id: &str, rng: &mut R) -> Patient {
    let mut state = env.sample_initial(rng);
    let mut steps = Vec::new();
    // Age, sex and weight are the admission state's and stay fixed.
    let admission = state_features(env, state);
    let statics: Vec<usize> = crate::cohort::schema::FEATURES
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == crate::cohort::schema::Kind::Static)
        .map(|(i, _)| i)
        .collect();
    loop {
        let action = policy.sample(state, rng);
        let mut values = state_features(env, state);
        for &i in &statics {
            values[i] = admission[i];
        }
        steps.push(Step { index: steps.len() as u32, values, action: Action::from_index(action).expect("0..25"), state: Some(state as u32) });
        let transition = env.step(state, action, rng);
        if IcuSepsis::is_terminal(transition.next) {
            let outcome = if transition.next == STATE_SURVIVAL { Outcome::Survived } else { Outcome::Died };
            return Patient { id: id.to_string(), steps, outcome };
        }
        state = transition.next;
    }
}

pub struct Split {
    pub train: Cohort,
    pub validation: Cohort,
    pub test: Cohort,
}

/// Patient-level split by a seeded shuffle (no patient spans two splits).
pub fn split(cohort: &Cohort, seed: u64) -> Split {
    let mut order: Vec<usize> = (0..cohort.patients.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5911_7000));
    let n = order.len() as f64;
    let (train_end, validation_end) = ((n * SPLIT.0).round() as usize, (n * (SPLIT.0 + SPLIT.1)).round() as usize);
    let take = |range: &[usize]| {
        let mut ids: Vec<usize> = range.to_vec();
        ids.sort_unstable();
        Cohort { patients: ids.into_iter().map(|i| cohort.patients[i].clone()).collect() }
    };
    Split { train: take(&order[..train_end]), validation: take(&order[train_end..validation_end]), test: take(&order[validation_end..]) }
}
