//! The true ICU-Sepsis MDP as the loop's simulator, for analysis: what the
//! agent would conclude if its simulations were exact. It answers for
//! courses sampled from the MDP (their values are a state's clinical values):
//! each candidate's next-state distribution gives the key features' 10/50/90 %
//! and the survival probability from there on under a given policy (by
//! default the clinicians'), with no disagreement (one true model).

use crate::action::Action;
use crate::env::clinical::state_features;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
use crate::cohort::schema::{idx, Kind, FEATURES};
use crate::simulation::{CandidateStep, CourseStep, FeatureBand, KEY_FEATURES, QUANTILES};

use super::decision::{AgentError, Simulator};

pub struct MdpSimulator<'e> {
    env: &'e IcuSepsis,
    /// Survival probability from each patient state onward.
    values: Vec<f64>,
    /// Each patient state's clinical values.
    states: Vec<Vec<Option<f64>>>,
}

/// Largest difference between the per-step values of two rows, relative to
/// the state's value (at least 1): CSV files round what they store, and a
/// sampled patient keeps the age, sex and weight of its admission state.
fn distance(values: &[Option<f64>], state: &[Option<f64>]) -> f64 {
    FEATURES
        .iter()
        .zip(values.iter().zip(state))
        .filter(|(f, _)| f.kind != Kind::Static)
        .map(|(_, (v, s))| match (v, s) {
            (Some(v), Some(s)) => (v - s).abs() / s.abs().max(1.0),
            (None, None) => 0.0,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

/// A course step is a state when every value is within this of the state's.
const SAME_STATE: f64 = 0.01;

impl<'e> MdpSimulator<'e> {
    /// `values`: survival probability from each patient state onward under
    /// the policy assumed after this step (`eval::exact::state_values`).
    pub fn new(env: &'e IcuSepsis, values: Vec<f64>) -> Self {
        let states = (0..N_PATIENT_STATES).map(|s| state_features(env, s)).collect();
        Self { env, values, states }
    }

    /// The state whose clinical values these are (up to CSV rounding).
    pub fn state_of(&self, values: &[Option<f64>]) -> Option<usize> {
        let (state, d) = self.states.iter().enumerate().map(|(s, f)| (s, distance(values, f))).min_by(|a, b| a.1.total_cmp(&b.1))?;
        (d < SAME_STATE).then_some(state)
    }
}

/// The smallest value whose cumulative weight reaches `q` of the total.
fn weighted_quantile(sorted: &[(f64, f64)], q: f64) -> f64 {
    let total: f64 = sorted.iter().map(|(_, w)| w).sum();
    let mut seen = 0.0;
    for &(value, weight) in sorted {
        seen += weight;
        if seen >= q * total - 1e-12 {
            return value;
        }
    }
    sorted.last().map_or(f64::NAN, |(v, _)| *v)
}

impl Simulator for MdpSimulator<'_> {
    fn simulate(&mut self, course: &[CourseStep], candidates: &[Action]) -> Result<Vec<CandidateStep>, AgentError> {
        let newest = course.last().ok_or_else(|| AgentError("an empty course".into()))?;
        let state = self
            .state_of(&newest.values)
            .ok_or_else(|| AgentError("the patient's values are not an ICU-Sepsis state: the true MDP simulates only courses sampled from it".into()))?;
        Ok(candidates
            .iter()
            .enumerate()
            .map(|(candidate, &action)| {
                let transitions = self.env.mdp.transitions(state, action.index());
                let survival = transitions.iter().map(|t| t.probability * (t.reward + self.values.get(t.next).copied().unwrap_or(0.0))).sum();
                let next: Vec<(Vec<Option<f64>>, f64)> =
                    transitions.iter().filter(|t| t.next < N_PATIENT_STATES).map(|t| (state_features(self.env, t.next), t.probability)).collect();
                let bands = KEY_FEATURES
                    .iter()
                    .filter_map(|&feature| {
                        let mut weighted: Vec<(f64, f64)> = next.iter().filter_map(|(v, p)| v[idx(feature)].map(|x| (x, *p))).collect();
                        if weighted.is_empty() {
                            return None;
                        }
                        weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
                        let [p10, p50, p90] = QUANTILES.map(|q| weighted_quantile(&weighted, q));
                        Some(FeatureBand { feature: feature.to_string(), p10, p50, p90 })
                    })
                    .collect();
                CandidateStep { candidate, action, bands, survival, disagreement: 0.0, logged_transitions: None }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_quantiles_step_through_the_mass() {
        let sorted = [(1.0, 0.2), (2.0, 0.5), (3.0, 0.3)];
        assert_eq!(weighted_quantile(&sorted, 0.1), 1.0);
        assert_eq!(weighted_quantile(&sorted, 0.5), 2.0);
        assert_eq!(weighted_quantile(&sorted, 0.7), 2.0);
        assert_eq!(weighted_quantile(&sorted, 0.9), 3.0);
    }
}
