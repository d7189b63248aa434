//! Environments the policies and planners act in.

pub mod clinical;
pub mod cohort_sampling;
pub mod icu_sepsis;

use crate::action::N_ACTIONS;

/// One possible outcome of taking an action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    pub next: usize,
    pub probability: f64,
    pub reward: f64,
}

/// A finite episodic MDP with 25 actions: states `0..n_transient` are
/// non-terminal; any `next >= n_transient` ends the episode (value 0 after).
/// Exact evaluation and value iteration work on this form, so they can be
/// tested on tiny hand-made MDPs and run on ICU-Sepsis alike.
#[derive(Clone, Debug)]
pub struct TabularMdp {
    pub n_transient: usize,
    /// Non-zero transitions for each `state * 25 + action`.
    transitions: Vec<Vec<Transition>>,
    /// Start-state distribution over the transient states.
    pub initial: Vec<f64>,
}

impl TabularMdp {
    /// `transitions[state * 25 + action]` for every transient state.
    pub fn new(n_transient: usize, transitions: Vec<Vec<Transition>>, initial: Vec<f64>) -> Self {
        assert_eq!(transitions.len(), n_transient * N_ACTIONS, "one transition list per state and action");
        assert_eq!(initial.len(), n_transient, "one initial probability per transient state");
        Self { n_transient, transitions, initial }
    }

    pub fn transitions(&self, state: usize, action: usize) -> &[Transition] {
        &self.transitions[state * N_ACTIONS + action]
    }
}
