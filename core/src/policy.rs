//! Markov policies over the ICU-Sepsis patient states, as tables of action
//! probabilities: every policy (baseline, planner, agent) is judged in this form.

use std::io::Write;

use crate::action::N_ACTIONS;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};

const SUM_TOLERANCE: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyTable {
    /// One row of action probabilities per patient state 0..713.
    rows: Vec<[f64; N_ACTIONS]>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("policy has {0} rows, expected one per patient state ({N_PATIENT_STATES})")]
    Rows(usize),
    #[error("state {state}: probabilities sum to {sum}, expected 1 (all entries finite and >= 0)")]
    Row { state: usize, sum: f64 },
}

impl PolicyTable {
    pub fn new(rows: Vec<[f64; N_ACTIONS]>) -> Result<Self, PolicyError> {
        if rows.len() != N_PATIENT_STATES {
            return Err(PolicyError::Rows(rows.len()));
        }
        for (state, row) in rows.iter().enumerate() {
            let sum: f64 = row.iter().sum();
            if row.iter().any(|p| !p.is_finite() || *p < 0.0) || (sum - 1.0).abs() > SUM_TOLERANCE {
                return Err(PolicyError::Row { state, sum });
            }
        }
        Ok(Self { rows })
    }

    /// Always the same action in a state.
    pub fn deterministic(actions: &[usize]) -> Result<Self, PolicyError> {
        Self::new(
            actions
                .iter()
                .map(|&a| {
                    let mut row = [0.0; N_ACTIONS];
                    row[a] = 1.0;
                    row
                })
                .collect(),
        )
    }

    pub fn uniform() -> Self {
        Self { rows: vec![[1.0 / N_ACTIONS as f64; N_ACTIONS]; N_PATIENT_STATES] }
    }

    pub fn rows(&self) -> &[[f64; N_ACTIONS]] {
        &self.rows
    }

    pub fn row(&self, state: usize) -> &[f64; N_ACTIONS] {
        &self.rows[state]
    }

    /// Draw an action index in `state`.
    pub fn sample<R: rand::Rng>(&self, state: usize, rng: &mut R) -> usize {
        crate::env::icu_sepsis::sample_index(self.rows[state].iter().copied(), rng)
    }

    pub fn probability(&self, state: usize, action: usize) -> f64 {
        self.rows[state][action]
    }

    /// `state,p0,...,p24`, one row per patient state.
    pub fn write_csv<W: Write>(&self, writer: W) -> csv::Result<()> {
        let mut out = csv::Writer::from_writer(writer);
        let header: Vec<String> = std::iter::once("state".to_string()).chain((0..N_ACTIONS).map(|a| format!("p{a}"))).collect();
        out.write_record(&header)?;
        for (state, row) in self.rows.iter().enumerate() {
            out.write_record(std::iter::once(state.to_string()).chain(row.iter().map(|p| p.to_string())))?;
        }
        out.flush()?;
        Ok(())
    }
}

/// The named baselines that need no training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// Uniform over all 25 actions.
    Random,
    /// The clinicians' policy estimated from MIMIC-III (ICU-Sepsis `expert_policy`).
    Clinicians,
    /// Never any fluid or vasopressor.
    NoTreatment,
    /// Value iteration on the true MDP: an oracle upper bound, not a deployable policy.
    Optimal,
}

impl Baseline {
    pub const ALL: [Baseline; 4] = [Baseline::Random, Baseline::Clinicians, Baseline::NoTreatment, Baseline::Optimal];

    pub fn name(self) -> &'static str {
        match self {
            Baseline::Random => "random",
            Baseline::Clinicians => "clinicians",
            Baseline::NoTreatment => "no-treatment",
            Baseline::Optimal => "optimal",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    pub fn table(self, env: &IcuSepsis) -> PolicyTable {
        match self {
            Baseline::Random => PolicyTable::uniform(),
            Baseline::Clinicians => PolicyTable::new(env.expert_policy[..N_PATIENT_STATES].to_vec())
                .expect("the ICU-Sepsis expert policy is a distribution in every patient state"),
            Baseline::NoTreatment => PolicyTable::deterministic(&[0; N_PATIENT_STATES]).expect("valid"),
            Baseline::Optimal => PolicyTable::new(crate::eval::exact::value_iteration(&env.mdp, |_, _| true).rows)
                .expect("value iteration yields a deterministic policy"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_reject_rows_that_are_not_distributions() {
        let mut rows = vec![[0.04; N_ACTIONS]; N_PATIENT_STATES];
        assert!(PolicyTable::new(rows.clone()).is_ok());
        rows[5][0] = 0.5;
        assert!(matches!(PolicyTable::new(rows.clone()), Err(PolicyError::Row { state: 5, .. })));
        rows.pop();
        assert_eq!(PolicyTable::new(rows), Err(PolicyError::Rows(712)));
    }

    #[test]
    fn csv_has_the_documented_header_and_one_row_per_state() {
        let mut out = Vec::new();
        PolicyTable::uniform().write_csv(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), format!("state,{}", (0..25).map(|a| format!("p{a}")).collect::<Vec<_>>().join(",")));
        assert_eq!(lines.clone().count(), N_PATIENT_STATES);
        assert!(lines.next().unwrap().starts_with("0,0.04,"));
    }

    #[test]
    fn baseline_names_round_trip() {
        for b in Baseline::ALL {
            assert_eq!(Baseline::from_name(b.name()), Some(b));
        }
        assert_eq!(Baseline::from_name("magic"), None);
    }
}
