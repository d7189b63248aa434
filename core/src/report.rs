//! What the evaluations report, as plain data: browser-safe, so the worker
//! can send a cohort report to the app and the app can draw it. The
//! computations live in [`crate::eval`] (native and in the worker).

use serde::{Deserialize, Serialize};

/// A point estimate with its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// Off-policy estimates of one policy's value from a logged cohort
/// (`eval::ope`): weighted importance sampling, per-decision WIS, weighted
/// doubly robust.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpeReport {
    pub wis: Interval,
    pub wpdis: Interval,
    pub dr: Interval,
    /// Effective sample size of the WIS weights, out of `episodes`.
    pub ess: f64,
    pub episodes: usize,
}

/// Safety and guideline rates per decision.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SafetyRates {
    /// Share of decisions violating G1 (under-treatment).
    pub g1_rate: f64,
    /// Share violating G2 (vasopressor raised at target).
    pub g2_rate: f64,
    /// G1 + G2, as the paper's "unsafe actions".
    pub unsafe_rate: f64,
    /// Share of decisions outside the actions clinicians took in that state.
    pub out_of_support_rate: f64,
    /// Share of decisions that violate none of the rules of [`crate::guideline`].
    pub guideline_adherence: f64,
}

/// A policy's decisions over a logged cohort beside the clinicians'
/// (`eval::cohort_report`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CohortReport {
    /// Which policy decided (a display name).
    pub policy: String,
    /// Patients with a known outcome, reported on.
    pub patients: usize,
    /// Patients set aside because their outcome is not known yet.
    pub unknown_outcome: usize,
    pub decisions: usize,
    /// Distinct support clusters the cohort's steps fall in.
    pub states: usize,
    /// Observed survival: the clinicians' own value, with a bootstrap 95% interval.
    pub clinicians_survival: Interval,
    /// Off-policy estimates of the policy's survival.
    pub ope: OpeReport,
    pub clinicians: DecisionStats,
    pub policy_stats: DecisionStats,
    pub agreement: Agreement,
}

/// How one decision-maker acted over the cohort's steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionStats {
    /// Decisions per action index (`fluid * 5 + vaso`).
    pub actions: Vec<u32>,
    pub safety: SafetyRates,
}

/// Where the policy's decision differs from the clinician's at the same step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Share of steps with the same action.
    pub same_action: f64,
    pub more_fluid: f64,
    pub less_fluid: f64,
    pub more_vasopressor: f64,
    pub less_vasopressor: f64,
}
