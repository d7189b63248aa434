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

/// Patients are split in consecutive blocks of this many, each block by its
/// own seeded shuffle, so a patient's split does not depend on how many
/// patients follow: the first 20,000 of a larger cohort are split exactly as
/// the 20,000-patient cohort is, and a model trained on that cohort's
/// training split has seen none of the larger cohort's validation or test
/// patients. (Whole blocks are stable; a last, partial block is split on
/// its own and changes when the cohort grows into it.)
pub const SPLIT_BLOCK: usize = 20_000;

/// Patient-level split by seeded shuffles of blocks of [`SPLIT_BLOCK`]
/// patients (no patient spans two splits).
pub fn split(cohort: &Cohort, seed: u64) -> Split {
    split_in_blocks(cohort, seed, SPLIT_BLOCK)
}

fn split_in_blocks(cohort: &Cohort, seed: u64, block: usize) -> Split {
    let mut parts: [Vec<usize>; 3] = Default::default();
    for (b, start) in (0..cohort.patients.len()).step_by(block).enumerate() {
        let mut order: Vec<usize> = (start..(start + block).min(cohort.patients.len())).collect();
        // Block 0's seed is the one every cohort was split with before blocks.
        order.shuffle(&mut ChaCha8Rng::seed_from_u64((seed ^ 0x5911_7000).wrapping_add(b as u64)));
        let n = order.len() as f64;
        let (train_end, validation_end) = ((n * SPLIT.0).round() as usize, (n * (SPLIT.0 + SPLIT.1)).round() as usize);
        parts[0].extend_from_slice(&order[..train_end]);
        parts[1].extend_from_slice(&order[train_end..validation_end]);
        parts[2].extend_from_slice(&order[validation_end..]);
    }
    let take = |ids: &mut Vec<usize>| {
        ids.sort_unstable();
        Cohort { patients: ids.iter().map(|&i| cohort.patients[i].clone()).collect() }
    };
    let [mut train, mut validation, mut test] = parts;
    Split { train: take(&mut train), validation: take(&mut validation), test: take(&mut test) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::{Outcome, Patient};

    fn patients(n: usize) -> Cohort {
        Cohort { patients: (0..n).map(|i| Patient { id: format!("p{i}"), steps: Vec::new(), outcome: Outcome::Survived }).collect() }
    }

    fn ids(c: &Cohort) -> Vec<String> {
        c.patients.iter().map(|p| p.id.clone()).collect()
    }

    /// Growing a cohort keeps every earlier whole block's patients in their
    /// splits, and one block is split as the whole cohort used to be.
    #[test]
    fn growing_the_cohort_moves_no_patient_of_a_whole_block() {
        let (small, large) = (split_in_blocks(&patients(200), 7, 100), split_in_blocks(&patients(450), 7, 100));
        let first_200 = |c: &Cohort| ids(c).into_iter().filter(|id| id[1..].parse::<usize>().unwrap() < 200).collect::<Vec<_>>();
        assert_eq!(first_200(&large.train), ids(&small.train));
        assert_eq!(first_200(&large.validation), ids(&small.validation));
        assert_eq!(first_200(&large.test), ids(&small.test));
        assert_eq!((large.train.patients.len(), large.validation.patients.len(), large.test.patients.len()), (315, 68, 67));
        // One block: the seeded shuffle of the whole cohort, as before blocks.
        let mut order: Vec<usize> = (0..100).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(7 ^ 0x5911_7000));
        let mut train: Vec<usize> = order[..70].to_vec();
        train.sort_unstable();
        assert_eq!(ids(&split_in_blocks(&patients(100), 7, 100).train), train.iter().map(|i| format!("p{i}")).collect::<Vec<_>>());
    }
}
