//! The ICU-Sepsis ground truth reproduces the published figures
//! (Choudhary et al. 2024): average return Random 0.78, Expert 0.78,
//! Optimal 0.88; mean episode length 9.45 / 9.22 / 10.99.
//! Needs the files `make fetch` downloads and verifies into .cache/icu-sepsis.
#![cfg(feature = "eval")]

use std::path::Path;

use sepsis_core::env::icu_sepsis::{IcuSepsis, DEFAULT_DIR, N_PATIENT_STATES};
use sepsis_core::eval::exact::{decision_rate, occupancy, table_value, value_iteration};
use sepsis_core::policy::{Baseline, PolicyTable};

fn env() -> IcuSepsis {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DEFAULT_DIR);
    IcuSepsis::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn exact_values_and_episode_lengths_match_the_published_table() {
    let env = env();
    for (baseline, value, length) in [(Baseline::Random, 0.78, 9.45), (Baseline::Clinicians, 0.78, 9.22), (Baseline::Optimal, 0.88, 10.99)] {
        let table = baseline.table(&env);
        let v = table_value(&env.mdp, &table).unwrap();
        assert!((v - value).abs() <= 0.01, "{}: exact value {v:.4}, published {value}", baseline.name());
        let mean_length: f64 = occupancy(&env.mdp, table.rows()).unwrap().iter().sum();
        assert!((mean_length - length).abs() <= 0.05, "{}: mean length {mean_length:.3}, published {length}", baseline.name());
    }
}

#[test]
fn no_treatment_and_out_of_support_rates_match_the_reference_figures() {
    let env = env();
    // clinical-reference.md: no treatment scores 0.782; clinicians pick a
    // non-admissible action in about 12% of decisions. (The unrestricted
    // optimum's rate depends on how ties between equal-valued actions break,
    // so it is reported, not pinned.)
    let none = table_value(&env.mdp, &Baseline::NoTreatment.table(&env)).unwrap();
    assert!((none - 0.782).abs() < 0.001, "no-treatment {none}");
    let table = Baseline::Clinicians.table(&env);
    let visits = occupancy(&env.mdp, table.rows()).unwrap();
    let oos = decision_rate(&visits, table.rows(), |s, a| !env.is_admissible(s, a));
    assert!((oos - 0.12).abs() < 0.02, "clinicians: out-of-support {oos:.3}");
}

/// The smallest count n (up to `max`) for which every probability times n
/// is a whole number: how many logged cases a frequency was taken from.
fn denominator(probabilities: &[f64], max: u32) -> Option<u32> {
    (1..=max).find(|&n| probabilities.iter().all(|p| (p * f64::from(n) - (p * f64::from(n)).round()).abs() < 1e-4))
}

/// `action::ICU_SEPSIS_ADMISSIBLE`, read from the files: the start-state
/// distribution is counts over 20,812 patients, and in every state the
/// admissible actions are those the clinicians' policy (counts over the
/// state's logged decisions) took at least 21 times.
#[test]
fn admissible_means_logged_at_least_21_times_among_20812_patients() {
    use sepsis_core::action::{ICU_SEPSIS_ADMISSIBLE, N_ACTIONS};
    let env = env();
    let (fewest, patients) = ICU_SEPSIS_ADMISSIBLE;
    let starts: Vec<f64> = env.mdp.initial.iter().copied().filter(|&p| p > 0.0).collect();
    assert_eq!(denominator(&starts, 50_000), Some(patients));
    let (mut least_admissible, mut most_inadmissible) = (u32::MAX, 0);
    for state in 0..N_PATIENT_STATES {
        let policy = &env.expert_policy[state];
        let taken: Vec<f64> = policy.iter().copied().filter(|&p| p > 0.0).collect();
        let visits = denominator(&taken, 50_000).unwrap_or_else(|| panic!("state {state}: no count fits {policy:?}"));
        for action in 0..N_ACTIONS {
            let count = (policy[action] * f64::from(visits)).round() as u32;
            if env.is_admissible(state, action) {
                least_admissible = least_admissible.min(count);
            } else {
                most_inadmissible = most_inadmissible.max(count);
            }
        }
    }
    assert_eq!((least_admissible, most_inadmissible), (fewest, fewest - 1));
}

#[test]
fn the_optimum_restricted_to_admissible_actions_loses_almost_nothing() {
    let env = env();
    let restricted = value_iteration(&env.mdp, |s, a| env.is_admissible(s, a));
    let value = table_value(&env.mdp, &PolicyTable::new(restricted.rows).unwrap()).unwrap();
    assert!((value - 0.875).abs() < 0.005, "restricted optimum {value}");
    assert_eq!(restricted.values.len(), N_PATIENT_STATES);
}

#[test]
fn a_sampled_cohort_is_reproducible_valid_csv_with_the_clinicians_survival_rate() {
    use sepsis_core::cohort::csv_format::{read_cohort, write_cohort};
    use sepsis_core::cohort::Outcome;
    use sepsis_core::env::cohort_sampling::{sample_cohort, split};
    let env = env();
    let clinicians = Baseline::Clinicians.table(&env);
    let cohort = sample_cohort(&env, &clinicians, 2000, 11);
    assert_eq!(cohort, sample_cohort(&env, &clinicians, 2000, 11), "same seed, same cohort");
    assert_eq!(cohort.patients[..100], sample_cohort(&env, &clinicians, 100, 11).patients[..], "prefix-stable");
    let survival = cohort.patients.iter().filter(|p| p.outcome == Outcome::Survived).count() as f64 / 2000.0;
    assert!((survival - 0.78).abs() < 0.03, "sampled survival {survival}");
    let mean_steps = cohort.steps() as f64 / 2000.0;
    assert!((mean_steps - 9.24).abs() < 0.5, "mean steps {mean_steps}");
    // Every sampled value passes the reader's own checks.
    let mut csv = Vec::new();
    write_cohort(&cohort, &mut csv).unwrap();
    let (back, report) = read_cohort("sampled.csv", csv.as_slice());
    assert!(report.is_clean(), "{:?}", &report.problems[..report.problems.len().min(3)]);
    assert_eq!(back, cohort);
    let parts = split(&cohort, 11);
    assert_eq!((parts.train.patients.len(), parts.validation.patients.len(), parts.test.patients.len()), (1400, 300, 300));
    let ids = |c: &sepsis_core::cohort::Cohort| c.patients.iter().map(|p| p.id.clone()).collect::<std::collections::HashSet<_>>();
    assert!(ids(&parts.train).is_disjoint(&ids(&parts.test)) && ids(&parts.train).is_disjoint(&ids(&parts.validation)));
}

#[test]
fn more_logged_data_lets_a_state_seeing_learner_get_closer_to_the_optimum() {
    use sepsis_core::eval::ceiling::ceiling;
    let env = env();
    let rows = ceiling(&env, &[2000, 60000], &[50], 2026);
    // Each size also gets the support rule's threshold: 20 (the floor) for
    // 2,000 episodes, ceil(21 * 60,000 / 20,812) = 61 for 60,000.
    let rules: Vec<(usize, u32)> = rows.iter().filter(|r| r.rule).map(|r| (r.episodes, r.min_count)).collect();
    assert_eq!(rules, [(2000, 20), (60000, 61)], "{rows:?}");
    let at_50: Vec<_> = rows.iter().filter(|r| r.min_count == 50).collect();
    let (small, large) = (at_50[0], at_50[1]);
    assert_eq!((small.episodes, large.episodes), (2000, 60000));
    assert!(large.one_step_improvement > small.one_step_improvement + 0.02, "{rows:?}");
    assert!(large.logged_mdp_value_iteration > small.logged_mdp_value_iteration + 0.02, "{rows:?}");
    for r in &rows {
        // No learner beats the optimum; with this much data both beat random (0.780).
        assert!(r.one_step_improvement < 0.8752 && r.logged_mdp_value_iteration < 0.8752, "{r:?}");
    }
    assert!(large.one_step_improvement > 0.80);
}

/// The loop with the true MDP as its simulator (an analysis configuration):
/// each candidate's survival is its exact Q-value under the clinicians'
/// policy, so the clinicians' mix of them is their exact state value.
#[test]
fn the_true_mdp_simulates_for_the_loop() {
    use sepsis_core::action::Action;
    use sepsis_core::agent::decision::{decide, AgentError, Conversation, Proposer, Simulator, TurnProgress};
    use sepsis_core::agent::mdp_simulator::MdpSimulator;
    use sepsis_core::env::clinical::state_features;
    use sepsis_core::eval::exact::state_values;
    use sepsis_core::policy::Baseline;
    use sepsis_core::simulation::CourseStep;

    let env = env();
    let clinicians = Baseline::Clinicians.table(&env);
    let values = state_values(&env.mdp, clinicians.rows()).unwrap();
    let mut simulator = MdpSimulator::new(&env, values.clone());
    let state = 17;
    let course = vec![CourseStep { values: state_features(&env, state), action: Action::NONE }];
    let all: Vec<Action> = Action::all().collect();
    let results = simulator.simulate(&course, &all).unwrap();
    let mixed: f64 = results.iter().map(|r| clinicians.probability(state, r.action.index()) * r.survival).sum();
    assert!((mixed - values[state]).abs() < 1e-9, "{mixed} vs {}", values[state]);
    for r in &results {
        assert_eq!(r.disagreement, 0.0);
        assert!(r.bands.iter().all(|b| b.p10 <= b.p50 && b.p50 <= b.p90), "{:?}", r.bands);
    }
    let made_up = vec![CourseStep { values: vec![Some(1.0); course[0].values.len()], action: Action::NONE }];
    assert!(simulator.simulate(&made_up, &all[..1]).unwrap_err().to_string().contains("not an ICU-Sepsis state"));

    /// Simulates two candidates, then prescribes the one with the higher survival.
    struct BestOfTwo(Option<String>);
    impl Proposer for BestOfTwo {
        fn begin_turn(&mut self, _: &[CourseStep], conversation: &Conversation) -> Result<(), AgentError> {
            self.0 = Some(match conversation.turns.first() {
                None => "<simulate>vaso=0 fluid=0; vaso=0 fluid=3</simulate>".into(),
                Some((_, answer)) => {
                    let survival = |line: &str| line.split("survival ").nth(1).and_then(|s| s.split('%').next()).and_then(|s| s.parse::<f64>().ok()).unwrap();
                    let lines: Vec<&str> = answer.lines().filter(|l| l.starts_with("vaso=")).collect();
                    let best = if survival(lines[0]) >= survival(lines[1]) { "vaso=0 fluid=0" } else { "vaso=0 fluid=3" };
                    format!("<prescribe>{best}</prescribe>")
                }
            });
            Ok(())
        }
        fn advance(&mut self) -> Result<TurnProgress, AgentError> {
            Ok(TurnProgress::Done(self.0.take().unwrap()))
        }
    }
    let trace = decide(&mut BestOfTwo(None), Some(&mut simulator), &course, None, &mut |_| {}).unwrap();
    let best = results.iter().filter(|r| r.action.vaso == 0 && (r.action.fluid == 0 || r.action.fluid == 3)).max_by(|a, b| a.survival.total_cmp(&b.survival)).unwrap();
    assert_eq!(trace.prescription, best.action);
}

/// The in-support optimum is value iteration over exactly the support
/// model's set: it beats every policy in that set, and with no threshold
/// it is the unrestricted optimum.
#[test]
fn the_in_support_optimum_bounds_every_policy_that_keeps_to_the_rule() {
    use sepsis_core::env::clinical::state_features;
    use sepsis_core::eval::ceiling::in_support_optimum;
    use sepsis_core::eval::policies::{load_ai_clinician, AI_CLINICIAN_MODEL};
    let env = env();
    let support = load_ai_clinician(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(AI_CLINICIAN_MODEL)).unwrap();
    let bound = in_support_optimum(&env, &support);
    let optimal = table_value(&env.mdp, &Baseline::Optimal.table(&env)).unwrap();
    assert!(bound < optimal - 0.005, "the rule costs value: {bound:.4} against {optimal:.4}");
    // Policies that keep to the rule: in each state the most logged, and the
    // least logged, supported treatment (anything where none is supported).
    for pick_most in [true, false] {
        let actions: Vec<usize> = (0..N_PATIENT_STATES)
            .map(|s| {
                let practice = support.practice(&state_features(&env, s));
                let mut supported: Vec<_> = practice.supported_actions().map(|a| a.index()).collect();
                supported.sort_by_key(|&a| practice.counts[a]);
                (if pick_most { supported.last() } else { supported.first() }).copied().unwrap_or(0)
            })
            .collect();
        let value = table_value(&env.mdp, &PolicyTable::deterministic(&actions).unwrap()).unwrap();
        assert!(value <= bound + 1e-9, "a policy in the set ({value:.4}) above the bound ({bound:.4})");
    }
    let mut everything = support.clone();
    everything.config.min_action_count = 0;
    assert!((in_support_optimum(&env, &everything) - optimal).abs() < 1e-6);
}
