//! The curriculum's parts on the real model files (needs `make fetch`): the
//! teacher's examples are tokenized as the agent reads and writes, and LoRA
//! training lowers the loss, checkpoints, and resumes; stage 3 (GRPO in the
//! world model) rewards prescriptions, updates the adapter, and resumes.

use std::path::Path;

use sepsis_core::agent::observation::ObservationFormat;
use sepsis_core::cohort::csv_format::read_cohort;
use sepsis_core::action::{Action, N_ACTIONS};
use sepsis_core::curriculum::example::Example;
use sepsis_core::curriculum::grpo::{train_grpo, GrpoConfig, GrpoState, RewardedState};
use sepsis_core::curriculum::reward::{RewardConfig, TERMINAL};
use sepsis_core::curriculum::lora_training::{example_loss, mean_loss, train_lora, Checkpoint, LoraTrainingConfig, SharedPrefix};
use sepsis_core::curriculum::teacher::{decision_points, teacher_examples};
use sepsis_core::eval::policies::{load_ai_clinician, AI_CLINICIAN_MODEL};
use sepsis_core::llm::generate::Llm;
use sepsis_core::planner::MpcConfig;
use sepsis_core::world_model::WorldModel;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn llm() -> Llm {
    let file = std::fs::File::open(format!("{ROOT}/.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf")).expect("the Q8_0 model (make fetch)");
    Llm::from_gguf(&mut std::io::BufReader::new(file)).unwrap()
}

fn teacher(llm: &Llm, decisions: usize, format: ObservationFormat) -> Vec<Example> {
    let path = format!("{ROOT}/public/demo/icu-sepsis-demo.csv");
    let (cohort, _) = read_cohort("demo", std::fs::File::open(&path).unwrap());
    let model = WorldModel::load(Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let support = load_ai_clinician(Path::new(&format!("{ROOT}/{AI_CLINICIAN_MODEL}"))).unwrap();
    let courses = decision_points(&cohort, decisions, 7, None);
    let (examples, report) = teacher_examples(&courses, &model, &support, &llm.tokenizer, format, |_| {}).unwrap();
    assert_eq!(report.decisions, decisions);
    assert_eq!(report.kept + report.unsafe_prescription + report.unsupported + report.fallback, decisions);
    examples
}

#[test]
fn teacher_examples_are_the_conversation_the_agent_reads_with_its_turns_as_targets() {
    let llm = llm();
    let examples = teacher(&llm, 6, ObservationFormat::CourseAndLoggedPractice);
    assert!(!examples.is_empty(), "some teacher decisions are kept");
    for example in &examples {
        let text = llm.tokenizer.decode(&example.tokens);
        assert!(text.starts_with("<|im_start|>system\n") && text.contains("<|im_start|>user\n"), "{text}");
        let written: Vec<u32> = example.tokens.iter().zip(&example.target).filter(|(_, t)| **t).map(|(t, _)| *t).collect();
        let written = llm.tokenizer.decode(&written);
        // Two turns: a rationale and a simulate, then a rationale and a prescription.
        assert!(written.contains("<simulate>vaso=") && written.ends_with("</prescribe>"), "{written}");
        assert!(!written.contains("<result>") && !written.contains("<|im_start|>"), "answers are read, not written: {written}");
        // Every candidate the teacher asks for is one the student was shown as logged practice.
        let practice = text.lines().find(|l| l.starts_with("Clinicians gave: ")).unwrap_or_else(|| panic!("the user turn shows the practice: {text}"));
        let asked = written.split("<simulate>").nth(1).and_then(|rest| rest.split("</simulate>").next()).expect("a simulate call");
        for candidate in asked.split(';').map(str::trim) {
            assert!(practice.contains(&format!("{candidate} x")), "{candidate} is in {practice}");
        }
    }
    // The course alone: no practice line.
    let plain = teacher(&llm, 2, ObservationFormat::Course);
    assert!(plain.iter().all(|e| !llm.tokenizer.decode(&e.tokens).contains("Clinicians gave")));
}

#[test]
fn lora_training_lowers_the_loss_checkpoints_and_resumes() {
    let llm = llm();
    let examples = teacher(&llm, 2, ObservationFormat::Course);
    let train = &examples[..1];
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::new(dir.path()).unwrap();
    let config = LoraTrainingConfig { rank: 4, alpha: 8.0, learning_rate: 2e-3, weight_decay: 0.0, epochs: 2, batch: 1, checkpoint_every: 1, seed: 1, observation: ObservationFormat::Course };
    let training_copy = llm.model.for_training().unwrap();
    let before = mean_loss(&training_copy, train).unwrap();
    // Reading the shared system prompt once changes no loss.
    let shared = SharedPrefix::common_len(&examples);
    assert!(shared > 100, "the system turn is shared: {shared} tokens");
    let prefix = SharedPrefix::read(&training_copy, &examples[0], shared).unwrap();
    for example in &examples {
        let whole = example_loss(&training_copy, example, &SharedPrefix::none()).unwrap().to_scalar::<f32>().unwrap();
        let after_prefix = example_loss(&training_copy, example, &prefix).unwrap().to_scalar::<f32>().unwrap();
        assert!((whole - after_prefix).abs() < 1e-3, "{whole} vs {after_prefix}");
    }
    let mut losses = Vec::new();
    let adapter = train_lora(&llm.model, None, train, train, &config, &checkpoint, |_, _, loss| losses.push(loss), |_| {}).unwrap();
    assert_eq!(losses.len(), 2);
    assert_eq!(checkpoint.state().step, 2);
    let mut tuned = llm.model.for_training().unwrap();
    tuned.set_adapter(&adapter).unwrap();
    let after = mean_loss(&tuned, train).unwrap();
    assert!(after < before, "training lowers the loss on what it saw: {before} -> {after}");
    // One more epoch with the same folder continues from step 2.
    let mut resumed = Vec::new();
    train_lora(&llm.model, None, train, train, &LoraTrainingConfig { epochs: 3, ..config }, &checkpoint, |step, _, _| resumed.push(step), |_| {}).unwrap();
    assert_eq!(resumed, vec![3]);
    assert_eq!(checkpoint.state().log.iter().map(|l| l.step).collect::<Vec<_>>(), vec![1, 2, 3]);
    // Another run (another seed, or other examples) does not resume this folder.
    let other = train_lora(&llm.model, None, train, train, &LoraTrainingConfig { seed: 2, epochs: 4, ..config }, &checkpoint, |_, _, _| {}, |_| {}).unwrap_err().to_string();
    assert!(other.contains("holds another run") && other.contains("seed 1") && other.contains("seed 2"), "{other}");
    let other = train_lora(&llm.model, None, &train[..0], train, &LoraTrainingConfig { epochs: 4, ..config }, &checkpoint, |_, _, _| {}, |_| {}).unwrap_err().to_string();
    assert!(other.contains("holds another run"), "{other}");
    assert_eq!(checkpoint.state().step, 3, "and leaves it as it was");
    // A new run may start from a trained adapter (a warm start): with no steps to take, it is returned as given.
    let fresh = tempfile::tempdir().unwrap();
    let practice = LoraTrainingConfig { epochs: 0, observation: ObservationFormat::CourseAndLoggedPractice, ..config };
    let warm = train_lora(&llm.model, Some(&adapter), train, train, &practice, &Checkpoint::new(fresh.path()).unwrap(), |_, _, _| {}, |_| {}).unwrap();
    assert_eq!(warm.observation, ObservationFormat::CourseAndLoggedPractice, "the adapter records what its examples show");
    let mut started = llm.model.for_training().unwrap();
    started.set_adapter(&warm).unwrap();
    assert_eq!(mean_loss(&started, train).unwrap(), after);
    // The quantized model runs the trained adapter.
    let mut quantized = llm.model.clone();
    quantized.set_adapter(&adapter).unwrap();
    assert!(example_loss(&quantized, &train[0], &SharedPrefix::none()).unwrap().to_scalar::<f32>().unwrap().is_finite());
}

#[test]
fn a_dynamics_example_trains_only_the_next_line_and_the_base_model_is_scored_on_what_it_writes() {
    use sepsis_core::curriculum::dynamics::{dynamics_points, evaluate, example, parse_answer};
    let llm = llm();
    let path = format!("{ROOT}/public/demo/icu-sepsis-demo.csv");
    let (cohort, _) = read_cohort("demo", std::fs::File::open(&path).unwrap());
    let points = dynamics_points(&cohort, 3, 5);
    assert_eq!(points.len(), 3);
    for point in &points {
        let e = example(&llm.tokenizer, point);
        let written: Vec<u32> = e.tokens.iter().zip(&e.target).filter(|(_, t)| **t).map(|(t, _)| *t).collect();
        let line = llm.tokenizer.decode(&written);
        assert!(line.starts_with("+4h ") && line.ends_with('\n'), "{line:?}");
        assert!(parse_answer(&line).is_some(), "{line:?}");
        let read = llm.tokenizer.decode(&e.tokens[..e.tokens.len() - written.len()]);
        assert!(read.contains("Predict +4h.") && read.ends_with("<|im_start|>assistant\n"), "{read:?}");
    }
    // The evaluation runs the real model on the points; whatever the base
    // model writes, errors are only taken where a line parsed.
    let model = WorldModel::load(Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let report = evaluate(&std::sync::Arc::new(llm), &model, &points[..1], |_| {}).unwrap();
    assert_eq!(report.points, 1);
    for column in &report.columns {
        if report.parsed == 0 {
            assert_eq!(column.compared, 0, "{column:?}");
        }
        if column.compared > 0 {
            assert!(column.world_model_mae.is_finite() && column.persistence_mae.is_finite());
        }
    }
}

fn demo_courses(n: usize, seed: u64) -> Vec<Vec<sepsis_core::simulation::CourseStep>> {
    let path = format!("{ROOT}/public/demo/icu-sepsis-demo.csv");
    let (cohort, _) = read_cohort("demo", std::fs::File::open(&path).unwrap());
    decision_points(&cohort, n, seed, Some(1.0))
}

#[test]
fn the_stage3_reward_is_the_world_models_survival_with_shaping_and_penalties() {
    let model = WorldModel::load(Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let support = load_ai_clinician(Path::new(&format!("{ROOT}/{AI_CLINICIAN_MODEL}"))).unwrap();
    let config = RewardConfig { horizon: 2, samples: 4, guideline_penalty: 1.0, support_penalty: 3.0, as_the_teacher_ranks: false };
    for course in demo_courses(3, 5) {
        let state = RewardedState::new(&model, &support, course.clone(), &config, 1).unwrap();
        assert_eq!(state.rewards.len(), N_ACTIONS);
        let logged = support.logged_counts(&course[0].values);
        for (a, r) in state.rewards.iter().enumerate() {
            assert_eq!(r.action, Action::from_index(a).unwrap());
            assert!((0.0..=1.0).contains(&r.survival));
            assert_eq!(r.supported, logged[a] >= support.min_support());
            let penalties = r.violations as f64 + if r.supported { 0.0 } else { 3.0 };
            assert!((r.total - (TERMINAL * (2.0 * r.survival - 1.0) + r.shaping - penalties)).abs() < 1e-9, "{r:?}");
        }
        // The actions differ in what the model predicts for them.
        assert!(state.rewards.iter().any(|r| (r.survival - state.rewards[0].survival).abs() > 1e-6));
    }
}

#[test]
fn as_the_teacher_ranks_the_stage3_reward_reads_the_simulate_tools_survival_less_its_spread() {
    use sepsis_core::agent::decision::Simulator;
    let model = WorldModel::load(Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let support = load_ai_clinician(Path::new(&format!("{ROOT}/{AI_CLINICIAN_MODEL}"))).unwrap();
    let sampled = RewardConfig { horizon: 2, samples: 4, guideline_penalty: 1.0, support_penalty: 3.0, as_the_teacher_ranks: false };
    let ranked = RewardConfig { as_the_teacher_ranks: true, ..sampled.clone() };
    let all: Vec<Action> = Action::all().collect();
    for course in demo_courses(3, 5) {
        let state = RewardedState::new(&model, &support, course.clone(), &ranked, 1).unwrap();
        let before = RewardedState::new(&model, &support, course.clone(), &sampled, 1).unwrap();
        let answers = sepsis_core::agent::runtime::WorldModelSimulator { model: &model, samples: 16, seed: 1 }.simulate(&course, &all).unwrap();
        let spread = MpcConfig::default().disagreement_penalty;
        for ((r, old), answer) in state.rewards.iter().zip(&before.rewards).zip(&answers) {
            assert_eq!(r.action, answer.action);
            assert!((r.survival - (answer.survival - spread * answer.disagreement)).abs() < 1e-9, "{r:?} {answer:?}");
            // Only the terminal term changes: shaping and penalties are the sampled simulation's and the rules'.
            assert_eq!((r.shaping, r.violations, r.supported), (old.shaping, old.violations, old.supported));
            let penalties = r.violations as f64 + if r.supported { 0.0 } else { 3.0 };
            assert!((r.total - (TERMINAL * (2.0 * r.survival - 1.0) + r.shaping - penalties)).abs() < 1e-9, "{r:?}");
        }
        assert!(state.rewards.iter().zip(&before.rewards).any(|(r, old)| (r.survival - old.survival).abs() > 1e-6), "the two terminal terms differ");
    }
}

#[test]
fn grpo_updates_the_adapter_from_groups_with_signal_logs_and_resumes() {
    let llm = llm();
    let model = WorldModel::load(Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let shipped = sepsis_core::llm::model::LoraAdapter::from_safetensors(&std::fs::read(format!("{ROOT}/public/models/agent-bc.safetensors")).unwrap()).unwrap();
    // The policy reads (and its checkpoints keep) the stage-2 adapter's observation format.
    let init = sepsis_core::llm::model::LoraAdapter { observation: ObservationFormat::CourseAndLoggedPractice, ..shipped };
    let reward = RewardConfig { horizon: 1, samples: 4, guideline_penalty: 1.0, support_penalty: 3.0, as_the_teacher_ranks: false };
    // Every action its own reward, so any two different prescriptions in a
    // group carry signal; a hot temperature makes them differ.
    let states: Vec<RewardedState> = demo_courses(2, 3)
        .into_iter()
        .map(|course| {
            let support = load_ai_clinician(Path::new(&format!("{ROOT}/{AI_CLINICIAN_MODEL}"))).unwrap();
            let mut state = RewardedState::new(&model, &support, course, &reward, 0).unwrap();
            for (a, r) in state.rewards.iter_mut().enumerate() {
                r.total = a as f64;
            }
            state
        })
        .collect();
    let (train, validation) = states.split_at(1);
    let config = GrpoConfig { steps: 1, states_per_step: 1, group: 4, temperature: 1.5, kl_weight: 0.05, learning_rate: 1e-3, checkpoint_every: 1, seed: 3, reward };
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::new(dir.path()).unwrap();
    let mut steps = Vec::new();
    let trained = train_grpo(&llm, &init, train, validation, &model, &config, &checkpoint, |log| steps.push(log.clone()), |_| {}).unwrap();
    assert_eq!(steps.len(), 1);
    assert!(steps[0].skipped == 0 && steps[0].groups_with_signal == 1 && steps[0].distinct_prescriptions > 1.0, "{:?}", steps[0]);
    let state: GrpoState = serde_json::from_str(&std::fs::read_to_string(dir.path().join("grpo-state.json")).unwrap()).unwrap();
    assert_eq!(state.validations.iter().map(|v| v.step).collect::<Vec<_>>(), vec![0, 1], "validated before and after");
    let last = sepsis_core::llm::model::LoraAdapter::from_safetensors(&std::fs::read(checkpoint.adapter()).unwrap()).unwrap();
    let moved = init.tensors.iter().any(|(name, t)| (t - &last.tensors[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    assert!(moved, "a group with signal changes the adapter");
    assert_eq!((last.observation, trained.observation), (init.observation, init.observation));
    assert!(trained.tensors.len() == init.tensors.len() && init.tensors.keys().all(|name| trained.tensors.contains_key(name)));
    // A second step with the same folder continues at step 2 and moves away from the start (KL > 0).
    let mut resumed = Vec::new();
    train_grpo(&llm, &init, train, validation, &model, &GrpoConfig { steps: 2, ..config }, &checkpoint, |log| resumed.push(log.clone()), |_| {}).unwrap();
    assert_eq!(resumed.iter().map(|l| l.step).collect::<Vec<_>>(), vec![2]);
    assert!(resumed[0].kl > 0.0 || resumed[0].groups_with_signal == 0, "{:?}", resumed[0]);
}
