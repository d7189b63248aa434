//! Where `wm-mpc` loses value. A planner that looks one step ahead needs
//! two things: how each action moves the patient (dynamics) and how good the
//! state it leads to is (value). Swapping either for ICU-Sepsis's own truth,
//! or for counts from the logged data, and scoring the greedy policy exactly
//! shows which of the world model's two parts limits the planner.
//!
//! Every policy here chooses as `wm-mpc` does: among the actions clinicians
//! gave at least `min_support` times in the state's cluster (the AI
//! Clinician's counts), the one with the best predicted survival; planned
//! from each ICU-Sepsis state's clinical values.
//!
//! - *Dynamics*: ICU-Sepsis's transition probabilities; the transitions
//!   counted from the training split's state ids (what a learner that could
//!   see the states would estimate); or the world model's expected next
//!   values (each member's, `WorldModel::expected_next`) mapped to the
//!   ICU-Sepsis state nearest to them (per-step features in z units).
//! - *Value* of the state reached: the clinicians' exact value, or the world
//!   model's outcome network read after the state with each action weighted
//!   by how often clinicians gave it in the state's cluster (its estimate of
//!   survival under the clinicians from there).

use crate::action::{Action, N_ACTIONS};
use crate::baselines::ai_clinician::AiClinician;
use crate::cohort::Cohort;
use crate::env::clinical::state_features;
use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES, STATE_SURVIVAL};
use crate::eval::ceiling::Counts;
use crate::eval::exact::{state_values, table_value};
use crate::planner::{best, icu_sepsis::policy_table, CandidateScore, MpcConfig};
use crate::policy::{Baseline, PolicyTable};
use crate::world_model::WorldModel;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DiagnosisRow {
    pub dynamics: &'static str,
    pub value: &'static str,
    pub exact_value: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Diagnosis {
    pub rows: Vec<DiagnosisRow>,
    /// Correlation, within each state and over its supported actions, of
    /// the model's expected next values (z units, per-step features) with
    /// ICU-Sepsis's: does the model know how one action differs from another?
    pub action_effect_correlation: f64,
    /// Root-mean-square size of those differences in the model over their
    /// size in ICU-Sepsis (1 = as large).
    pub action_effect_scale: f64,
    /// Correlation across states of the model's value with the clinicians'
    /// exact value.
    pub value_correlation: f64,
    /// Correlation, within states over supported actions, of the outcome
    /// network's survival read right after a candidate with the candidate's
    /// exact value under the clinicians from then on.
    pub outcome_after_candidate_correlation: f64,
}

/// For each (state, action) row, `state * 25 + action`: its next-state
/// distribution over ICU-Sepsis ids (death and survival included).
type Transitions = Vec<Vec<(usize, f64)>>;

pub fn diagnose(env: &IcuSepsis, model: &WorldModel, support: &AiClinician, train: &Cohort, min_support: u32) -> Result<Diagnosis, Error> {
    let n = N_PATIENT_STATES;
    let features: Vec<Vec<Option<f64>>> = (0..n).map(|s| state_features(env, s)).collect();
    let logged: Vec<[u32; N_ACTIONS]> = features.iter().map(|f| support.logged_counts(f)).collect();
    let exact = state_values(&env.mdp, Baseline::Clinicians.table(env).rows())?;
    let outputs = ModelOutputs::of(model, &features, &logged);

    // Next-state distributions over ICU-Sepsis's ids (death and survival included).
    let truth: Transitions =
        (0..n * N_ACTIONS).map(|r| env.mdp.transitions(r / N_ACTIONS, r % N_ACTIONS).iter().map(|t| (t.next, t.probability)).collect()).collect();
    // A pair never logged in that exact state has no transitions: survival 0,
    // so the counted planner avoids it (support is counted per cluster).
    let counts = Counts::of(train);
    let counted: Transitions = (0..n * N_ACTIONS)
        .map(|r| {
            let (s, a) = (r / N_ACTIONS, r % N_ACTIONS);
            let total = counts.total(s, a);
            counts.next_states(s, a).map(|(next, c)| (next, c / total)).collect()
        })
        .collect();
    let states = StateZ::of(model, &features);
    let members = outputs.expected_next.len();
    let modelled: Transitions = (0..n * N_ACTIONS)
        .map(|r| outputs.expected_next.iter().map(|member| (states.nearest(&z_values(model, &member[r])), 1.0 / members as f64)).collect())
        .collect();

    let choose = |transitions: &Transitions, value: &[f64]| -> Result<f64, Error> {
        let actions: Vec<usize> = (0..n)
            .map(|s| {
                let scores: Vec<CandidateScore> = (0..N_ACTIONS)
                    .map(|a| {
                        let q = expected_value(&transitions[s * N_ACTIONS + a], value);
                        let count = logged[s][a];
                        CandidateScore {
                            action: Action::from_index(a).expect("0..25"),
                            survival: q,
                            disagreement: 0.0,
                            violations: 0,
                            logged: count,
                            supported: count >= min_support,
                            score: q,
                        }
                    })
                    .collect();
                best(&scores).action.index()
            })
            .collect();
        Ok(table_value(&env.mdp, &PolicyTable::deterministic(&actions)?)?)
    };
    let (true_dynamics, counted_dynamics, model_dynamics) =
        ("ICU-Sepsis's transitions", "transitions counted in the training split (state ids)", "the world model's GRU: its expected next values (nearest state)");
    let (exact_value, model_value) = ("the clinicians' exact value", "the world model's outcome network");
    let mut rows = Vec::new();
    for (dynamics, transitions) in [(true_dynamics, &truth), (counted_dynamics, &counted), (model_dynamics, &modelled)] {
        for (value, values) in [(exact_value, &exact), (model_value, &outputs.value)] {
            rows.push(DiagnosisRow { dynamics, value, exact_value: choose(transitions, values)? });
        }
    }
    let mpc = policy_table(model, support, env, &MpcConfig { min_support: Some(min_support), ..MpcConfig::default() })?;
    let dynamics = if model.card.memory.is_some() {
        "`wm-mpc` as the scoreboard runs it: the first transition from the world model's memory of logged transitions where it holds the candidate, else the GRU"
    } else {
        "`wm-mpc` as the scoreboard runs it (the GRU)"
    };
    rows.push(DiagnosisRow { dynamics, value: "the outcome network after the state reached, the candidate held 2 steps", exact_value: table_value(&env.mdp, &mpc)? });

    // How the model's action effects compare with ICU-Sepsis's.
    let supported = |s: usize| -> Vec<usize> { (0..N_ACTIONS).filter(|&a| logged[s][a] >= min_support).collect() };
    let mut effects = Correlation::default();
    let mut after_candidate = Correlation::default();
    for s in 0..n {
        let actions = supported(s);
        if actions.len() < 2 {
            continue;
        }
        let true_next: Vec<Vec<f64>> = actions.iter().map(|&a| states.expected_z(&truth[s * N_ACTIONS + a])).collect();
        let model_next: Vec<Vec<f64>> = actions.iter().map(|&a| outputs.expected_next_z(model, s * N_ACTIONS + a)).collect();
        for k in 0..states.dims() {
            effects.add_centred(&true_next.iter().map(|z| z[k]).collect::<Vec<_>>(), &model_next.iter().map(|z| z[k]).collect::<Vec<_>>());
        }
        let q: Vec<f64> = actions.iter().map(|&a| expected_value(&truth[s * N_ACTIONS + a], &exact)).collect();
        let read: Vec<f64> = actions.iter().map(|&a| outputs.survival_after[s * N_ACTIONS + a]).collect();
        after_candidate.add_centred(&q, &read);
    }
    let mut value = Correlation::default();
    value.add_centred(&exact, &outputs.value);
    Ok(Diagnosis {
        rows,
        action_effect_correlation: effects.value(),
        action_effect_scale: effects.scale(),
        value_correlation: value.value(),
        outcome_after_candidate_correlation: after_candidate.value(),
    })
}

/// Per-step features in the model's z units (0 where missing).
fn z_values(model: &WorldModel, values: &[Option<f64>]) -> Vec<f64> {
    model.current_z(values).into_iter().map(|v| v.unwrap_or(0.0)).collect()
}

/// Survival expected over a next-state distribution, given each patient
/// state's value.
fn expected_value(next: &[(usize, f64)], value: &[f64]) -> f64 {
    next.iter().map(|&(state, p)| p * value_of(state, value)).sum()
}

fn value_of(next: usize, value: &[f64]) -> f64 {
    match next {
        s if s < value.len() => value[s],
        STATE_SURVIVAL => 1.0,
        _ => 0.0,
    }
}

/// The ensemble read once on every (state, candidate) as a one-step course.
struct ModelOutputs {
    /// `[member][state * 25 + action]`: expected next clinical values.
    expected_next: Vec<Vec<Vec<Option<f64>>>>,
    /// Mean over members of the survival the outcome network reads after
    /// the candidate.
    survival_after: Vec<f64>,
    /// The outcome network's survival in each state under the clinicians'
    /// logged actions there (each weighted by its share of the state's
    /// cluster's logged decisions; equal weights where none were logged).
    value: Vec<f64>,
}

impl ModelOutputs {
    fn of(model: &WorldModel, features: &[Vec<Option<f64>>], logged: &[[u32; N_ACTIONS]]) -> Self {
        let (layout, normaliser) = (&model.card.layout, &model.card.normaliser);
        let rows = features.len() * N_ACTIONS;
        let mut x = Vec::with_capacity(rows * layout.input_dim());
        for values in features {
            for a in 0..N_ACTIONS {
                layout.encode(normaliser, values, Action::from_index(a).expect("0..25"), &mut x);
            }
        }
        let d = layout.dynamic.len();
        let members = model.members();
        let mut survival_after = vec![0.0; rows];
        let expected_next = (0..members)
            .map(|m| {
                let net = model.fast_member(m);
                let mut state = net.zero_state(rows);
                net.step(&x, &mut state);
                let out = net.heads(&state);
                for (r, logit) in out.outcome_logit.iter().enumerate() {
                    survival_after[r] += crate::planner::survival_of(*logit) / members as f64;
                }
                (0..rows)
                    .map(|r| {
                        let row = r * d..(r + 1) * d;
                        model.expected_next(&features[r / N_ACTIONS], &out.stay_logit[row.clone()], &out.mean[row.clone()], &out.log_sigma[row])
                    })
                    .collect()
            })
            .collect();
        let value = logged
            .iter()
            .enumerate()
            .map(|(s, counts)| {
                let total: u32 = counts.iter().sum();
                let weight = |a: usize| if total == 0 { 1.0 / N_ACTIONS as f64 } else { f64::from(counts[a]) / f64::from(total) };
                (0..N_ACTIONS).map(|a| weight(a) * survival_after[s * N_ACTIONS + a]).sum()
            })
            .collect();
        Self { expected_next, survival_after, value }
    }

    /// The ensemble's mean expected next per-step values in z units.
    fn expected_next_z(&self, model: &WorldModel, row: usize) -> Vec<f64> {
        let members = self.expected_next.len() as f64;
        let mut z = vec![0.0; model.card.layout.dynamic.len()];
        for member in &self.expected_next {
            for (k, value) in z_values(model, &member[row]).into_iter().enumerate() {
                z[k] += value / members;
            }
        }
        z
    }
}

/// ICU-Sepsis's patient states as per-step features in the model's z units.
struct StateZ {
    z: Vec<Vec<f64>>,
}

impl StateZ {
    fn of(model: &WorldModel, features: &[Vec<Option<f64>>]) -> Self {
        Self { z: features.iter().map(|f| z_values(model, f)).collect() }
    }

    fn dims(&self) -> usize {
        self.z[0].len()
    }

    /// The state whose per-step features are nearest `z` (squared distance).
    fn nearest(&self, z: &[f64]) -> usize {
        let distance = |s: &Vec<f64>| s.iter().zip(z).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
        (0..self.z.len()).min_by(|&a, &b| distance(&self.z[a]).total_cmp(&distance(&self.z[b]))).expect("patient states")
    }

    /// Expected per-step z values over a next-state distribution, among
    /// the patient states it reaches.
    fn expected_z(&self, next: &[(usize, f64)]) -> Vec<f64> {
        let alive: f64 = next.iter().filter(|(s, _)| *s < self.z.len()).map(|(_, p)| p).sum();
        let mut z = vec![0.0; self.dims()];
        for &(s, p) in next.iter().filter(|(s, _)| *s < self.z.len()) {
            for (k, v) in self.z[s].iter().enumerate() {
                z[k] += p / alive * v;
            }
        }
        z
    }
}

/// Pearson correlation of paired deviations, accumulated group by group
/// (each group centred on its own means).
#[derive(Default)]
struct Correlation {
    xy: f64,
    xx: f64,
    yy: f64,
}

impl Correlation {
    fn add_centred(&mut self, x: &[f64], y: &[f64]) {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mx, my) = (mean(x), mean(y));
        for (a, b) in x.iter().zip(y) {
            let (dx, dy) = (a - mx, b - my);
            self.xy += dx * dy;
            self.xx += dx * dx;
            self.yy += dy * dy;
        }
    }

    fn value(&self) -> f64 {
        self.xy / (self.xx * self.yy).sqrt()
    }

    /// Spread of y over spread of x.
    fn scale(&self) -> f64 {
        (self.yy / self.xx).sqrt()
    }
}

/// The table of policies, then the measurements of the model's two parts.
pub fn markdown(diagnosis: &Diagnosis) -> String {
    let mut out = String::from("| dynamics (how each action moves the patient) | value of the state reached | exact value |\n|---|---|---|\n");
    for r in &diagnosis.rows {
        out.push_str(&format!("| {} | {} | {:.4} |\n", r.dynamics, r.value, r.exact_value));
    }
    out.push_str(&format!(
        "\n- How actions differ, in the model and in ICU-Sepsis (expected next per-step values, z units, within each state over its supported actions): correlation {:.3}; the model's differences are {:.2} times the size of ICU-Sepsis's.\n\
         - The outcome network's value of a state against the clinicians' exact value, across the 713 states: correlation {:.3}.\n\
         - The outcome network read right after a candidate against the candidate's exact value (within states, supported actions): correlation {:.3}.\n",
        diagnosis.action_effect_correlation, diagnosis.action_effect_scale, diagnosis.value_correlation, diagnosis.outcome_after_candidate_correlation
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_centres_each_group_on_its_own_means() {
        let mut c = Correlation::default();
        // Two groups far apart; within each, y follows x at half the size.
        c.add_centred(&[1.0, 2.0, 3.0], &[10.0, 10.5, 11.0]);
        c.add_centred(&[101.0, 103.0], &[-50.0, -49.0]);
        assert!((c.value() - 1.0).abs() < 1e-12);
        assert!((c.scale() - 0.5).abs() < 1e-12);
        let mut opposite = Correlation::default();
        opposite.add_centred(&[1.0, 2.0], &[2.0, 1.0]);
        assert!((opposite.value() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn expected_values_weigh_the_patient_states_reached() {
        let states = StateZ { z: vec![vec![0.0, 1.0], vec![2.0, 3.0], vec![4.0, 5.0]] };
        // Death (713) is left out: the values are those of the living.
        let next = [(0, 0.25), (2, 0.25), (crate::env::icu_sepsis::STATE_DEATH, 0.5)];
        assert_eq!(states.expected_z(&next), vec![2.0, 3.0]);
        assert_eq!(states.nearest(&[3.9, 5.2]), 2);
        assert_eq!((value_of(1, &[0.2, 0.7]), value_of(STATE_SURVIVAL, &[0.2, 0.7]), value_of(crate::env::icu_sepsis::STATE_DEATH, &[0.2])), (0.7, 1.0, 0.0));
    }

    /// The model's next values are mapped to the nearest ICU-Sepsis state:
    /// that is only sound if every state's own values map back to it.
    #[test]
    fn every_icu_sepsis_state_is_nearest_to_itself() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let env = IcuSepsis::load(&root.join(crate::env::icu_sepsis::DEFAULT_DIR)).expect("make fetch");
        let model = WorldModel::load(&root.join("public/models/world-model")).unwrap();
        let features: Vec<Vec<Option<f64>>> = (0..N_PATIENT_STATES).map(|s| state_features(&env, s)).collect();
        let states = StateZ::of(&model, &features);
        let wrong: Vec<usize> = (0..N_PATIENT_STATES).filter(|&s| states.nearest(&z_values(&model, &features[s])) != s).collect();
        assert!(wrong.is_empty(), "states not nearest to themselves: {wrong:?}");
    }
}
