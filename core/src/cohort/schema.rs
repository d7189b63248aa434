//! The clinical features a cohort row carries: units, plausible ranges (a
//! value outside is an input error) and clip ranges (the 1st-99th percentile
//! band models are trained on; values outside are kept but clipped for models).
//! Clip ranges: MAP 50-125, lactate 0.6-9.3 and HR 48-139 are the MIMIC-IV
//! figures of clinical-reference.md section 1; the others are this project's
//! choice of typical ICU bands, documented in docs/cohort-format.md.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Changes every step (vitals, labs, urine, SOFA, fluid balance).
    Dynamic,
    /// Fixed for the stay (age, sex, weight).
    Static,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Feature {
    /// CSV column name.
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    /// Values outside are rejected as implausible (inclusive bounds).
    pub plausible: (f64, f64),
    /// Band used by models and charts.
    pub clip: (f64, f64),
    /// Whether a cell may be empty (the value was not measured in that step).
    pub missing_allowed: bool,
    /// Only whole numbers are valid (GCS, SOFA, flags).
    pub integer: bool,
}

const fn f(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    kind: Kind,
    plausible: (f64, f64),
    clip: (f64, f64),
    missing_allowed: bool,
    integer: bool,
) -> Feature {
    Feature { key, label, unit, kind, plausible, clip, missing_allowed, integer }
}

use Kind::{Dynamic as D, Static as S};

/// Every feature, in CSV column order.
pub const FEATURES: &[Feature] = &[
    f("map", "Mean arterial pressure", "mmHg", D, (10.0, 250.0), (50.0, 125.0), false, false),
    f("sbp", "Systolic blood pressure", "mmHg", D, (20.0, 300.0), (70.0, 180.0), true, false),
    f("dbp", "Diastolic blood pressure", "mmHg", D, (5.0, 200.0), (30.0, 100.0), true, false),
    f("hr", "Heart rate", "beats/min", D, (0.0, 300.0), (48.0, 139.0), false, false),
    f("rr", "Respiratory rate", "breaths/min", D, (0.0, 80.0), (8.0, 40.0), true, false),
    f("spo2", "SpO2", "%", D, (30.0, 100.0), (85.0, 100.0), true, false),
    f("temp_c", "Temperature", "°C", D, (25.0, 45.0), (35.0, 40.0), true, false),
    f("fio2", "FiO2", "%", D, (21.0, 100.0), (21.0, 100.0), true, false),
    f("gcs", "Glasgow Coma Scale", "points", D, (3.0, 15.0), (3.0, 15.0), true, true),
    f("lactate", "Lactate", "mmol/L", D, (0.1, 30.0), (0.6, 9.3), true, false),
    f("creatinine", "Creatinine", "mg/dL", D, (0.1, 25.0), (0.3, 8.0), true, false),
    f("bilirubin", "Total bilirubin", "mg/dL", D, (0.0, 80.0), (0.2, 20.0), true, false),
    f("platelets", "Platelets", "10^9/L", D, (0.0, 2000.0), (10.0, 600.0), true, false),
    f("ph", "Arterial pH", "", D, (6.5, 8.0), (7.0, 7.6), true, false),
    f("pao2", "PaO2", "mmHg", D, (10.0, 700.0), (40.0, 400.0), true, false),
    f("bicarbonate", "Bicarbonate", "mmol/L", D, (1.0, 60.0), (10.0, 40.0), true, false),
    f("bun", "Blood urea nitrogen", "mg/dL", D, (1.0, 300.0), (5.0, 120.0), true, false),
    f("wbc", "White blood cells", "10^9/L", D, (0.0, 500.0), (1.0, 40.0), true, false),
    f("urine_ml_4h", "Urine output", "mL per 4 h", D, (0.0, 10000.0), (0.0, 2000.0), true, false),
    f("sofa", "SOFA score", "points", D, (0.0, 24.0), (0.0, 24.0), true, true),
    f("mechvent", "Mechanical ventilation", "0/1", D, (0.0, 1.0), (0.0, 1.0), true, true),
    f("fluid_balance_ml", "Cumulative fluid balance", "mL", D, (-50000.0, 100000.0), (-10000.0, 30000.0), true, false),
    f("age_years", "Age", "years", S, (18.0, 120.0), (18.0, 100.0), false, false),
    f("sex_male", "Sex (male)", "0/1", S, (0.0, 1.0), (0.0, 1.0), false, true),
    f("weight_kg", "Weight", "kg", S, (20.0, 350.0), (40.0, 180.0), true, false),
];

pub fn feature_index(key: &str) -> Option<usize> {
    FEATURES.iter().position(|f| f.key == key)
}

/// Index of a feature known to exist (panics on a typo, caught by tests).
pub fn idx(key: &str) -> usize {
    feature_index(key).unwrap_or_else(|| panic!("no feature {key:?} in the schema"))
}

/// Column-name fragments that suggest a direct identifier. A cohort file with
/// such a column is refused: this tool accepts de-identified data only.
pub const IDENTIFIER_HINTS: &[(&str, &str)] = &[
    ("name", "a person's name"),
    ("mrn", "a medical record number"),
    ("record_number", "a medical record number"),
    ("medical_record", "a medical record number"),
    ("hospital_number", "a hospital number"),
    ("nhs", "a national health number"),
    ("ssn", "a social security number"),
    ("social_security", "a social security number"),
    ("dob", "a date of birth"),
    ("birth", "a date of birth"),
    ("address", "an address"),
    ("street", "an address"),
    ("postcode", "an address"),
    ("zip", "an address"),
    ("phone", "a phone number"),
    ("mobile", "a phone number"),
    ("email", "an e-mail address"),
];

/// Why a column name looks like a direct identifier, if it does.
pub fn identifier_reason(column: &str) -> Option<&'static str> {
    let normalised = column.trim().to_ascii_lowercase().replace([' ', '-', '.'], "_");
    // Short hints must be a whole word ("dob", "zip"); long ones may be part of one ("birthdate").
    let matches = |hint: &str| normalised.split('_').any(|word| word == hint) || (hint.len() > 4 && normalised.contains(hint));
    IDENTIFIER_HINTS.iter().find(|(hint, _)| matches(hint)).map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_ranges_sensible() {
        for (i, a) in FEATURES.iter().enumerate() {
            assert!(FEATURES[i + 1..].iter().all(|b| b.key != a.key), "{} twice", a.key);
            assert!(a.plausible.0 < a.plausible.1 && a.clip.0 < a.clip.1, "{}", a.key);
            assert!(a.plausible.0 <= a.clip.0 && a.clip.1 <= a.plausible.1, "{}: clip inside plausible", a.key);
        }
        assert_eq!(idx("map"), 0);
    }

    #[test]
    fn identifier_like_columns_are_recognised() {
        for column in ["patient_name", "Name", "MRN", "date_of_birth", "DOB", "home address", "phone", "email", "nhs_number", "zip"] {
            assert!(identifier_reason(column).is_some(), "{column}");
        }
        for column in ["patient_id", "map", "lactate", "urine_ml_4h", "step", "sofa", "fluid_level"] {
            assert_eq!(identifier_reason(column), None, "{column}");
        }
    }
}
