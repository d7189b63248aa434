//! Turning a step's clinical values into a standardised feature vector for
//! learnt policies: z-scores with the training cohort's means and SDs;
//! missing values become the training mean (z = 0).

use serde::{Deserialize, Serialize};

use crate::cohort::schema::FEATURES;
use crate::cohort::{Cohort, Step};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardiser {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
}

impl Standardiser {
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

    pub fn transform(&self, values: &[Option<f64>]) -> Vec<f64> {
        values.iter().enumerate().map(|(i, v)| v.map_or(0.0, |v| (v - self.mean[i]) / self.sd[i])).collect()
    }

    pub fn step(&self, step: &Step) -> Vec<f64> {
        self.transform(&step.values)
    }
}
