//! The AI Clinician (Komorowski et al., Nature Medicine 2018), learnt only
//! from a logged training cohort: k-means states over standardised clinical
//! features, a tabular MDP estimated from the logged transitions (reward
//! +100 survival / -100 death, gamma 0.99), and the policy that is optimal in
//! that estimated MDP among the actions clinicians took in each state.
//!
//! To judge it on ICU-Sepsis, each ICU-Sepsis state's clinical values are
//! assigned to the nearest learnt cluster and that cluster's action is taken.

use serde::{Deserialize, Serialize};

use crate::cohort::normaliser::Normaliser;
use super::kmeans::{kmeans, nearest};
use crate::action::N_ACTIONS;
use crate::cohort::schema::{Kind, FEATURES};
use crate::cohort::{Cohort, Outcome};
use crate::env::clinical::state_features;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
use crate::env::{TabularMdp, Transition};
use crate::eval::exact::value_iteration;
use crate::policy::PolicyTable;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub clusters: usize,
    pub kmeans_iterations: usize,
    pub gamma: f64,
    /// Terminal reward magnitude: +reward on survival, -reward on death.
    pub reward: f64,
    /// An action counts as taken in a cluster only with at least this many
    /// logged steps; rarer ones have outcome estimates too noisy to trust,
    /// or are treatments clinicians seldom give there. `sepsis train
    /// ai-clinician` sets it by the cohort's size at ICU-Sepsis's rate for
    /// admissible actions (`action::support_threshold`: 20 for our 14,000
    /// training episodes); docs/evaluation.md shows the sensitivity. Every
    /// reader of these counts (the planner, the agent) takes it as the
    /// support threshold ([`AiClinician::min_support`]).
    pub min_action_count: usize,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        // 750 clusters as Komorowski et al. (our training values are
        // ICU-Sepsis state centroids, so k-means finds at most 713 distinct ones).
        Self { clusters: 750, kmeans_iterations: 50, gamma: 0.99, reward: 100.0, min_action_count: 20, seed: 2018 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AiClinician {
    pub config: Config,
    pub standardiser: Normaliser,
    pub centres: Vec<Vec<f64>>,
    /// The chosen action index for each cluster.
    pub actions: Vec<usize>,
    /// Logged steps in each cluster (0: no data, action 0 by default).
    pub support: Vec<usize>,
    /// Logged steps of each action in each cluster: what clinicians did in
    /// states like this one. The `wm-mpc` planner reads it as its support.
    #[serde(default)]
    pub action_counts: Vec<[u32; N_ACTIONS]>,
}

impl AiClinician {
    pub fn train(cohort: &Cohort, config: Config) -> Self {
        let standardiser = Normaliser::fit(cohort);
        let points: Vec<Vec<f64>> = cohort.patients.iter().flat_map(|p| &p.steps).map(|s| dynamic_features(&standardiser, &s.values)).collect();
        let centres = kmeans(&points, config.clusters, config.kmeans_iterations, config.seed);
        let k = centres.len();
        let (death, survival) = (k, k + 1);
        // Counts of (cluster, action) -> next cluster or terminal.
        let mut counts = vec![std::collections::HashMap::<usize, f64>::new(); k * N_ACTIONS];
        let mut support = vec![0usize; k];
        let mut point = points.iter();
        for patient in &cohort.patients {
            let clusters: Vec<usize> = patient.steps.iter().map(|_| nearest(&centres, point.next().expect("one point per step"))).collect();
            for (t, (step, &c)) in patient.steps.iter().zip(&clusters).enumerate() {
                let next = match clusters.get(t + 1) {
                    Some(&n) => n,
                    None if patient.outcome == Outcome::Survived => survival,
                    None => death,
                };
                *counts[c * N_ACTIONS + step.action.index()].entry(next).or_default() += 1.0;
                support[c] += 1;
            }
        }
        // Discounting as a continuation probability: scale transitions to
        // non-terminal clusters by gamma (terminal rewards are immediate).
        let transitions: Vec<Vec<Transition>> = counts
            .iter()
            .map(|row| {
                let total: f64 = row.values().sum();
                let mut list: Vec<Transition> = row
                    .iter()
                    .map(|(&next, &n)| {
                        let p = n / total;
                        let reward = if next == survival { config.reward } else if next == death { -config.reward } else { 0.0 };
                        Transition { next, probability: if next < k { p * config.gamma } else { p }, reward }
                    })
                    .collect();
                list.sort_by_key(|t| t.next);
                list
            })
            .collect();
        let mdp = TabularMdp::new(k, transitions, vec![1.0 / k as f64; k]);
        let observed = |c: usize, a: usize| counts[c * N_ACTIONS + a].values().sum::<f64>() >= config.min_action_count as f64;
        let optimal = value_iteration(&mdp, observed);
        let action_counts = (0..k)
            .map(|c| std::array::from_fn(|a| counts[c * N_ACTIONS + a].values().sum::<f64>() as u32))
            .collect();
        let actions = (0..k)
            .map(|c| {
                let any_allowed = (0..N_ACTIONS).any(|a| observed(c, a));
                if any_allowed { optimal.rows[c].iter().position(|&p| p == 1.0).unwrap_or(0) } else { most_common_action(&counts[c * N_ACTIONS..(c + 1) * N_ACTIONS]) }
            })
            .collect();
        Self { config, standardiser, centres, actions, support, action_counts }
    }

    /// The cluster (learnt state) a step's clinical values fall in.
    pub fn cluster(&self, values: &[Option<f64>]) -> usize {
        nearest(&self.centres, &dynamic_features(&self.standardiser, values))
    }

    /// The learnt action for a step's clinical values.
    pub fn act(&self, values: &[Option<f64>]) -> usize {
        self.actions[self.cluster(values)]
    }

    /// How often clinicians must have given an action in a cluster for it to
    /// be in support there.
    pub fn min_support(&self) -> u32 {
        u32::try_from(self.config.min_action_count).unwrap_or(u32::MAX)
    }

    /// What clinicians did in states like these values' (the agent's view):
    /// the cluster's counts and this model's support threshold.
    pub fn practice(&self, values: &[Option<f64>]) -> crate::agent::observation::LoggedPractice {
        crate::agent::observation::LoggedPractice { counts: self.logged_counts(values), min_support: self.min_support() }
    }

    /// How often clinicians gave each action in the logged steps of the
    /// cluster these values fall in.
    pub fn logged_counts(&self, values: &[Option<f64>]) -> [u32; N_ACTIONS] {
        self.action_counts.get(self.cluster(values)).copied().unwrap_or([0; N_ACTIONS])
    }

    /// Its policy on every ICU-Sepsis patient state.
    pub fn policy_table(&self, env: &IcuSepsis) -> PolicyTable {
        let actions: Vec<usize> = (0..N_PATIENT_STATES).map(|s| self.act(&state_features(env, s))).collect();
        PolicyTable::deterministic(&actions).expect("one action per state")
    }
}

/// Standardised per-step features only: states describe the patient's
/// physiology now; age, sex and weight do not change with treatment.
fn dynamic_features(standardiser: &Normaliser, values: &[Option<f64>]) -> Vec<f64> {
    standardiser.transform(values).into_iter().zip(FEATURES).filter(|(_, f)| f.kind == Kind::Dynamic).map(|(z, _)| z).collect()
}

/// Fallback for a state where no action reaches the count threshold: the
/// action with the most logged steps (`rows`: one next-state count map per action).
pub(crate) fn most_common_action(rows: &[std::collections::HashMap<usize, f64>]) -> usize {
    rows.iter().enumerate().max_by(|a, b| a.1.values().sum::<f64>().total_cmp(&b.1.values().sum::<f64>())).map(|(a, _)| a).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::cohort::schema::idx;
    use crate::cohort::{Patient, Step};

    /// Low-MAP patients survive with fluid (action 5) and die without (action 0);
    /// high-MAP patients survive either way.
    fn cohort() -> Cohort {
        let mut patients = Vec::new();
        for i in 0..200 {
            let low = i % 2 == 0;
            let treated = i % 4 < 2;
            let mut values = vec![Some(1.0); FEATURES.len()];
            values[idx("map")] = Some(if low { 55.0 } else { 85.0 });
            let action = if treated { Action { fluid: 1, vaso: 0 } } else { Action::NONE };
            let survived = !low || treated;
            patients.push(Patient {
                id: format!("p{i}"),
                steps: vec![Step { index: 0, values, action, state: None }],
                outcome: if survived { Outcome::Survived } else { Outcome::Died },
            });
        }
        Cohort { patients }
    }

    #[test]
    fn learns_to_treat_low_map_from_logged_outcomes() {
        let model = AiClinician::train(&cohort(), Config { clusters: 2, ..Config::default() });
        let mut low = vec![Some(1.0); FEATURES.len()];
        low[idx("map")] = Some(56.0);
        assert_eq!(model.act(&low), Action { fluid: 1, vaso: 0 }.index());
        assert_eq!(model.support.iter().sum::<usize>(), 200);
        // Half the low-MAP patients got fluid, half nothing.
        let counts = model.logged_counts(&low);
        assert_eq!((counts[0], counts[Action { fluid: 1, vaso: 0 }.index()]), (50, 50));
        assert_eq!(counts.iter().sum::<u32>(), 100);
    }

    #[test]
    fn actions_below_the_count_threshold_are_never_chosen() {
        let model = AiClinician::train(&cohort(), Config { clusters: 2, min_action_count: 1000, ..Config::default() });
        // No action reaches 1000 steps: each cluster falls back to its most common logged action.
        assert!(model.actions.iter().all(|&a| a == 0 || a == 5), "{:?}", model.actions);
    }
}
