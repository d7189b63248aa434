//! Turning cohorts into model inputs: fixed-length windows of encoded steps.
//!
//! A step is encoded as `[z values of the per-step features (missing = 0),
//! their observed masks, z statics, one-hot fluid level, one-hot vasopressor
//! level]`. Windows are left-padded with all-zero steps.

use serde::{Deserialize, Serialize};

use crate::action::{Action, LEVELS};
use crate::cohort::schema::{Kind, FEATURES};
use crate::cohort::normaliser::Normaliser;
use crate::cohort::{Cohort, Outcome, Step};

/// Which schema features the model reads and predicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Predicted per-step features (schema indices).
    pub dynamic: Vec<usize>,
    /// Fixed per-stay inputs (schema indices).
    pub statics: Vec<usize>,
}

impl Default for Layout {
    fn default() -> Self {
        let of = |kind| FEATURES.iter().enumerate().filter(|(_, f)| f.kind == kind).map(|(i, _)| i).collect();
        Self { dynamic: of(Kind::Dynamic), statics: of(Kind::Static) }
    }
}

impl Layout {
    pub fn input_dim(&self) -> usize {
        2 * self.dynamic.len() + self.statics.len() + 2 * LEVELS as usize
    }

    /// A step's per-step features in z units, in layout order (0 where
    /// missing): what `encode` writes first, and what states are compared on.
    pub fn dynamic_z(&self, normaliser: &Normaliser, values: &[Option<f64>]) -> Vec<f64> {
        self.dynamic.iter().map(|&i| values[i].map_or(0.0, |v| normaliser.z(i, v))).collect()
    }

    /// Encode one step (with the action given in it).
    pub fn encode(&self, normaliser: &Normaliser, values: &[Option<f64>], action: Action, out: &mut Vec<f32>) {
        for &i in &self.dynamic {
            out.push(values[i].map_or(0.0, |v| normaliser.z(i, v)) as f32);
        }
        for &i in &self.dynamic {
            out.push(if values[i].is_some() { 1.0 } else { 0.0 });
        }
        for &i in &self.statics {
            out.push(values[i].map_or(0.0, |v| normaliser.z(i, v)) as f32);
        }
        for level in 0..LEVELS {
            out.push(if action.fluid == level { 1.0 } else { 0.0 });
        }
        for level in 0..LEVELS {
            out.push(if action.vaso == level { 1.0 } else { 0.0 });
        }
    }

    /// Encode the window ending at `steps.last()`, left-padded to `window`.
    pub fn encode_window(&self, normaliser: &Normaliser, steps: &[(&[Option<f64>], Action)], window: usize, out: &mut Vec<f32>) {
        let used = steps.len().min(window);
        out.extend(std::iter::repeat_n(0.0, (window - used) * self.input_dim()));
        for (values, action) in &steps[steps.len() - used..] {
            self.encode(normaliser, values, *action, out);
        }
    }
}

/// Training examples: one per logged step.
#[derive(Clone, Debug, Default)]
pub struct Windows {
    pub window: usize,
    pub input_dim: usize,
    pub dynamic_dim: usize,
    /// `n x window x input_dim`
    pub inputs: Vec<f32>,
    /// Next step's per-step features in z units, `n x dynamic_dim` (0 where missing).
    pub next: Vec<f32>,
    /// 1 where the next value is observed; all 0 for a patient's last step.
    pub next_mask: Vec<f32>,
    /// The current step's values in z units (the persistence prediction;
    /// 0 where missing) and 1 where observed.
    pub current: Vec<f32>,
    pub current_mask: Vec<f32>,
    /// 1 if the patient died by the end of the stay.
    pub died: Vec<f32>,
    /// Patient index of each example (for patient-level bootstraps and sampling).
    pub patient: Vec<u32>,
}

impl Windows {
    pub fn len(&self) -> usize {
        self.died.len()
    }

    pub fn is_empty(&self) -> bool {
        self.died.is_empty()
    }

    pub fn build(cohort: &Cohort, normaliser: &Normaliser, layout: &Layout, window: usize) -> Self {
        let mut w = Windows { window, input_dim: layout.input_dim(), dynamic_dim: layout.dynamic.len(), ..Default::default() };
        let z_dynamic = |step: &Step| -> (Vec<f32>, Vec<f32>) {
            layout.dynamic.iter().map(|&i| step.values[i].map_or((0.0, 0.0), |v| (normaliser.z(i, v) as f32, 1.0))).unzip()
        };
        for (p, patient) in cohort.patients.iter().enumerate() {
            let history: Vec<(&[Option<f64>], Action)> = patient.steps.iter().map(|s| (s.values.as_slice(), s.action)).collect();
            for t in 0..patient.steps.len() {
                layout.encode_window(normaliser, &history[..=t], window, &mut w.inputs);
                let (current, current_mask) = z_dynamic(&patient.steps[t]);
                w.current.extend(current);
                w.current_mask.extend(current_mask);
                match patient.steps.get(t + 1) {
                    Some(next) => {
                        let (values, mask) = z_dynamic(next);
                        w.next.extend(values);
                        w.next_mask.extend(mask);
                    }
                    None => {
                        w.next.extend(std::iter::repeat_n(0.0, layout.dynamic.len()));
                        w.next_mask.extend(std::iter::repeat_n(0.0, layout.dynamic.len()));
                    }
                }
                w.died.push(if patient.outcome == Outcome::Died { 1.0 } else { 0.0 });
                w.patient.push(p as u32);
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::schema::idx;
    use crate::cohort::Patient;

    fn patient(steps: usize) -> Patient {
        let steps = (0..steps)
            .map(|t| {
                let mut values = vec![Some(10.0); FEATURES.len()];
                values[idx("map")] = Some(60.0 + t as f64);
                values[idx("lactate")] = if t == 1 { None } else { Some(2.0) };
                Step { index: t as u32, values, action: Action { fluid: (t % 5) as u8, vaso: 1 }, state: None }
            })
            .collect();
        Patient { id: "p".into(), steps, outcome: Outcome::Died }
    }

    #[test]
    fn windows_are_left_padded_and_carry_targets_masks_and_outcome() {
        let cohort = Cohort { patients: vec![patient(3)] };
        let normaliser = Normaliser::fit(&cohort);
        let layout = Layout::default();
        let w = Windows::build(&cohort, &normaliser, &layout, 6);
        let d = layout.input_dim();
        assert_eq!(w.len(), 3);
        assert_eq!(w.inputs.len(), 3 * 6 * d);
        // First example: five padding steps, then step 0.
        assert!(w.inputs[..5 * d].iter().all(|&v| v == 0.0));
        let step0 = &w.inputs[5 * d..6 * d];
        let dy = layout.dynamic.len();
        let map = layout.dynamic.iter().position(|&i| i == idx("map")).unwrap();
        assert!((step0[map] - normaliser.z(idx("map"), 60.0) as f32).abs() < 1e-6);
        assert_eq!(&step0[d - 10..], &[1., 0., 0., 0., 0., 0., 1., 0., 0., 0.], "fluid 0, vaso 1");
        // The next step's lactate is missing: mask 0 there.
        let lactate = layout.dynamic.iter().position(|&i| i == idx("lactate")).unwrap();
        assert_eq!(w.next_mask[lactate], 0.0);
        assert_eq!(w.next_mask[map], 1.0);
        // The last step has no next state.
        assert!(w.next_mask[2 * dy..].iter().all(|&m| m == 0.0));
        assert_eq!(w.died, vec![1.0; 3]);
    }
}
