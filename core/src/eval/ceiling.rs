//! How good can a policy learnt from logged clinicians' data be? The most
//! generous learner sees the MDP's own state ids in the logged cohort (no
//! clinical features to get wrong) and may only choose actions clinicians
//! took at least `min_count` times in a state (anything rarer cannot be
//! estimated). Two such learners, scored exactly on ICU-Sepsis:
//!
//! - *logged-MDP value iteration*: transitions counted from the data,
//!   optimal policy in that estimated MDP (what the AI Clinician does with
//!   k-means clusters);
//! - *one-step improvement*: the clinicians' value per state estimated from
//!   logged outcomes (Monte Carlo, shrunk to the mean with 5 pseudo-visits),
//!   then the action with the best counted next-state value (one step of
//!   policy iteration; robust offline, Brandfonbrener et al. 2021).
//!
//! Both are yardsticks for `wm-mpc` (and the agent it teaches), whose world
//! model learns from the same data: estimates, not bounds. The bound is
//! [`in_support_optimum`]: ICU-Sepsis's own optimum under the support rule.

use std::collections::HashMap;

use crate::action::{support_threshold, N_ACTIONS};
use crate::baselines::ai_clinician::{most_common_action, AiClinician};
use crate::cohort::{Cohort, Outcome};
use crate::env::clinical::state_features;
use crate::env::cohort_sampling::sample_cohort;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES, STATE_DEATH, STATE_SURVIVAL};
use crate::env::{TabularMdp, Transition};
use crate::eval::exact::{table_value, value_iteration};
use crate::policy::{Baseline, PolicyTable};

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CeilingRow {
    pub episodes: usize,
    pub min_count: u32,
    /// `min_count` is what `action::support_threshold` gives for `episodes`
    /// training episodes: the threshold our own models would use.
    pub rule: bool,
    pub logged_mdp_value_iteration: f64,
    pub one_step_improvement: f64,
}

/// Logged (state, action) -> next-state counts; terminal outcomes as
/// `STATE_DEATH` / `STATE_SURVIVAL`.
pub(crate) struct Counts {
    next: Vec<HashMap<usize, f64>>,
    /// Logged survival per state visit: (sum, visits).
    survival: Vec<(f64, f64)>,
}

impl Counts {
    pub(crate) fn of(cohort: &Cohort) -> Self {
        let mut counts = Self { next: vec![HashMap::new(); N_PATIENT_STATES * N_ACTIONS], survival: vec![(0.0, 0.0); N_PATIENT_STATES] };
        for patient in &cohort.patients {
            let survived = f64::from(u8::from(patient.outcome == Outcome::Survived));
            for (t, step) in patient.steps.iter().enumerate() {
                let state = step.state.expect("sampled cohorts carry state ids") as usize;
                let next = match patient.steps.get(t + 1) {
                    Some(next) => next.state.expect("state ids") as usize,
                    None if survived == 1.0 => STATE_SURVIVAL,
                    None => STATE_DEATH,
                };
                *counts.next[state * N_ACTIONS + step.action.index()].entry(next).or_default() += 1.0;
                counts.survival[state].0 += survived;
                counts.survival[state].1 += 1.0;
            }
        }
        counts
    }

    pub(crate) fn total(&self, state: usize, action: usize) -> f64 {
        self.next[state * N_ACTIONS + action].values().sum()
    }

    /// The logged next states of (state, action) and their counts.
    pub(crate) fn next_states(&self, state: usize, action: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.next[state * N_ACTIONS + action].iter().map(|(&next, &count)| (next, count))
    }

    /// The most logged action in a state (the fallback where nothing reaches the threshold).
    fn most_logged(&self, state: usize) -> usize {
        most_common_action(&self.next[state * N_ACTIONS..(state + 1) * N_ACTIONS])
    }
}

fn deterministic(actions: Vec<usize>) -> PolicyTable {
    PolicyTable::deterministic(&actions).expect("one action per state")
}

fn logged_mdp_value_iteration(env: &IcuSepsis, counts: &Counts, min_count: f64) -> f64 {
    let n = N_PATIENT_STATES;
    let transitions = counts
        .next
        .iter()
        .map(|row| {
            let total: f64 = row.values().sum();
            let mut list: Vec<Transition> = row
                .iter()
                .map(|(&next, &c)| Transition {
                    next: if next < n { next } else { n + usize::from(next == STATE_SURVIVAL) },
                    probability: c / total,
                    reward: f64::from(u8::from(next == STATE_SURVIVAL)),
                })
                .collect();
            list.sort_by_key(|t| t.next);
            list
        })
        .collect();
    let mdp = TabularMdp::new(n, transitions, env.mdp.initial[..n].to_vec());
    let allowed = |s: usize, a: usize| counts.total(s, a) >= min_count;
    let optimal = value_iteration(&mdp, allowed);
    let actions = (0..n)
        .map(|s| if (0..N_ACTIONS).any(|a| allowed(s, a)) { optimal.rows[s].iter().position(|&p| p == 1.0).unwrap_or(0) } else { counts.most_logged(s) })
        .collect();
    table_value(&env.mdp, &deterministic(actions)).expect("a deterministic policy on ICU-Sepsis terminates")
}

fn one_step_improvement(env: &IcuSepsis, counts: &Counts, min_count: f64) -> f64 {
    let (sum, visits) = counts.survival.iter().fold((0.0, 0.0), |(s, v), (a, b)| (s + a, v + b));
    let mean = sum / visits;
    let value: Vec<f64> = counts.survival.iter().map(|(s, v)| (s + 5.0 * mean) / (v + 5.0)).collect();
    let actions = (0..N_PATIENT_STATES)
        .map(|s| {
            let q = |a: usize| {
                let total = counts.total(s, a);
                counts.next[s * N_ACTIONS + a]
                    .iter()
                    .map(|(&next, &c)| c / total * if next == STATE_SURVIVAL { 1.0 } else if next == STATE_DEATH { 0.0 } else { value[next] })
                    .sum::<f64>()
            };
            (0..N_ACTIONS).filter(|&a| counts.total(s, a) >= min_count).max_by(|&a, &b| q(a).total_cmp(&q(b))).unwrap_or_else(|| counts.most_logged(s))
        })
        .collect();
    table_value(&env.mdp, &deterministic(actions)).expect("a deterministic policy on ICU-Sepsis terminates")
}

/// `thresholds` and the support rule's `rule`, ascending, each once: a grid
/// always holds the threshold our models use.
pub(crate) fn with_rule(thresholds: &[u32], rule: u32) -> Vec<u32> {
    let mut all: Vec<u32> = thresholds.iter().copied().chain([rule]).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Both learners on the first `episodes` clinicians' episodes of the
/// `seed` stream, for every threshold and for the one the support rule
/// (`action::support_threshold`) gives at that size.
pub fn ceiling(env: &IcuSepsis, episodes: &[usize], min_counts: &[u32], seed: u64) -> Vec<CeilingRow> {
    let clinicians = Baseline::Clinicians.table(env);
    let mut rows = Vec::new();
    for &n in episodes {
        let counts = Counts::of(&sample_cohort(env, &clinicians, n, seed));
        let rule = support_threshold(n);
        for min_count in with_rule(min_counts, rule) {
            rows.push(CeilingRow {
                episodes: n,
                min_count,
                rule: min_count == rule,
                logged_mdp_value_iteration: logged_mdp_value_iteration(env, &counts, min_count as f64),
                one_step_improvement: one_step_improvement(env, &counts, min_count as f64),
            });
        }
    }
    rows
}

/// The best any policy can reach that prescribes, in every ICU-Sepsis
/// state, only what the support model allows there as the agent sees it
/// (the AI Clinician's cluster counts for the state's clinical values at
/// its threshold: the set `wm-mpc` ranks and the agent may simulate), and
/// anything where it allows nothing: ICU-Sepsis's own optimum under that
/// restriction, by value iteration on the true transitions. Unlike the
/// learners above it needs no estimate, so it bounds every policy that
/// keeps to the rule, however good its world model.
pub fn in_support_optimum(env: &IcuSepsis, support: &AiClinician) -> f64 {
    let allowed: Vec<[bool; N_ACTIONS]> = (0..N_PATIENT_STATES)
        .map(|s| {
            let practice = support.practice(&state_features(env, s));
            let mut row = [false; N_ACTIONS];
            for action in practice.supported_actions() {
                row[action.index()] = true;
            }
            if !row.contains(&true) {
                row = [true; N_ACTIONS];
            }
            row
        })
        .collect();
    let optimal = value_iteration(&env.mdp, |s, a| allowed[s][a]);
    let policy = PolicyTable::new(optimal.rows).expect("value iteration gives one action per state");
    table_value(&env.mdp, &policy).expect("a deterministic policy on ICU-Sepsis terminates")
}

pub fn markdown(rows: &[CeilingRow]) -> String {
    let mut text = String::from("| logged episodes | min. logged count | logged-MDP value iteration | one-step improvement |\n|---|---|---|---|\n");
    for r in rows {
        let rule = if r.rule { " (rule)" } else { "" };
        text += &format!("| {} | {}{rule} | {:.4} | {:.4} |\n", r.episodes, r.min_count, r.logged_mdp_value_iteration, r.one_step_improvement);
    }
    text
}
