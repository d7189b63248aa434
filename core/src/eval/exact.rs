//! Exact evaluation on a known tabular MDP: a policy's value by one linear
//! solve, and the optimal policy by value iteration. On ICU-Sepsis the value
//! is the survival probability (reward 1 on survival, gamma = 1).

use nalgebra::{DMatrix, DVector};

use crate::action::N_ACTIONS;
use crate::env::TabularMdp;
use crate::policy::PolicyTable;

/// Value iteration stops when no state's value moves by more than this.
const VI_TOLERANCE: f64 = 1e-12;
const VI_MAX_SWEEPS: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExactError {
    #[error("policy has {found} rows but the MDP has {expected} transient states")]
    Size { found: usize, expected: usize },
    #[error("the policy never ends the episode from some states (I - P is singular)")]
    NonTerminating,
}

/// Per-state values `V = (I - P_pi)^-1 r_pi` over the transient states.
pub fn state_values(mdp: &TabularMdp, policy: &[[f64; N_ACTIONS]]) -> Result<Vec<f64>, ExactError> {
    let n = mdp.n_transient;
    if policy.len() != n {
        return Err(ExactError::Size { found: policy.len(), expected: n });
    }
    let mut system = DMatrix::<f64>::identity(n, n);
    let mut reward = DVector::<f64>::zeros(n);
    for (s, row) in policy.iter().enumerate() {
        for (a, &pi) in row.iter().enumerate().filter(|(_, p)| **p > 0.0) {
            for t in mdp.transitions(s, a) {
                reward[s] += pi * t.probability * t.reward;
                if t.next < n {
                    system[(s, t.next)] -= pi * t.probability;
                }
            }
        }
    }
    let values = system.lu().solve(&reward).ok_or(ExactError::NonTerminating)?;
    Ok(values.iter().copied().collect())
}

/// Expected return from the initial distribution.
pub fn policy_value(mdp: &TabularMdp, policy: &[[f64; N_ACTIONS]]) -> Result<f64, ExactError> {
    let values = state_values(mdp, policy)?;
    Ok(mdp.initial.iter().zip(&values).map(|(d, v)| d * v).sum())
}

/// Expected number of visits to each transient state, `x = (I - P_piᵀ)^-1 d0`.
/// Its sum is the mean episode length; it weights per-decision rates.
pub fn occupancy(mdp: &TabularMdp, policy: &[[f64; N_ACTIONS]]) -> Result<Vec<f64>, ExactError> {
    let n = mdp.n_transient;
    if policy.len() != n {
        return Err(ExactError::Size { found: policy.len(), expected: n });
    }
    let mut system = DMatrix::<f64>::identity(n, n);
    for (s, row) in policy.iter().enumerate() {
        for (a, &pi) in row.iter().enumerate().filter(|(_, p)| **p > 0.0) {
            for t in mdp.transitions(s, a).iter().filter(|t| t.next < n) {
                system[(t.next, s)] -= pi * t.probability;
            }
        }
    }
    let visits = system.lu().solve(&DVector::from_column_slice(&mdp.initial)).ok_or(ExactError::NonTerminating)?;
    Ok(visits.iter().copied().collect())
}

/// Share of decisions, weighted by how often the policy visits each state,
/// for which `flag(state, action)` holds.
pub fn decision_rate(visits: &[f64], policy: &[[f64; N_ACTIONS]], flag: impl Fn(usize, usize) -> bool) -> f64 {
    let total: f64 = visits.iter().sum();
    let flagged: f64 = visits
        .iter()
        .zip(policy)
        .enumerate()
        .map(|(s, (x, row))| x * row.iter().enumerate().filter(|(a, _)| flag(s, *a)).map(|(_, p)| p).sum::<f64>())
        .sum();
    flagged / total
}

/// Convenience for the 713-state tables every named policy produces.
pub fn table_value(mdp: &TabularMdp, policy: &PolicyTable) -> Result<f64, ExactError> {
    policy_value(mdp, policy.rows())
}

pub struct Optimal {
    pub values: Vec<f64>,
    /// Greedy deterministic policy; ties go to the lowest action index.
    pub rows: Vec<[f64; N_ACTIONS]>,
    pub sweeps: usize,
}

/// Value iteration. `allowed(state, action)` restricts the choice (e.g. to
/// admissible actions); pass `|_, _| true` for the unrestricted optimum.
pub fn value_iteration(mdp: &TabularMdp, allowed: impl Fn(usize, usize) -> bool) -> Optimal {
    let n = mdp.n_transient;
    let q = |values: &[f64], s: usize, a: usize| -> f64 {
        mdp.transitions(s, a).iter().map(|t| t.probability * (t.reward + if t.next < n { values[t.next] } else { 0.0 })).sum()
    };
    let mut values = vec![0.0; n];
    let mut sweeps = 0;
    while sweeps < VI_MAX_SWEEPS {
        sweeps += 1;
        let mut delta: f64 = 0.0;
        for s in 0..n {
            let best = (0..N_ACTIONS).filter(|&a| allowed(s, a)).map(|a| q(&values, s, a)).fold(f64::NEG_INFINITY, f64::max);
            let best = if best.is_finite() { best } else { 0.0 };
            delta = delta.max((best - values[s]).abs());
            values[s] = best;
        }
        if delta < VI_TOLERANCE {
            break;
        }
    }
    let rows = (0..n)
        .map(|s| {
            let mut best = (usize::MAX, f64::NEG_INFINITY);
            for a in (0..N_ACTIONS).filter(|&a| allowed(s, a)) {
                let value = q(&values, s, a);
                if value > best.1 + 1e-15 {
                    best = (a, value);
                }
            }
            let mut row = [0.0; N_ACTIONS];
            row[if best.0 == usize::MAX { 0 } else { best.0 }] = 1.0;
            row
        })
        .collect();
    Optimal { values, rows, sweeps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Transition;

    const WIN: usize = 2; // terminal, reward 1 on entry
    const LOSE: usize = 3; // terminal, reward 0

    /// Two transient states. From state 0: action 0 ("wait") stays in 0 with
    /// 0.5 and dies with 0.5; action 1 ("treat") goes to state 1. From state 1
    /// every action wins with 0.9 and loses with 0.1. All other actions behave
    /// like action 0.
    fn tiny_mdp() -> TabularMdp {
        let t = |next, probability, reward| Transition { next, probability, reward };
        let mut transitions = Vec::new();
        for a in 0..N_ACTIONS {
            transitions.push(if a == 1 { vec![t(1, 1.0, 0.0)] } else { vec![t(0, 0.5, 0.0), t(LOSE, 0.5, 0.0)] });
        }
        for _ in 0..N_ACTIONS {
            transitions.push(vec![t(WIN, 0.9, 1.0), t(LOSE, 0.1, 0.0)]);
        }
        TabularMdp::new(2, transitions, vec![1.0, 0.0])
    }

    fn always(action: usize) -> Vec<[f64; N_ACTIONS]> {
        let mut row = [0.0; N_ACTIONS];
        row[action] = 1.0;
        vec![row; 2]
    }

    #[test]
    fn treating_wins_with_probability_0_9() {
        assert!((policy_value(&tiny_mdp(), &always(1)).unwrap() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn waiting_forever_never_wins() {
        // V0 = 0.5 V0 -> 0.
        assert!(policy_value(&tiny_mdp(), &always(0)).unwrap().abs() < 1e-12);
    }

    #[test]
    fn a_mixed_policy_solves_the_geometric_series() {
        // In state 0 treat with q = 0.2, wait with 0.8 (action 0):
        // V0 = 0.2 * 0.9 + 0.8 * 0.5 * V0  ->  V0 = 0.18 / 0.6 = 0.3.
        let mut rows = always(0);
        rows[0][0] = 0.8;
        rows[0][1] = 0.2;
        assert!((policy_value(&tiny_mdp(), &rows).unwrap() - 0.3).abs() < 1e-12);
    }

    #[test]
    fn value_iteration_finds_the_treating_policy() {
        let optimal = value_iteration(&tiny_mdp(), |_, _| true);
        assert_eq!(optimal.rows[0][1], 1.0);
        assert!((optimal.values[0] - 0.9).abs() < 1e-12);
        assert!((policy_value(&tiny_mdp(), &optimal.rows).unwrap() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn restricting_actions_is_respected() {
        let optimal = value_iteration(&tiny_mdp(), |s, a| !(s == 0 && a == 1));
        assert_eq!(optimal.rows[0][1], 0.0);
        assert!(optimal.values[0].abs() < 1e-9);
    }

    #[test]
    fn occupancy_counts_expected_visits() {
        // Waiting: visits to state 0 are 1 + 0.5 + 0.25 + ... = 2; state 1 never.
        let visits = occupancy(&tiny_mdp(), &always(0)).unwrap();
        assert!((visits[0] - 2.0).abs() < 1e-12 && visits[1].abs() < 1e-12);
        // Treating: one decision in each state.
        let visits = occupancy(&tiny_mdp(), &always(1)).unwrap();
        assert!((visits[0] - 1.0).abs() < 1e-12 && (visits[1] - 1.0).abs() < 1e-12);
        // Half the decisions of the treating policy are in state 1.
        assert!((decision_rate(&visits, &always(1), |s, _| s == 1) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn wrong_sized_policies_are_refused() {
        assert_eq!(policy_value(&tiny_mdp(), &always(1)[..1]), Err(ExactError::Size { found: 1, expected: 2 }));
    }
}
