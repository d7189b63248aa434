//! The treatment action: IV-fluid level 0-4 x vasopressor level 0-4.
//!
//! Index convention (ICU-Sepsis, AI Clinician): `index = 5 * fluid + vaso`.
//! Level 0 is none; levels 1-4 are quartiles of non-zero doses. Display dose
//! edges follow Komorowski et al. 2018 (IV fluid mL per 4 h;
//! vasopressor as norepinephrine-equivalent µg/kg/min).

use serde::{Deserialize, Serialize};

pub const LEVELS: u8 = 5;
pub const N_ACTIONS: usize = 25;

/// An action is in support in a state when clinicians gave it at least this
/// often in logged states like it: the floor of [`support_threshold`], the
/// fewest logged transitions the world model's memory draws from, and what
/// the agent is shown as logged practice.
pub const MIN_SUPPORT: u32 = 20;

/// ICU-Sepsis calls an action admissible in a state when MIMIC-III logged it
/// there at least this many times among this many patients (read from its
/// files: the expert policy's counts and the initial-state distribution's
/// denominators, `core/tests/icu_sepsis_published.rs`).
pub const ICU_SEPSIS_ADMISSIBLE: (u32, u32) = (21, 20_812);

/// How often clinicians must have given an action in logged states like a
/// patient's, in a cohort of `episodes` patients, for it to be in support:
/// ICU-Sepsis's admissibility at the same rate per patient, never below
/// [`MIN_SUPPORT`]. Held to a fixed count, a growing cohort lets rare
/// treatments pass (docs/world-model.md, "Support grows with the cohort").
pub fn support_threshold(episodes: usize) -> u32 {
    let (count, patients) = ICU_SEPSIS_ADMISSIBLE;
    let scaled = (u64::from(count) * episodes as u64).div_ceil(u64::from(patients));
    u32::try_from(scaled).unwrap_or(u32::MAX).max(MIN_SUPPORT)
}

/// Upper edges of fluid levels 1-3 in mL per 4 h (level 4 is above the last).
pub const FLUID_EDGES_ML_4H: [f64; 3] = [50.0, 180.0, 530.0];
/// Upper edges of vasopressor levels 1-3 in µg/kg/min norepinephrine-equivalent.
pub const VASO_EDGES_UG_KG_MIN: [f64; 3] = [0.08, 0.22, 0.45];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Action {
    pub fluid: u8,
    pub vaso: u8,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("action index {0} is outside 0..=24")]
    Index(usize),
    #[error("{kind} level {level} is outside 0..=4")]
    Level { kind: &'static str, level: u8 },
    #[error("{kind} dose {dose} is negative or not a number")]
    Dose { kind: &'static str, dose: f64 },
}

/// A dose range for display: `[low, high)`, `high = None` meaning open-ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DoseRange {
    pub low: f64,
    pub high: Option<f64>,
}

impl Action {
    pub const NONE: Action = Action { fluid: 0, vaso: 0 };

    pub fn new(fluid: u8, vaso: u8) -> Result<Self, ActionError> {
        for (kind, level) in [("fluid", fluid), ("vasopressor", vaso)] {
            if level >= LEVELS {
                return Err(ActionError::Level { kind, level });
            }
        }
        Ok(Self { fluid, vaso })
    }

    pub fn from_index(index: usize) -> Result<Self, ActionError> {
        if index >= N_ACTIONS {
            return Err(ActionError::Index(index));
        }
        Ok(Self { fluid: (index / 5) as u8, vaso: (index % 5) as u8 })
    }

    pub fn index(self) -> usize {
        5 * self.fluid as usize + self.vaso as usize
    }

    pub fn all() -> impl Iterator<Item = Action> {
        (0..N_ACTIONS).map(|i| Action { fluid: (i / 5) as u8, vaso: (i % 5) as u8 })
    }

    /// Levels from doses actually given.
    pub fn from_doses(fluid_ml_4h: f64, vaso_ug_kg_min: f64) -> Result<Self, ActionError> {
        Ok(Self { fluid: dose_level("fluid", fluid_ml_4h, &FLUID_EDGES_ML_4H)?, vaso: dose_level("vasopressor", vaso_ug_kg_min, &VASO_EDGES_UG_KG_MIN)? })
    }

    pub fn fluid_range(self) -> DoseRange {
        level_range(self.fluid, &FLUID_EDGES_ML_4H)
    }

    pub fn vaso_range(self) -> DoseRange {
        level_range(self.vaso, &VASO_EDGES_UG_KG_MIN)
    }
}

fn dose_level(kind: &'static str, dose: f64, edges: &[f64; 3]) -> Result<u8, ActionError> {
    if !(dose >= 0.0) {
        return Err(ActionError::Dose { kind, dose });
    }
    if dose == 0.0 {
        return Ok(0);
    }
    Ok(1 + edges.iter().filter(|&&edge| dose > edge).count() as u8)
}

fn level_range(level: u8, edges: &[f64; 3]) -> DoseRange {
    match level {
        0 => DoseRange { low: 0.0, high: Some(0.0) },
        1 => DoseRange { low: 0.0, high: Some(edges[0]) },
        2 | 3 => DoseRange { low: edges[level as usize - 2], high: Some(edges[level as usize - 1]) },
        _ => DoseRange { low: edges[2], high: None },
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fluid {} / vasopressor {}", self.fluid, self.vaso)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_support_threshold_keeps_icu_sepsis_rate_above_its_floor() {
        assert_eq!(support_threshold(14_000), MIN_SUPPORT, "our 14,000 training episodes: 15 by the rate, so the floor");
        assert_eq!(support_threshold(20_812), 21, "ICU-Sepsis's own cohort");
        assert_eq!(support_threshold(105_000), 106);
        assert_eq!(support_threshold(0), MIN_SUPPORT);
    }

    #[test]
    fn index_matches_the_npz_convention_and_round_trips() {
        assert_eq!(Action::new(2, 3).unwrap().index(), 13);
        for i in 0..N_ACTIONS {
            assert_eq!(Action::from_index(i).unwrap().index(), i);
        }
        assert_eq!(Action::all().count(), 25);
        assert!(Action::from_index(25).is_err());
        assert!(Action::new(5, 0).is_err());
    }

    #[test]
    fn doses_map_to_levels_at_the_published_edges() {
        let level = |f, v| Action::from_doses(f, v).unwrap();
        assert_eq!(level(0.0, 0.0), Action::NONE);
        assert_eq!(level(50.0, 0.08), Action { fluid: 1, vaso: 1 });
        assert_eq!(level(50.1, 0.081), Action { fluid: 2, vaso: 2 });
        assert_eq!(level(530.0, 0.45), Action { fluid: 3, vaso: 3 });
        assert_eq!(level(2000.0, 1.2), Action { fluid: 4, vaso: 4 });
        assert!(Action::from_doses(-1.0, 0.0).is_err());
        assert!(Action::from_doses(0.0, f64::NAN).is_err());
    }

    #[test]
    fn every_level_range_contains_a_dose_that_maps_back_to_it() {
        for a in Action::all() {
            for (range, dose_of) in [(a.fluid_range(), 0), (a.vaso_range(), 1)] {
                let dose = match range.high {
                    Some(high) if high == 0.0 => 0.0,
                    Some(high) => (range.low + high) / 2.0,
                    None => range.low * 2.0,
                };
                let back = if dose_of == 0 { Action::from_doses(dose, 0.0).unwrap().fluid } else { Action::from_doses(0.0, dose).unwrap().vaso };
                assert_eq!(back, if dose_of == 0 { a.fluid } else { a.vaso });
            }
        }
    }
}
