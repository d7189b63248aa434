//! A patient's recorded steps as the worker's requests take them.

use sepsis_core::cohort::Patient;
use sepsis_core::simulation::CourseStep;

/// Hours per step of the cohort format.
pub const STEP_HOURS: f64 = 4.0;

/// The course up to and including `step`: what the agent and the world
/// model see when a decision is asked for at that step.
pub fn course_until(patient: &Patient, step: usize) -> Vec<CourseStep> {
    patient.steps.iter().take(step + 1).map(|s| CourseStep { values: s.values.clone(), action: s.action }).collect()
}

/// Hours since admission at the start of a step.
pub fn hour_of(step: usize) -> f64 {
    step as f64 * STEP_HOURS
}

/// The hours the `i`-th step from now spans, e.g. "4–8 h".
pub fn step_span(i: usize) -> String {
    format!("{:.0}–{:.0} h", hour_of(i), hour_of(i + 1))
}

#[cfg(test)]
mod tests {
    use super::step_span;

    #[test]
    fn a_step_spans_four_hours_from_its_start() {
        assert_eq!(step_span(0), "0–4 h");
        assert_eq!(step_span(1), "4–8 h");
    }
}
