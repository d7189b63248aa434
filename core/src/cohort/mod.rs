//! Cohorts: patients as sequences of 4-hour steps in clinical units, the
//! treatment given at each step, and the outcome. Browser-safe: the app and
//! the worker validate uploads with the same code as the CLI.

pub mod csv_format;
pub mod normaliser;
pub mod schema;

use serde::{Deserialize, Serialize};

use crate::action::Action;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Survived,
    Died,
    /// Still in care (a bedside patient): usable for recommendations, not
    /// for training or evaluation, which need the outcome.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// 0-based index of the 4-hour step since ICU admission.
    pub index: u32,
    /// One entry per [`schema::FEATURES`]; `None` where not measured.
    pub values: Vec<Option<f64>>,
    /// The treatment clinicians gave during this step.
    pub action: Action,
    /// The ICU-Sepsis state id, for cohorts sampled from that MDP (exact
    /// evaluation and state-based policies need it); `None` for real data.
    pub state: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    /// De-identified study id.
    pub id: String,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    pub patients: Vec<Patient>,
}

impl Step {
    pub fn value(&self, key: &str) -> Option<f64> {
        self.values[schema::idx(key)]
    }
}

impl Cohort {
    pub fn patient(&self, id: &str) -> Option<&Patient> {
        self.patients.iter().find(|p| p.id == id)
    }

    /// Patients whose outcome is not known yet.
    pub fn unknown_outcomes(&self) -> usize {
        self.patients.iter().filter(|p| p.outcome == Outcome::Unknown).count()
    }

    pub fn steps(&self) -> usize {
        self.patients.iter().map(|p| p.steps.len()).sum()
    }
}
