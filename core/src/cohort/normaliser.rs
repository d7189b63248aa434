//! Standardising clinical values with a cohort's means and SDs: learnt
//! policies and the world model read z-scores, and turn predictions back
//! into clinical units with the same numbers.

use serde::{Deserialize, Serialize};

use super::schema::FEATURES;
use super::{Cohort, Step};

/// Means and SDs used to standardise every schema feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
}

impl Normaliser {
    pub fn fit(cohort: &Cohort) -> Self {
        let n = FEATURES.len();
        let (mut sum, mut sq, mut count) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for step in cohort.patients.iter().flat_map(|p| &p.steps) {
            for (i, v) in step.values.iter().enumerate() {
                if let Some(v) = v {
                    sum[i] += v;
                    sq[i] += v * v;
                    count[i] += 1.0;
                }
            }
        }
        let mean: Vec<f64> = (0..n).map(|i| if count[i] > 0.0 { sum[i] / count[i] } else { 0.0 }).collect();
        let sd = (0..n)
            .map(|i| {
                let var = if count[i] > 1.0 { (sq[i] / count[i] - mean[i] * mean[i]).max(0.0) } else { 0.0 };
                // A constant feature carries no information; sd 1 keeps it at z = 0.
                if var > 1e-12 { var.sqrt() } else { 1.0 }
            })
            .collect();
        Self { mean, sd }
    }

    pub fn z(&self, feature: usize, value: f64) -> f64 {
        (value - self.mean[feature]) / self.sd[feature]
    }

    pub fn value(&self, feature: usize, z: f64) -> f64 {
        self.mean[feature] + z * self.sd[feature]
    }

    /// All features as z-scores; missing values become 0 (the mean).
    pub fn transform(&self, values: &[Option<f64>]) -> Vec<f64> {
        values.iter().enumerate().map(|(i, v)| v.map_or(0.0, |v| self.z(i, v))).collect()
    }

    pub fn step(&self, step: &Step) -> Vec<f64> {
        self.transform(&step.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::cohort::schema::idx;
    use crate::cohort::{Outcome, Patient};

    fn cohort() -> Cohort {
        let steps = (0..4)
            .map(|t| {
                let mut values = vec![Some(10.0); FEATURES.len()];
                values[idx("map")] = Some(60.0 + t as f64);
                values[idx("lactate")] = None;
                Step { index: t, values, action: Action::NONE, state: None }
            })
            .collect();
        Cohort { patients: vec![Patient { id: "p".into(), steps, outcome: Outcome::Survived }] }
    }

    #[test]
    fn normaliser_round_trips_values() {
        let n = Normaliser::fit(&cohort());
        let i = idx("map");
        assert!((n.mean[i] - 61.5).abs() < 1e-12);
        assert!((n.value(i, n.z(i, 61.5)) - 61.5).abs() < 1e-9);
    }

    #[test]
    fn constant_and_missing_features_stay_at_zero() {
        let n = Normaliser::fit(&cohort());
        let z = n.step(&cohort().patients[0].steps[0]);
        assert_eq!(z[idx("hr")], 0.0, "constant");
        assert_eq!(z[idx("lactate")], 0.0, "never measured");
    }
}
