//! Stage 2 data: the `wm-mpc` planner drives the real loop with the real
//! world model on decision points of the training cohort, and the decisions
//! whose prescription is safe (no G1 / G2 flag), supported by logged
//! clinician practice and not a fallback become examples.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::agent::decision::Decision;
use crate::agent::observation::{system_prompt, ObservationFormat};
use crate::agent::runtime::{Decoding, PlannerProposer, WorldModelSimulator};
use crate::baselines::ai_clinician::AiClinician;
use crate::cohort::Cohort;
use crate::llm::tokenizer::ChatTokenizer;
use crate::planner::MpcConfig;
use crate::simulation::CourseStep;
use crate::world_model::WorldModel;

use super::example::Example;

/// What the teacher does, for caches of its examples: a change here must
/// not reuse examples of the old teacher (with what the simulator answers,
/// [`WorldModelSimulator::ANSWERS`]).
pub const TEACHER: &str = "wm-mpc (default config): its 3 best supported candidates asked in the grid's order, then its best prescribed";

/// Why teacher decisions were kept or set aside.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TeacherReport {
    pub decisions: usize,
    pub kept: usize,
    pub unsafe_prescription: usize,
    pub unsupported: usize,
    pub fallback: usize,
}

/// `decisions` decision points, each a sampled (patient, step). With
/// `first_step_share`, that share of them are first steps of distinct stays
/// (a course of one step: what the scoreboard asks in every ICU-Sepsis
/// state) and the rest later steps; without it, every step is equally likely
/// (first steps are then about one in eleven).
pub fn decision_points(cohort: &Cohort, decisions: usize, seed: u64, first_step_share: Option<f64>) -> Vec<Vec<CourseStep>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all = |from: usize| -> Vec<(usize, usize)> {
        cohort.patients.iter().enumerate().flat_map(|(p, patient)| (from..patient.steps.len()).map(move |s| (p, s))).collect()
    };
    let mut points = match first_step_share {
        None => {
            let mut points = all(0);
            points.shuffle(&mut rng);
            points.truncate(decisions);
            points
        }
        Some(share) => {
            let firsts = (decisions as f64 * share.clamp(0.0, 1.0)).round() as usize;
            let mut first: Vec<(usize, usize)> = cohort.patients.iter().enumerate().filter(|(_, p)| !p.steps.is_empty()).map(|(p, _)| (p, 0)).collect();
            let mut later = all(1);
            first.shuffle(&mut rng);
            later.shuffle(&mut rng);
            first.truncate(firsts);
            later.truncate(decisions - first.len());
            first.extend(later);
            first
        }
    };
    points.shuffle(&mut rng);
    points
        .into_iter()
        .map(|(p, s)| cohort.patients[p].steps[..=s].iter().map(|step| CourseStep { values: step.values.clone(), action: step.action }).collect())
        .collect()
}

/// The teacher's examples for these decision points, their observations
/// in `format` (what the student will read).
pub fn teacher_examples(
    courses: &[Vec<CourseStep>],
    model: &WorldModel,
    support: &AiClinician,
    tokenizer: &ChatTokenizer,
    format: ObservationFormat,
    mut on_decision: impl FnMut(usize),
) -> Result<(Vec<Example>, TeacherReport), crate::agent::decision::AgentError> {
    let Decoding::Constrained { thought_tokens, .. } = Decoding::DEFAULT else { unreachable!("the default is constrained") };
    let prompt = system_prompt(true, format.practice_threshold(support.min_support()));
    let mut report = TeacherReport::default();
    let mut examples = Vec::new();
    for (i, course) in courses.iter().enumerate() {
        let logged = support.practice(&course.last().expect("non-empty").values);
        let mut proposer = PlannerProposer::new(model, support, MpcConfig::default());
        let mut simulator = WorldModelSimulator { model, samples: 16, seed: i as u32 };
        let mut decision = Decision::new(&mut proposer, Some(&mut simulator), course, format.shown(&logged));
        let trace = decision.run(&mut |_| {})?;
        report.decisions += 1;
        on_decision(i);
        if trace.fallback.is_some() {
            report.fallback += 1;
        } else if trace.flags.iter().any(|r| r.is_safety_check()) {
            report.unsafe_prescription += 1;
        } else if !logged.supported(trace.prescription) {
            report.unsupported += 1;
        } else {
            let example = Example::from_decision(tokenizer, &prompt, decision.conversation(), &trace, thought_tokens)
                .map_err(|e| crate::agent::decision::AgentError(format!("teacher example {i}: {e}")))?;
            examples.push(example);
            report.kept += 1;
        }
    }
    Ok((examples, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::cohort::schema::FEATURES;
    use crate::cohort::{Outcome, Patient, Step};

    fn cohort(patients: usize, steps: u32) -> Cohort {
        let step = |index| Step { index, values: vec![Some(1.0); FEATURES.len()], action: Action::NONE, state: None };
        Cohort { patients: (0..patients).map(|i| Patient { id: format!("p{i}"), steps: (0..steps).map(step).collect(), outcome: Outcome::Survived }).collect() }
    }

    #[test]
    fn a_first_step_share_sets_how_many_courses_are_one_step_long() {
        let cohort = cohort(20, 4);
        let courses = decision_points(&cohort, 10, 3, Some(0.6));
        assert_eq!(courses.len(), 10);
        assert_eq!(courses.iter().filter(|c| c.len() == 1).count(), 6);
        // Seeded: the same points again.
        assert_eq!(courses, decision_points(&cohort, 10, 3, Some(0.6)));
        // Without a share every step is as likely: all 80 points drawn, 20 of them first steps.
        assert_eq!(decision_points(&cohort, 1000, 3, None).iter().filter(|c| c.len() == 1).count(), 20);
    }
}
