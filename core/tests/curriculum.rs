//! The curriculum's parts on the real model files (needs `make fetch`): the
//! teacher's examples are tokenized as the agent reads and writes, and LoRA
//! training lowers the loss, checkpoints, and resumes.

use std::path::Path;

use sepsis_core::cohort::csv_format::read_cohort;
use sepsis_core::curriculum::example::Example;
use sepsis_core::curriculum::lora_training::{example_loss, mean_loss, train_lora, Checkpoint, LoraTrainingConfig, SharedPrefix};
use sepsis_core::curriculum::teacher::{decision_points, teacher_examples};
use sepsis_core::eval::policies::{load_ai_clinician, AI_CLINICIAN_MODEL};
use sepsis_core::llm::generate::Llm;
use sepsis_core::world_model::WorldModel;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn llm() -> Llm {
    let file = std::fs::File::open(format!("{ROOT}/.cache/models/SmolLM2-135M-Instruct.Q8_0.gguf")).expect("the Q8_0 model (make fetch)");
    Llm::from_gguf(&mut std::io::BufReader::new(file)).unwrap()
}

fn teacher(llm: &Llm, decisions: usize) -> Vec<Example> {
    let path = format!("{ROOT}/public/demo/icu-sepsis-demo.csv");
    let (cohort, _) = read_cohort("demo", std::fs::File::open(&path).unwrap());
    let model = WorldModel::load(Path::new(&format!("{ROOT}/public/models/world-model"))).unwrap();
    let support = load_ai_clinician(Path::new(&format!("{ROOT}/{AI_CLINICIAN_MODEL}"))).unwrap();
    let courses = decision_points(&cohort, decisions, 7, None);
    let (examples, report) = teacher_examples(&courses, &model, &support, &llm.tokenizer, |_| {}).unwrap();
    assert_eq!(report.decisions, decisions);
    assert_eq!(report.kept + report.unsafe_prescription + report.unsupported + report.fallback, decisions);
    examples
}

#[test]
fn teacher_examples_are_the_conversation_the_agent_reads_with_its_turns_as_targets() {
    let llm = llm();
    let examples = teacher(&llm, 6);
    assert!(!examples.is_empty(), "some teacher decisions are kept");
    for example in &examples {
        let text = llm.tokenizer.decode(&example.tokens);
        assert!(text.starts_with("<|im_start|>system\n") && text.contains("<|im_start|>user\n"), "{text}");
        let written: Vec<u32> = example.tokens.iter().zip(&example.target).filter(|(_, t)| **t).map(|(t, _)| *t).collect();
        let written = llm.tokenizer.decode(&written);
        // Two turns: a rationale and a simulate, then a rationale and a prescription.
        assert!(written.contains("<simulate>vaso=") && written.ends_with("</prescribe>"), "{written}");
        assert!(!written.contains("<result>") && !written.contains("<|im_start|>"), "answers are read, not written: {written}");
    }
}

#[test]
fn lora_training_lowers_the_loss_checkpoints_and_resumes() {
    let llm = llm();
    let examples = teacher(&llm, 2);
    let train = &examples[..1];
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::new(dir.path()).unwrap();
    let config = LoraTrainingConfig { rank: 4, alpha: 8.0, learning_rate: 2e-3, weight_decay: 0.0, epochs: 2, batch: 1, checkpoint_every: 1, seed: 1 };
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
    // A new run may start from a trained adapter (a warm start): with no steps to take, it is returned as given.
    let fresh = tempfile::tempdir().unwrap();
    let warm = train_lora(&llm.model, Some(&adapter), train, train, &LoraTrainingConfig { epochs: 0, ..config }, &Checkpoint::new(fresh.path()).unwrap(), |_, _, _| {}, |_| {}).unwrap();
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
