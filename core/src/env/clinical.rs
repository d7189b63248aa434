//! Turning ICU-Sepsis state centroids back into clinical units, so policies,
//! the agent and the app see MAP in mmHg and lactate in mmol/L. Evaluation
//! never uses these values; it stays on state ids.
//!
//! Centroid columns (clinical-reference.md section 2): 0-3 binary as
//! (value - 0.5); 4-35 z-scored; 36-46 z-scored after log(x + 0.1). The
//! reference means and SDs are in [`REFERENCES`] with their source; log
//! columns use the log-normal with the same mean and SD (moment matching).
//! SOFA comes from the MDP's own `sofa_scores`.

use super::icu_sepsis::{IcuSepsis, N_CENTROID_COLUMNS};
use crate::cohort::schema::{idx, FEATURES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// MIMIC-IV sepsis cohort, SepsisAgent scaler file (clinical-reference.md section 1).
    MimicIv,
    /// This project's assumption: a typical adult ICU sepsis population value,
    /// not taken from a data set (docs/cohort-format.md lists them).
    ProjectAssumption,
}

#[derive(Clone, Copy, Debug)]
pub enum Scale {
    /// x = mean + z * sd
    Linear,
    /// log(x + 0.1) ~ Normal, matched to the raw mean and SD.
    Log,
    /// log(x + 0.1) ~ Normal with these log-scale mean and SD directly.
    LogDirect,
    /// Binary column stored as (share - 0.5); the value is 1 when share >= 0.5.
    Binary,
    /// As Binary, but the column codes the opposite (1 = female): value 1 when share < 0.5.
    BinaryInverted,
}

/// How one schema feature comes from one centroid column.
#[derive(Clone, Copy, Debug)]
pub struct Reference {
    pub feature: &'static str,
    pub column: usize,
    pub scale: Scale,
    pub mean: f64,
    pub sd: f64,
    pub source: Source,
    /// Decimal places kept in cohort files.
    pub decimals: i32,
}

const fn r(feature: &'static str, column: usize, scale: Scale, mean: f64, sd: f64, source: Source, decimals: i32) -> Reference {
    Reference { feature, column, scale, mean, sd, source, decimals }
}

use Scale::*;
use Source::*;

/// Every schema feature except SOFA (taken from `sofa_scores`).
pub const REFERENCES: &[Reference] = &[
    r("sex_male", 0, BinaryInverted, 0.0, 0.0, ProjectAssumption, 0),
    r("mechvent", 1, Binary, 0.0, 0.0, ProjectAssumption, 0),
    r("age_years", 4, Linear, 64.0, 16.5, ProjectAssumption, 0),
    r("weight_kg", 5, Linear, 80.0, 22.0, ProjectAssumption, 1),
    r("gcs", 6, Linear, 11.5, 3.9, ProjectAssumption, 0),
    r("hr", 7, Linear, 87.6, 17.9, MimicIv, 0),
    r("sbp", 8, Linear, 117.0, 18.9, MimicIv, 0),
    r("map", 9, Linear, 77.8, 13.0, MimicIv, 0),
    r("dbp", 10, Linear, 61.7, 12.4, MimicIv, 0),
    r("rr", 11, Linear, 20.1, 5.0, MimicIv, 0),
    r("temp_c", 12, Linear, 37.0, 0.35, MimicIv, 1),
    r("fio2", 13, Linear, 47.5, 15.2, MimicIv, 0),
    r("wbc", 21, Linear, 10.2, 4.5, MimicIv, 1),
    r("platelets", 22, Linear, 199.0, 108.0, MimicIv, 0),
    r("ph", 25, Linear, 7.384, 0.065, MimicIv, 2),
    r("pao2", 26, Linear, 105.7, 57.2, MimicIv, 0),
    r("bicarbonate", 29, Linear, 23.4, 4.7, MimicIv, 1),
    r("lactate", 30, Linear, 1.87, 1.16, MimicIv, 1),
    r("fluid_balance_ml", 35, Linear, 2500.0, 6000.0, ProjectAssumption, -1),
    r("spo2", 36, Log, 96.9, 2.4, MimicIv, 0),
    r("bun", 37, Log, 29.9, 22.4, MimicIv, 0),
    r("creatinine", 38, Log, 1.54, 1.39, MimicIv, 1),
    r("bilirubin", 41, Log, 1.60, 3.10, MimicIv, 1),
    r("urine_ml_4h", 46, LogDirect, 4.66, 2.08, MimicIv, -1),
];

impl Reference {
    /// The clinical value for a centroid entry, rounded and kept inside the
    /// feature's plausible range.
    pub fn value(&self, centroid: f64) -> f64 {
        let raw = match self.scale {
            Linear => self.mean + centroid * self.sd,
            Log => {
                let sd_log = (1.0 + (self.sd / self.mean).powi(2)).ln().sqrt();
                let mean_log = (self.mean + 0.1).ln() - sd_log * sd_log / 2.0;
                (mean_log + centroid * sd_log).exp() - 0.1
            }
            LogDirect => (self.mean + centroid * self.sd).exp() - 0.1,
            Binary => f64::from(centroid + 0.5 >= 0.5),
            BinaryInverted => f64::from(centroid + 0.5 < 0.5),
        };
        let feature = &FEATURES[idx(self.feature)];
        let scale = 10f64.powi(self.decimals);
        let rounded = if feature.integer { raw.round() } else { (raw * scale).round() / scale };
        rounded.clamp(feature.plausible.0, feature.plausible.1)
    }
}

/// A state's features in schema order (every feature present).
pub fn state_features(env: &IcuSepsis, state: usize) -> Vec<Option<f64>> {
    let centroid: &[f64; N_CENTROID_COLUMNS] = &env.centroids[state];
    let mut values = vec![None; FEATURES.len()];
    for reference in REFERENCES {
        values[idx(reference.feature)] = Some(reference.value(centroid[reference.column]));
    }
    values[idx("sofa")] = Some(env.sofa[state].round().clamp(0.0, 24.0));
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_but_sofa_has_exactly_one_reference() {
        for feature in FEATURES {
            let count = REFERENCES.iter().filter(|r| r.feature == feature.key).count();
            assert_eq!(count, usize::from(feature.key != "sofa"), "{}", feature.key);
        }
    }

    #[test]
    fn z_zero_gives_the_reference_mean() {
        let map = REFERENCES.iter().find(|r| r.feature == "map").unwrap();
        assert_eq!(map.value(0.0), 78.0);
        assert_eq!(map.value(-1.0), 65.0); // 77.8 - 13.0 = 64.8 -> 65 mmHg
        let lactate = REFERENCES.iter().find(|r| r.feature == "lactate").unwrap();
        assert_eq!(lactate.value(1.0), 3.0);
    }

    #[test]
    fn log_columns_recover_the_mean_on_average_and_stay_positive() {
        let creatinine = REFERENCES.iter().find(|r| r.feature == "creatinine").unwrap();
        // The median of a log-normal sits below its mean.
        assert!(creatinine.value(0.0) < 1.54 && creatinine.value(0.0) > 0.5);
        assert!(creatinine.value(-5.0) >= 0.1);
        let urine = REFERENCES.iter().find(|r| r.feature == "urine_ml_4h").unwrap();
        assert_eq!(urine.value(0.0), 110.0); // e^4.66 - 0.1 = 105.5 -> nearest 10 mL
    }

    #[test]
    fn extreme_centroids_are_kept_plausible() {
        for reference in REFERENCES {
            let feature = &FEATURES[idx(reference.feature)];
            for z in [-15.0, 15.0] {
                let v = reference.value(z);
                assert!(v >= feature.plausible.0 && v <= feature.plausible.1, "{} at z={z}: {v}", reference.feature);
            }
        }
    }
}
