//! `wm-mpc`: a model-predictive planner over the learned world model. For a
//! patient's history it simulates every one of the 25 actions, held for a
//! short horizon, in every ensemble member, and picks the action with the
//! best predicted survival after penalties for guideline violations and for
//! ensemble disagreement (a question far from the data is not trusted).
//! It is a scoreboard policy and, later, the agent's teacher.

use serde::{Deserialize, Serialize};

use crate::action::{Action, N_ACTIONS};
use crate::guideline::{violations, Situation};
use crate::world_model::ensemble::History;
use crate::world_model::cpu_inference::FastState;
use crate::world_model::memory::{Next, TransitionMemory};
use crate::world_model::simulate::MemberOutput;
use crate::world_model::WorldModel;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MpcConfig {
    /// Steps each candidate is held for (4 h each).
    pub horizon: usize,
    /// Subtracted per unit of ensemble SD of predicted survival.
    pub disagreement_penalty: f64,
    /// Subtracted per guideline rule the candidate violates now.
    pub guideline_penalty: f64,
    /// A candidate is in support when clinicians gave it at least this often
    /// in logged states like the patient's. Only supported candidates are
    /// chosen: the model's disagreement alone does not flag them
    /// (docs/world-model.md). None: the support model's threshold
    /// (`AiClinician::min_support`, ICU-Sepsis's rate for the cohort it
    /// counted, `action::support_threshold`); set only to study it.
    pub min_support: Option<u32>,
}

impl Default for MpcConfig {
    fn default() -> Self {
        Self { horizon: 2, disagreement_penalty: 1.0, guideline_penalty: 0.05, min_support: None }
    }
}

impl MpcConfig {
    /// A candidate's score: its survival less the penalties for the
    /// ensemble's disagreement and for each guideline rule it breaks.
    pub fn score(&self, survival: f64, disagreement: f64, violations: usize) -> f64 {
        survival - self.disagreement_penalty * disagreement - self.guideline_penalty * violations as f64
    }

    /// The configuration a planner reading `support`'s counts runs: the
    /// threshold set here, else the support model's.
    #[cfg(feature = "eval")]
    pub fn with_support(&self, support: &crate::baselines::ai_clinician::AiClinician) -> Self {
        Self { min_support: Some(self.min_support.unwrap_or_else(|| support.min_support())), ..self.clone() }
    }
}

/// The planner's view of one candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateScore {
    pub action: Action,
    /// Mean over members of the predicted survival after the horizon.
    pub survival: f64,
    /// SD over members of that prediction.
    pub disagreement: f64,
    pub violations: usize,
    /// Logged clinician decisions for this action in similar states.
    pub logged: u32,
    pub supported: bool,
    pub score: f64,
}

/// Score every action for each history (the last entry's action is ignored:
/// it is the decision being made). `logged[h][a]`: how often clinicians gave
/// action `a` in states like history `h`'s.
///
/// Each member reads a history's earlier steps once; the 25 candidates then
/// start from that state (the fast CPU path, `cpu_inference.rs`), each
/// following the member's expected values for `horizon` steps.
pub fn score_all(
    model: &WorldModel,
    histories: &[History],
    situations: &[Situation],
    logged: &[[u32; N_ACTIONS]],
    config: &MpcConfig,
) -> candle_core::Result<Vec<Vec<CandidateScore>>> {
    let members = model.members();
    let rows = histories.len() * N_ACTIONS;
    // Scored without a support model (the simulate tool) every count is 0,
    // so no threshold makes a candidate supported.
    let min_support = config.min_support.unwrap_or(crate::action::MIN_SUPPORT);
    // survival[m][h * 25 + a] after the horizon.
    let mut survival = vec![vec![0.0f64; rows]; members];
    for (m, member_survival) in survival.iter_mut().enumerate() {
        let net = model.fast_member(m);
        let mut state = shared_context(model, m, histories);
        let mut current: Vec<Vec<Option<f64>>> =
            histories.iter().flat_map(|h| std::iter::repeat_n(&h.last().expect("non-empty history").0, N_ACTIONS)).cloned().collect();
        let mut after_candidate = None;
        for step in 0..config.horizon {
            net.step(&candidate_inputs(model, &current), &mut state);
            // Kept only where the memory will branch from it.
            if step == 0 && model.card.memory.is_some() && config.horizon > 1 {
                after_candidate = Some(state.clone());
            }
            let output = net.heads(&state);
            for (r, logit) in output.outcome_logit.iter().enumerate() {
                member_survival[r] = survival_of(*logit);
            }
            if step + 1 < config.horizon {
                follow_expected(model, &mut current, &output);
            }
        }
        if let (Some(memory), Some(state)) = (&model.card.memory, after_candidate) {
            recall_first_transition(model, memory, m, histories, state, config.horizon, member_survival);
        }
    }
    let mut scores = vec![Vec::with_capacity(N_ACTIONS); histories.len()];
    for (h, situation) in situations.iter().enumerate() {
        for a in 0..N_ACTIONS {
            let action = Action::from_index(a).expect("0..25");
            let values: Vec<f64> = survival.iter().map(|member| member[h * N_ACTIONS + a]).collect();
            let mean = values.iter().sum::<f64>() / members as f64;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / members as f64).sqrt();
            let violated = violations(situation, action).len();
            let score = config.score(mean, sd, violated);
            let count = logged[h][a];
            scores[h].push(CandidateScore { action, survival: mean, disagreement: sd, violations: violated, logged: count, supported: count >= min_support, score });
        }
    }
    Ok(scores)
}

/// Probability of surviving the stay from the outcome head's logit of death.
pub(crate) fn survival_of(outcome_logit: f32) -> f64 {
    1.0 - 1.0 / (1.0 + (-f64::from(outcome_logit)).exp())
}

/// Move each row's values to the member's expected next values.
fn follow_expected(model: &WorldModel, current: &mut [Vec<Option<f64>>], output: &MemberOutput) {
    let dynamic = model.card.layout.dynamic.len();
    for (r, values) in current.iter_mut().enumerate() {
        let row = r * dynamic..(r + 1) * dynamic;
        *values = model.expected_next(values, &output.stay_logit[row.clone()], &output.mean[row.clone()], &output.log_sigma[row]);
    }
}

/// Where the world model has a memory of logged transitions (`memory.rs`),
/// a candidate it holds enough of them for takes its first transition from
/// them, as a simulation does: member `m`'s survival after the horizon is
/// its bootstrap average over the logged outcomes, an end of stay counting
/// as it ended and a logged state as the memory values reaching it
/// (`reached_survival`: its planned survival, else the share of logged stays
/// through it that ended alive where it holds enough of them), elsewhere
/// as the survival the member predicts after reading it (and following its
/// expected values for the rest of the horizon, holding the candidate). `after_candidate`: the member's state
/// after each row `h * 25 + a` read its candidate; `survival` is overwritten
/// for the rows the memory holds.
fn recall_first_transition(
    model: &WorldModel,
    memory: &TransitionMemory,
    m: usize,
    histories: &[History],
    after_candidate: FastState,
    horizon: usize,
    survival: &mut [f64],
) {
    let (layout, normaliser) = (&model.card.layout, &model.card.normaliser);
    let members = model.members();
    // (row h * 25 + a, probability) of each logged state reached, and its values.
    let mut branches: Vec<(usize, f64)> = Vec::new();
    let mut reached: Vec<Vec<Option<f64>>> = Vec::new();
    for (h, history) in histories.iter().enumerate() {
        let now = &history.last().expect("non-empty history").0;
        let cluster = memory.cluster_of(layout, normaliser, now);
        for a in 0..N_ACTIONS {
            let Some(row) = memory.row(cluster, a) else { continue };
            let r = h * N_ACTIONS + a;
            survival[r] = 0.0;
            for (entry, &p) in memory.probabilities(members, m, row).iter().enumerate() {
                match memory.next(row, entry) {
                    Next::Survived => survival[r] += p,
                    Next::Died => {}
                    Next::Cluster(k) => match memory.reached_survival(k as usize) {
                        Some(alive) => survival[r] += p * alive,
                        None => {
                            let logged = &memory.representatives[k as usize];
                            let mut values = now.clone();
                            for (d, &f) in layout.dynamic.iter().enumerate() {
                                values[f] = logged.observed[d].then(|| normaliser.value(f, f64::from(logged.z[d])));
                            }
                            branches.push((r, p));
                            reached.push(values);
                        }
                    },
                }
            }
        }
    }
    if branches.is_empty() {
        return;
    }
    let net = model.fast_member(m);
    let rows: Vec<u32> = branches.iter().map(|&(r, _)| r as u32).collect();
    let mut state = FastState::select(&[after_candidate], &rows);
    let mut output = None;
    for _ in 1..horizon {
        if let Some(previous) = &output {
            follow_expected(model, &mut reached, previous);
        }
        let mut x = Vec::with_capacity(reached.len() * layout.input_dim());
        for (values, &(r, _)) in reached.iter().zip(&branches) {
            layout.encode(normaliser, values, Action::from_index(r % N_ACTIONS).expect("0..25"), &mut x);
        }
        net.step(&x, &mut state);
        output = Some(net.heads(&state));
    }
    let output = output.expect("a horizon above 1 reads at least one step");
    for (&(r, p), &logit) in branches.iter().zip(&output.outcome_logit) {
        survival[r] += p * survival_of(logit);
    }
}

/// Member `m`'s state after each history's steps before the decision (the
/// newest `window - 1`), repeated for the 25 candidates: row `h * 25 + a`.
/// Histories are read in groups of equal length, as the GRU has no padding.
fn shared_context(model: &WorldModel, m: usize, histories: &[History]) -> FastState {
    let net = model.fast_member(m);
    let (layout, normaliser) = (&model.card.layout, &model.card.normaliser);
    let dim = layout.input_dim();
    let earlier = |h: &History| (h.len() - 1).min(model.card.config.window - 1);
    let mut lengths: Vec<usize> = histories.iter().map(earlier).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut parts = Vec::with_capacity(lengths.len());
    // Where each history's row lands in the stacked groups.
    let mut position = vec![0u32; histories.len()];
    let mut stacked = 0u32;
    for &steps in &lengths {
        let group: Vec<usize> = (0..histories.len()).filter(|&h| earlier(&histories[h]) == steps).collect();
        let mut state = net.zero_state(group.len());
        for t in 0..steps {
            let mut x = Vec::with_capacity(group.len() * dim);
            for &h in &group {
                let history = &histories[h];
                let (values, action) = &history[history.len() - 1 - steps + t];
                layout.encode(normaliser, values, *action, &mut x);
            }
            net.step(&x, &mut state);
        }
        for &h in &group {
            position[h] = stacked;
            stacked += 1;
        }
        parts.push(state);
    }
    let rows: Vec<u32> = position.iter().flat_map(|&p| std::iter::repeat_n(p, N_ACTIONS)).collect();
    FastState::select(&parts, &rows)
}

/// The decision step's input for every row `h * 25 + a`: the row's values
/// with candidate `a`.
fn candidate_inputs(model: &WorldModel, current: &[Vec<Option<f64>>]) -> Vec<f32> {
    let (layout, normaliser) = (&model.card.layout, &model.card.normaliser);
    let mut x = Vec::with_capacity(current.len() * layout.input_dim());
    for (r, values) in current.iter().enumerate() {
        layout.encode(normaliser, values, Action::from_index(r % N_ACTIONS).expect("0..25"), &mut x);
    }
    x
}

/// The best-scoring supported candidate (ties to the lower index: less
/// treatment first). Where no candidate is supported, the most often logged.
pub fn best(scores: &[CandidateScore]) -> &CandidateScore {
    let supported: Vec<&CandidateScore> = scores.iter().filter(|c| c.supported).collect();
    match supported.first() {
        Some(&first) => supported.into_iter().fold(first, |best, c| if c.score > best.score + 1e-12 { c } else { best }),
        None => scores.iter().fold(&scores[0], |best, c| if c.logged > best.logged { c } else { best }),
    }
}

/// The history the planner reads at each step of a logged course: the steps
/// so far, the newest one's action being the decision to make.
pub fn step_histories(patient: &crate::cohort::Patient) -> Vec<History> {
    (1..=patient.steps.len()).map(|end| patient.steps[..end].iter().map(|s| (s.values.clone(), s.action)).collect()).collect()
}

/// The planner's choice for each history, in batches of `BATCH` (rollouts
/// of a batch advance together). `support` gives what clinicians did in
/// states like each history's newest step.
#[cfg(feature = "eval")]
pub fn choose(
    model: &WorldModel,
    support: &crate::baselines::ai_clinician::AiClinician,
    histories: &[History],
    situations: &[Situation],
    config: &MpcConfig,
) -> candle_core::Result<Vec<Action>> {
    const BATCH: usize = 64;
    let config = &config.with_support(support);
    let logged: Vec<[u32; N_ACTIONS]> = histories.iter().map(|h| support.logged_counts(&h.last().expect("non-empty history").0)).collect();
    let mut actions = Vec::with_capacity(histories.len());
    for ((chunk_h, chunk_s), chunk_l) in histories.chunks(BATCH).zip(situations.chunks(BATCH)).zip(logged.chunks(BATCH)) {
        actions.extend(score_all(model, chunk_h, chunk_s, chunk_l, config)?.iter().map(|scores| best(scores).action));
    }
    Ok(actions)
}

/// The history the planner reads for a course: its steps, the newest one's
/// action being the decision to make.
/// Every action's survival and spread for the newest step of `course` as the
/// agent's simulate tool answers them: the default planner without a support
/// model (support does not enter survival or spread). Stage 3's reward reads
/// the same figures when it ranks as the teacher does.
pub fn tool_scores(model: &WorldModel, course: &[crate::simulation::CourseStep]) -> candle_core::Result<Vec<CandidateScore>> {
    let history = history_of(course);
    Ok(score_all(model, std::slice::from_ref(&history), &[situation_of(&history)], &[[0; N_ACTIONS]], &MpcConfig::default())?.remove(0))
}

pub fn history_of(course: &[crate::simulation::CourseStep]) -> History {
    course.iter().map(|s| (s.values.clone(), s.action)).collect()
}

/// The guideline situation of the newest step of a history.
pub fn situation_of(history: &History) -> Situation {
    let (values, _) = history.last().expect("non-empty history");
    Situation::at(values, history.len().checked_sub(2).map(|i| history[i].1.vaso), history.len() == 1)
}

#[cfg(feature = "eval")]
pub mod icu_sepsis {
    //! The planner as a policy table on ICU-Sepsis: each state planned from
    //! its clinical values as a one-step history.
    use super::*;
    use crate::baselines::ai_clinician::AiClinician;
    use crate::env::clinical::state_features;
    use crate::env::icu_sepsis::{IcuSepsis, N_PATIENT_STATES};
    use crate::policy::PolicyTable;

    /// `support`: the logged clinician decisions (the AI Clinician's clusters
    /// and counts from the training split).
    pub fn policy_table(model: &WorldModel, support: &AiClinician, env: &IcuSepsis, config: &MpcConfig) -> candle_core::Result<PolicyTable> {
        let histories: Vec<History> = (0..N_PATIENT_STATES).map(|s| vec![(state_features(env, s), Action::NONE)]).collect();
        // State-level evaluation has no previous step: rules needing one do not apply.
        let situations: Vec<Situation> = histories.iter().map(|h| Situation { first_step: false, ..situation_of(h) }).collect();
        let actions: Vec<usize> = choose(model, support, &histories, &situations, config)?.iter().map(|a| a.index()).collect();
        PolicyTable::deterministic(&actions).map_err(candle_core::Error::wrap)
    }
}

#[cfg(all(test, feature = "eval"))]
mod tests {
    use super::*;
    use crate::cohort::normaliser::Normaliser;
    use crate::cohort::schema::{idx, FEATURES};
    use crate::cohort::{Cohort, Outcome, Patient, Step};
    use crate::world_model::card::ModelCard;
    use crate::world_model::data::{Layout, Windows};
    use crate::world_model::train::{export, train_member, Checkpoints};
    use crate::world_model::WorldModelConfig;

    /// Two steps. Fluid raises MAP by 10, no fluid lowers it by 10; a patient
    /// who starts below 65 and gets no fluid at the first step dies.
    fn cohort(n: usize) -> Cohort {
        let patients = (0..n)
            .map(|i| {
                let low = i % 2 == 0;
                let fluid = (i / 2) % 2 == 0;
                let start = if low { 55.0 } else { 85.0 };
                let step = |t: u32, map: f64, fluid: bool| {
                    let mut values = vec![Some(1.0); FEATURES.len()];
                    values[idx("map")] = Some(map);
                    Step { index: t, values, action: Action { fluid: u8::from(fluid), vaso: 0 }, state: None }
                };
                let next = start + if fluid { 10.0 } else { -10.0 };
                Patient {
                    id: format!("p{i}"),
                    steps: vec![step(0, start, fluid), step(1, next, (i / 4) % 2 == 0)],
                    outcome: if low && !fluid { Outcome::Died } else { Outcome::Survived },
                }
            })
            .collect();
        Cohort { patients }
    }

    #[test]
    fn the_planner_gives_fluid_where_fluid_saves_patients() {
        let train = cohort(400);
        let normaliser = Normaliser::fit(&train);
        let layout = Layout::default();
        let config = WorldModelConfig { hidden: 32, members: 2, epochs: 20, batch: 64, learning_rate: 3e-3, patience: 20, ..Default::default() };
        let windows = Windows::build(&train, &normaliser, &layout, config.window);
        let validation = Windows::build(&cohort(40), &normaliser, &layout, config.window);
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path()).unwrap();
        let training = (0..config.members)
            .map(|m| train_member(m, &windows, &validation, &config, &checkpoints, |_, _, _, _| {}, |_| {}).unwrap())
            .collect();
        let stem = dir.path().join("world-model");
        export(&ModelCard { config, layout, normaliser, training, memory: None }, &checkpoints, &stem).unwrap();
        let model = WorldModel::load(&stem).unwrap();
        assert_eq!(model.members(), 2);

        let low: History = vec![(cohort(1).patients[0].steps[0].values.clone(), Action::NONE)];
        let situation = situation_of(&low);
        let config = MpcConfig { guideline_penalty: 0.0, ..MpcConfig::default() };
        let mut logged = [0u32; N_ACTIONS];
        logged[Action { fluid: 1, vaso: 0 }.index()] = 100;
        logged[Action::NONE.index()] = 100;
        let scores = score_all(&model, &[low], &[situation], &[logged], &config).unwrap();
        let fluid = scores[0].iter().find(|c| c.action == Action { fluid: 1, vaso: 0 }).unwrap();
        let none = scores[0].iter().find(|c| c.action == Action::NONE).unwrap();
        assert!(fluid.survival > none.survival + 0.5, "fluid {fluid:?} vs none {none:?}");
        assert_eq!(scores[0].len(), N_ACTIONS);
        assert_eq!(none.violations, 2, "G1 and initial resuscitation are counted even without a penalty");
        assert_eq!(best(&scores[0]).action, Action { fluid: 1, vaso: 0 });
        assert!(scores[0].iter().filter(|c| c.supported).count() == 2);
    }

    /// Reference: every candidate's window re-read in full by the candle
    /// model (`WorldModel::predict`), step by step, as the planner once did.
    fn survival_by_rereading(model: &WorldModel, history: &History, action: Action, member: usize, horizon: usize) -> f64 {
        let mut own = history.clone();
        own.last_mut().unwrap().1 = action;
        let mut survival = 0.0;
        for step in 0..horizon {
            let prediction = &model.predict(&model.encode(std::slice::from_ref(&own)).unwrap()).unwrap()[member];
            let logit: Vec<f32> = prediction.outcome_logit.to_vec1().unwrap();
            survival = 1.0 - 1.0 / (1.0 + (-f64::from(logit[0])).exp());
            if step + 1 < horizon {
                let row = |t: &candle_core::Tensor| -> Vec<f32> { t.to_vec2::<f32>().unwrap().remove(0) };
                let next = model.expected_next(&own.last().unwrap().0, &row(&prediction.stay_logit), &row(&prediction.mean), &row(&prediction.log_sigma));
                own.push((next, action));
            }
        }
        survival
    }

    #[test]
    fn reading_the_context_once_scores_as_rereading_every_window() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut model = WorldModel::load(&std::path::Path::new(root).join("public/models/world-model")).unwrap();
        // The GRU's shared context; the memory's first transition has its own test.
        model.card.memory = None;
        let text = std::fs::read_to_string(format!("{root}/public/demo/icu-sepsis-demo.csv")).unwrap();
        let (cohort, _) = crate::cohort::csv_format::read_cohort("demo", text.as_bytes());
        // Decision points with 1 to 9 steps of history, mixed in one batch.
        let long = cohort.patients.iter().find(|p| p.steps.len() >= 9).unwrap();
        let histories: Vec<History> = step_histories(long).into_iter().take(9).chain(step_histories(&cohort.patients[0]).into_iter().take(2)).collect();
        let situations: Vec<Situation> = histories.iter().map(situation_of).collect();
        let logged = vec![[0u32; N_ACTIONS]; histories.len()];
        let config = MpcConfig::default();
        assert!(histories.iter().all(|h| h.len() + config.horizon <= model.card.config.window + 1), "within the window both ways read the same steps");
        let scores = score_all(&model, &histories, &situations, &logged, &config).unwrap();
        for (h, history) in histories.iter().enumerate() {
            for a in [0, 7, 12, 24] {
                let action = Action::from_index(a).unwrap();
                let members: Vec<f64> = (0..model.members()).map(|m| survival_by_rereading(&model, history, action, m, config.horizon)).collect();
                let mean = members.iter().sum::<f64>() / members.len() as f64;
                assert!((scores[h][a].survival - mean).abs() < 1e-5, "history {h} ({} steps), action {a}: {} vs {mean}", history.len(), scores[h][a].survival);
            }
        }
    }

    #[test]
    fn a_remembered_candidate_is_scored_by_its_logged_outcomes() {
        use crate::world_model::memory::{two_state_memory, MemoryRow};
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        // The shipped GRU without its memory, and with a memory of two clusters instead.
        let mut plain = WorldModel::load(&std::path::Path::new(root).join("public/models/world-model")).unwrap();
        plain.card.memory = None;
        let mut model = WorldModel::load(&std::path::Path::new(root).join("public/models/world-model")).unwrap();
        let history: History = crate::simulation::reference_course().into_iter().map(|s| (s.values, s.action)).collect();
        let now = history.last().unwrap().0.clone();
        let mut reached = now.clone();
        reached[idx("map")] = Some(80.0);
        reached[idx("lactate")] = Some(1.2);
        let (none, fluid1, fluid4) = (Action::NONE, Action { fluid: 1, vaso: 0 }, Action { fluid: 4, vaso: 0 });
        let rows = vec![
            MemoryRow { cluster: 0, action: none.index() as u8, next: vec![(2, 40)] },
            MemoryRow { cluster: 0, action: fluid1.index() as u8, next: vec![(2, 10), (3, 30)] },
            MemoryRow { cluster: 0, action: fluid4.index() as u8, next: vec![(1, 25)] },
        ];
        model.card.memory = Some(two_state_memory(&model.card, &now, &reached, rows.clone()));
        let config = MpcConfig::default();
        let score = |model: &WorldModel| score_all(model, std::slice::from_ref(&history), &[situation_of(&history)], &[[50; N_ACTIONS]], &config).unwrap().remove(0);
        let (remembered, simulated) = (score(&model), score(&plain));
        assert_eq!(remembered[none.index()].survival, 0.0, "every logged stay ended in death");
        let f1 = &remembered[fluid1.index()];
        assert!((0.6..0.9).contains(&f1.survival) && f1.disagreement > 0.0, "30 of 40 survived, bootstrapped per member: {f1:?}");
        // Fluid 4 reaches the logged state: the members' survival after reading it.
        let mut own = history.clone();
        own.last_mut().unwrap().1 = fluid4;
        own.push((reached.clone(), fluid4));
        let members: Vec<f64> = (0..model.members()).map(|m| survival_by_rereading(&plain, &own, fluid4, m, 1)).collect();
        let expected = members.iter().sum::<f64>() / members.len() as f64;
        assert!((remembered[fluid4.index()].survival - expected).abs() < 1e-5, "{} vs {expected}", remembered[fluid4.index()].survival);
        // Candidates without logged transitions are scored by the GRU alone.
        for a in (0..N_ACTIONS).filter(|&a| ![none, fluid1, fluid4].contains(&Action::from_index(a).unwrap())) {
            assert_eq!(remembered[a], simulated[a]);
        }
        // Where the memory knows how the stays through the reached state
        // ended (27 of 30 logged steps alive), that share values it, the
        // same for every member.
        model.card.memory = Some(two_state_memory(&model.card, &now, &reached, rows.clone()).with_outcomes(vec![(0, 10), (27, 30)]));
        let valued = score(&model);
        assert!((valued[fluid4.index()].survival - 0.9).abs() < 1e-12 && valued[fluid4.index()].disagreement < 1e-12, "{:?}", valued[fluid4.index()]);
        assert_eq!((&valued[none.index()], &valued[fluid1.index()]), (&remembered[none.index()], &remembered[fluid1.index()]), "ends of stay count as they ended");
        // Where the memory has planned onward from the reached state, its
        // planned survival values it instead of the logged share.
        let mut planned = two_state_memory(&model.card, &now, &reached, rows).with_outcomes(vec![(0, 10), (27, 30)]);
        planned.planned = vec![None, Some(0.95)];
        model.card.memory = Some(planned);
        let onward = score(&model);
        assert!((onward[fluid4.index()].survival - 0.95).abs() < 1e-12, "{:?}", onward[fluid4.index()]);
        assert_eq!(&onward[fluid1.index()], &remembered[fluid1.index()]);
    }

    /// The planner takes the support model's threshold unless one is set
    /// (the sensitivity grid's).
    #[test]
    fn the_support_threshold_comes_from_the_support_model_unless_set() {
        use crate::baselines::ai_clinician::{AiClinician, Config};
        let support = AiClinician::train(&cohort(60), Config { clusters: 2, min_action_count: 106, ..Config::default() });
        assert_eq!(MpcConfig::default().with_support(&support).min_support, Some(106));
        assert_eq!(MpcConfig { min_support: Some(50), ..MpcConfig::default() }.with_support(&support).min_support, Some(50));
    }

    fn candidate(a: usize, score: f64, logged: u32) -> CandidateScore {
        CandidateScore { action: Action::from_index(a).unwrap(), survival: score, disagreement: 0.0, violations: 0, logged, supported: logged >= 20, score }
    }

    #[test]
    fn only_supported_candidates_are_chosen() {
        let scores = vec![candidate(0, 0.5, 30), candidate(1, 0.9, 3), candidate(2, 0.6, 25)];
        assert_eq!(best(&scores).action.index(), 2, "the better unsupported action is passed over");
        let none = vec![candidate(0, 0.5, 3), candidate(1, 0.9, 1), candidate(2, 0.6, 7)];
        assert_eq!(best(&none).action.index(), 2, "no support anywhere: the most often logged");
    }

    #[test]
    fn situations_know_the_previous_vasopressor_and_first_step() {
        let values = vec![Some(70.0); FEATURES.len()];
        let history: History = vec![(values.clone(), Action { fluid: 0, vaso: 2 }), (values, Action::NONE)];
        let s = situation_of(&history);
        assert_eq!((s.previous_vaso, s.first_step, s.map), (Some(2), false, Some(70.0)));
        assert!(situation_of(&history[..1].to_vec()).first_step);
    }
}
