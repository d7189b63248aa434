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
