//! The cohort report: a policy's decisions on every step of a logged cohort
//! set beside what the clinicians did there. Off-policy estimates of its
//! survival (WIS, WPDIS, weighted DR with bootstrap intervals, [`ope`]),
//! safety and guideline rates of both, where they agree and differ, and both
//! action distributions. The worker builds it in the browser and `sepsis
//! report` natively, from this one function.
//!
//! States: the AI Clinician's clusters of the training split (the planner's
//! support), so any cohort can be reported, with or without ICU-Sepsis
//! state ids. The evaluation policy in a cluster is the share of the
//! policy's decisions there that chose each action: a policy that sees the
//! patient's course may decide differently in two steps of one cluster.

use crate::action::{Action, N_ACTIONS};
use crate::baselines::ai_clinician::AiClinician;
use crate::cohort::{Cohort, Outcome, Patient};
use crate::eval::ope::{self, Interval, LoggedEpisode};
pub use crate::report::{Agreement, CohortReport, DecisionStats, SafetyRates};
use crate::guideline::{violations, Rule, Situation};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("no patient with a known outcome to report on ({unknown} still in care)")]
    NoOutcomes { unknown: usize },
    #[error("{found} decisions for the cohort's {steps} steps")]
    Misaligned { steps: usize, found: usize },
}

/// The guideline situation at step `t` of a logged course.
fn situation_at(patient: &Patient, t: usize) -> Situation {
    let previous = t.checked_sub(1).map(|p| patient.steps[p].action.vaso);
    Situation::at(&patient.steps[t].values, previous, t == 0)
}

/// Report `decisions` (one action per step: the first patient's steps in
/// order, then the next patient's, as the cohort lists them) against the
/// clinicians' logged actions.
pub fn cohort_report(policy_name: &str, cohort: &Cohort, decisions: &[Action], support: &AiClinician, seed: u64) -> Result<CohortReport, ReportError> {
    if decisions.len() != cohort.steps() {
        return Err(ReportError::Misaligned { steps: cohort.steps(), found: decisions.len() });
    }
    let mut rest = decisions;
    let per_patient = cohort.patients.iter().map(|p| {
        let (own, later) = rest.split_at(p.steps.len());
        rest = later;
        (p, own)
    });
    let known: Vec<(&Patient, &[Action])> = per_patient.filter(|(p, _)| p.outcome != Outcome::Unknown).collect();
    let unknown = cohort.patients.len() - known.len();
    if known.is_empty() {
        return Err(ReportError::NoOutcomes { unknown });
    }
    let n_states = support.centres.len();
    let mut chosen_in_state = vec![[0.0f64; N_ACTIONS]; n_states];
    let mut episodes = Vec::with_capacity(known.len());
    let mut given_tally = Tally::default();
    let mut chosen_tally = Tally::default();
    let mut agreement = [0usize; 5];
    for &(patient, chosen) in &known {
        let mut steps = Vec::with_capacity(patient.steps.len());
        for (t, (step, &decision)) in patient.steps.iter().zip(chosen).enumerate() {
            let state = support.cluster(&step.values);
            let logged = support.action_counts.get(state).copied().unwrap_or([0; N_ACTIONS]);
            let situation = situation_at(patient, t);
            given_tally.add(&situation, step.action, &logged, support.config.min_action_count);
            chosen_tally.add(&situation, decision, &logged, support.config.min_action_count);
            chosen_in_state[state][decision.index()] += 1.0;
            steps.push((state, step.action.index()));
            let given = step.action;
            for (slot, differs) in [
                decision == given,
                decision.fluid > given.fluid,
                decision.fluid < given.fluid,
                decision.vaso > given.vaso,
                decision.vaso < given.vaso,
            ]
            .into_iter()
            .enumerate()
            {
                agreement[slot] += usize::from(differs);
            }
        }
        episodes.push(LoggedEpisode { steps, survived: patient.outcome == Outcome::Survived });
    }
    let visited = chosen_in_state.iter().filter(|row| row.iter().sum::<f64>() > 0.0).count();
    let pi_e: Vec<[f64; N_ACTIONS]> = chosen_in_state
        .iter()
        .map(|row| {
            let total: f64 = row.iter().sum();
            if total > 0.0 { std::array::from_fn(|a| row[a] / total) } else { [1.0 / N_ACTIONS as f64; N_ACTIONS] }
        })
        .collect();
    let decisions_made = chosen_tally.decisions;
    let share = |n: usize| n as f64 / decisions_made as f64;
    Ok(CohortReport {
        policy: policy_name.to_string(),
        patients: known.len(),
        unknown_outcome: unknown,
        decisions: decisions_made,
        states: visited,
        clinicians_survival: observed_survival(&episodes, seed),
        ope: ope::evaluate(&episodes, n_states, &pi_e, seed),
        clinicians: given_tally.stats(),
        policy_stats: chosen_tally.stats(),
        agreement: Agreement {
            same_action: share(agreement[0]),
            more_fluid: share(agreement[1]),
            less_fluid: share(agreement[2]),
            more_vasopressor: share(agreement[3]),
            less_vasopressor: share(agreement[4]),
        },
    })
}

/// Counts behind [`DecisionStats`].
#[derive(Default)]
struct Tally {
    decisions: usize,
    actions: [u32; N_ACTIONS],
    g1: usize,
    g2: usize,
    any_rule: usize,
    out_of_support: usize,
}

impl Tally {
    fn add(&mut self, situation: &Situation, action: Action, logged: &[u32; N_ACTIONS], min_support: usize) {
        let found = violations(situation, action);
        self.decisions += 1;
        self.actions[action.index()] += 1;
        self.g1 += usize::from(found.contains(&Rule::UnderTreatment));
        self.g2 += usize::from(found.contains(&Rule::VasopressorRaisedAtTarget));
        self.any_rule += usize::from(!found.is_empty());
        self.out_of_support += usize::from((logged[action.index()] as usize) < min_support);
    }

    fn stats(&self) -> DecisionStats {
        let rate = |n: usize| n as f64 / self.decisions.max(1) as f64;
        DecisionStats {
            actions: self.actions.to_vec(),
            safety: SafetyRates {
                g1_rate: rate(self.g1),
                g2_rate: rate(self.g2),
                unsafe_rate: rate(self.g1 + self.g2),
                out_of_support_rate: rate(self.out_of_support),
                guideline_adherence: 1.0 - rate(self.any_rule),
            },
        }
    }
}

/// The share of episodes survived, with a percentile-bootstrap 95% interval
/// (episodes resampled, as for the off-policy estimates).
fn observed_survival(episodes: &[LoggedEpisode], seed: u64) -> Interval {
    use rand::{Rng, SeedableRng};
    let n = episodes.len();
    let share = |indices: &mut dyn Iterator<Item = usize>| indices.filter(|&i| episodes[i].survived).count() as f64 / n as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let samples = (0..ope::BOOTSTRAP_SAMPLES).map(|_| share(&mut (0..n).map(|_| rng.random_range(0..n)))).collect();
    ope::percentile_interval(share(&mut (0..n)), samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::ai_clinician::Config;
    use crate::cohort::schema::{idx, FEATURES};
    use crate::cohort::Step;

    const FLUID: Action = Action { fluid: 1, vaso: 0 };

    /// One step each at MAP 55; half got fluid and survived, half got
    /// nothing and died.
    fn cohort() -> Cohort {
        let patients = (0..200)
            .map(|i| {
                let treated = i % 2 == 0;
                let mut values = vec![Some(1.0); FEATURES.len()];
                values[idx("map")] = Some(55.0);
                let action = if treated { FLUID } else { Action::NONE };
                let outcome = if treated { Outcome::Survived } else { Outcome::Died };
                Patient { id: format!("p{i}"), steps: vec![Step { index: 0, values, action, state: None }], outcome }
            })
            .collect();
        Cohort { patients }
    }

    fn support(cohort: &Cohort) -> AiClinician {
        AiClinician::train(cohort, Config { clusters: 1, ..Config::default() })
    }

    fn given(cohort: &Cohort) -> Vec<Action> {
        cohort.patients.iter().flat_map(|p| p.steps.iter().map(|s| s.action)).collect()
    }

    #[test]
    fn the_clinicians_own_decisions_are_valued_at_their_observed_survival() {
        let cohort = cohort();
        let report = cohort_report("copy", &cohort, &given(&cohort), &support(&cohort), 7).unwrap();
        assert_eq!(report.clinicians_survival.estimate, 0.5);
        assert!(report.clinicians_survival.low < 0.5 && report.clinicians_survival.high > 0.5);
        for estimate in [report.ope.wis, report.ope.wpdis, report.ope.dr] {
            assert!((estimate.estimate - 0.5).abs() < 1e-9, "{estimate:?}");
        }
        assert_eq!(report.agreement.same_action, 1.0);
        assert_eq!(report.clinicians, report.policy_stats);
        // Untreated at MAP 55 is under-treatment (G1), and no first-step fluid.
        assert_eq!(report.clinicians.safety.g1_rate, 0.5);
        assert_eq!(report.clinicians.safety.guideline_adherence, 0.5);
    }

    #[test]
    fn always_giving_fluid_is_valued_as_the_treated_patients_fared() {
        let cohort = cohort();
        let decisions = vec![FLUID; cohort.steps()];
        let report = cohort_report("fluid", &cohort, &decisions, &support(&cohort), 7).unwrap();
        // Softened (1% spread over all actions): the untreated keep a little weight.
        assert!(report.ope.wis.estimate > 0.99, "{:?}", report.ope.wis);
        assert!(report.ope.dr.estimate > 0.99, "{:?}", report.ope.dr);
        assert_eq!(report.policy_stats.safety.unsafe_rate, 0.0);
        assert_eq!(report.policy_stats.actions[FLUID.index()], 200);
        assert_eq!((report.agreement.same_action, report.agreement.more_fluid, report.agreement.less_fluid), (0.5, 0.5, 0.0));
        assert_eq!(report.states, 1);
        // Both actions were logged 100 times: above the support threshold of 20.
        assert_eq!(report.policy_stats.safety.out_of_support_rate, 0.0);
    }

    #[test]
    fn patients_still_in_care_are_set_aside_and_counted() {
        let mut cohort = cohort();
        cohort.patients[0].outcome = Outcome::Unknown;
        let report = cohort_report("copy", &cohort, &given(&cohort), &support(&cohort), 7).unwrap();
        assert_eq!((report.patients, report.unknown_outcome, report.decisions), (199, 1, 199));
        cohort.patients.iter_mut().for_each(|p| p.outcome = Outcome::Unknown);
        assert_eq!(cohort_report("copy", &cohort, &given(&cohort), &support(&cohort), 7), Err(ReportError::NoOutcomes { unknown: 200 }));
    }

    #[test]
    fn decisions_must_cover_every_step() {
        let cohort = cohort();
        let mut decisions = given(&cohort);
        decisions.push(FLUID);
        let error = cohort_report("copy", &cohort, &decisions, &support(&cohort), 7).unwrap_err();
        assert_eq!(error, ReportError::Misaligned { steps: 200, found: 201 });
        assert_eq!(error.to_string(), "201 decisions for the cohort's 200 steps");
    }
}
