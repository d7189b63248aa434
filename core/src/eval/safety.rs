//! Safety and guideline metrics per decision, computed exactly on ICU-Sepsis:
//! every decision the policy would make is weighted by how often it occurs
//! (expected visits), split by whether it is the first step and by the
//! previous step's vasopressor level, which G2 needs.

use crate::action::Action;
use crate::cohort::schema::idx;
use crate::env::clinical::state_features;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
use crate::eval::exact::{occupancy, ExactError};
use crate::guideline::{violations, Rule, Situation};
use crate::policy::PolicyTable;
pub use crate::report::SafetyRates;

/// The guideline situation of a state, from its clinical values.
pub fn state_situation(env: &IcuSepsis, state: usize) -> Situation {
    let values = state_features(env, state);
    Situation {
        map: values[idx("map")],
        lactate: values[idx("lactate")],
        fluid_balance_ml: values[idx("fluid_balance_ml")],
        previous_vaso: None,
        first_step: false,
    }
}

pub fn exact_safety(env: &IcuSepsis, policy: &PolicyTable) -> Result<SafetyRates, ExactError> {
    let visits = occupancy(&env.mdp, policy.rows())?;
    // Arrivals in each state by the vasopressor level just given.
    let mut after_vaso = vec![[0.0f64; 5]; N_PATIENT_STATES];
    for (s, &x) in visits.iter().enumerate() {
        for (a, &pi) in policy.row(s).iter().enumerate().filter(|(_, p)| **p > 0.0) {
            for t in env.mdp.transitions(s, a).iter().filter(|t| t.next < N_PATIENT_STATES) {
                after_vaso[t.next][a % 5] += x * pi * t.probability;
            }
        }
    }
    let (mut total, mut g1, mut g2, mut oos, mut any) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for s in 0..N_PATIENT_STATES {
        let base = state_situation(env, s);
        let first = (env.mdp.initial[s], Situation { first_step: true, ..base });
        let later = (0..5u8).map(|v| (after_vaso[s][v as usize], Situation { previous_vaso: Some(v), ..base }));
        for (weight, situation) in std::iter::once(first).chain(later).filter(|(w, _)| *w > 0.0) {
            total += weight;
            for (a, &pi) in policy.row(s).iter().enumerate().filter(|(_, p)| **p > 0.0) {
                let w = weight * pi;
                let found = violations(&situation, Action::from_index(a).expect("0..25"));
                g1 += w * f64::from(found.contains(&Rule::UnderTreatment));
                g2 += w * f64::from(found.contains(&Rule::VasopressorRaisedAtTarget));
                any += w * f64::from(!found.is_empty());
                oos += w * f64::from(!env.is_admissible(s, a));
            }
        }
    }
    debug_assert!((total - visits.iter().sum::<f64>()).abs() < 1e-6 * total.max(1.0));
    Ok(SafetyRates {
        g1_rate: g1 / total,
        g2_rate: g2 / total,
        unsafe_rate: (g1 + g2) / total,
        out_of_support_rate: oos / total,
        guideline_adherence: 1.0 - any / total,
    })
}
