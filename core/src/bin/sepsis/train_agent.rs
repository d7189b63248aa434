//! `sepsis train agent --stage bc`: behaviour cloning of the `wm-mpc`
//! teacher's propose-simulate-refine decisions into LoRA adapters on the
//! agent's LLM (curriculum stage 2). The teacher's examples are generated
//! once and kept beside the checkpoints; training resumes from its
//! checkpoint folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sepsis_core::cohort::csv_format::read_cohort;
use sepsis_core::curriculum::example::Example;
use sepsis_core::curriculum::lora_training::{train_lora, Checkpoint, LoraTrainingConfig};
use sepsis_core::curriculum::teacher::{decision_points, teacher_examples, TeacherReport};
use sepsis_core::eval::policies::{load_ai_clinician, AI_CLINICIAN_MODEL, LLM_MODEL, WORLD_MODEL};
use sepsis_core::llm::generate::Llm;
use sepsis_core::llm::model::LoraAdapter;
use sepsis_core::world_model::WorldModel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    /// Stage 2: behaviour cloning of the wm-mpc teacher's decisions.
    Bc,
}

#[derive(Args)]
pub struct TrainAgentArgs {
    #[arg(long, value_enum)]
    stage: Stage,
    /// Stage configuration (JSON).
    #[arg(long, default_value = "configs/agent-bc.json")]
    config: PathBuf,
    #[arg(long, default_value = ".cache/data/icu-sepsis.train.csv")]
    train: PathBuf,
    #[arg(long, default_value = ".cache/data/icu-sepsis.validation.csv")]
    validation: PathBuf,
    /// Checkpoints and the teacher's examples; a run with the same folder continues.
    #[arg(long, default_value = ".cache/checkpoints/agent-bc")]
    checkpoints: PathBuf,
    /// Where the trained adapter goes.
    #[arg(long, default_value = "public/models/agent-bc.safetensors")]
    out: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct BcConfig {
    /// Teacher decisions sampled from the training split (before filtering).
    teacher_decisions: usize,
    /// From the validation split.
    validation_decisions: usize,
    /// Share of decision points (training and validation) that are the
    /// first step of a stay; absent: every step equally likely.
    #[serde(default)]
    first_step_share: Option<f64>,
    /// Start from this adapter (a previous run's) instead of fresh adapters.
    #[serde(default)]
    init: Option<PathBuf>,
    #[serde(flatten)]
    training: LoraTrainingConfig,
}

pub fn run(args: TrainAgentArgs) -> Result<()> {
    match args.stage {
        Stage::Bc => behaviour_cloning(&args),
    }
}

fn behaviour_cloning(args: &TrainAgentArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let config: BcConfig = serde_json::from_str(&text).with_context(|| format!("{} is not a behaviour-cloning configuration", args.config.display()))?;
    let file = std::fs::File::open(LLM_MODEL).with_context(|| format!("opening {LLM_MODEL} (run `make fetch`)"))?;
    let llm = Llm::from_gguf(&mut std::io::BufReader::new(file))?;
    std::fs::create_dir_all(&args.checkpoints)?;
    let share = config.first_step_share;
    let train = examples(args, &llm, &args.train, "train", config.teacher_decisions, config.training.seed, share)?;
    let validation = examples(args, &llm, &args.validation, "validation", config.validation_decisions, config.training.seed ^ 1, share)?;
    let init = match &config.init {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading the initial adapter {} (train the run it comes from first)", path.display()))?;
            Some(LoraAdapter::from_safetensors(&bytes).with_context(|| format!("{} is not an adapter", path.display()))?)
        }
        None => None,
    };
    let tokens: usize = train.iter().map(|e| e.tokens.len()).sum();
    eprintln!("behaviour cloning: {} training examples ({tokens} tokens), {} validation; {:?}", train.len(), validation.len(), config.training);
    let checkpoint = Checkpoint::new(&args.checkpoints)?;
    let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps, eta {eta} {msg}").expect("valid template"));
    let log_path = args.checkpoints.join("log.jsonl");
    let adapter = train_lora(
        &llm.model,
        init.as_ref(),
        &train,
        &validation,
        &config.training,
        &checkpoint,
        |step, total, loss| {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.3}"));
        },
        |log| {
            bar.suspend(|| eprintln!("step {} (epoch {}): train {:.4}, validation {:.4}, {:.0} tokens/s", log.step, log.epoch, log.train_loss, log.validation_loss, log.tokens_per_second));
            let line = serde_json::to_string(log).expect("plain data");
            let _ = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
        },
    )?;
    bar.finish_and_clear();
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    adapter.save(&args.out)?;
    eprintln!("wrote {} (best validation loss {:?})", args.out.display(), checkpoint.state().best_validation_loss);
    Ok(())
}

/// The teacher's examples from `cohort_path`, generated once and kept in
/// the checkpoint folder.
fn examples(args: &TrainAgentArgs, llm: &Llm, cohort_path: &Path, name: &str, decisions: usize, seed: u64, first_step_share: Option<f64>) -> Result<Vec<Example>> {
    let share = first_step_share.map(|s| format!("-first{s}")).unwrap_or_default();
    let cache = args.checkpoints.join(format!("teacher-{name}-{decisions}-{seed}{share}.json"));
    if let Ok(text) = std::fs::read_to_string(&cache) {
        return serde_json::from_str(&text).with_context(|| format!("{} is damaged: delete it to regenerate", cache.display()));
    }
    let file = std::fs::File::open(cohort_path).with_context(|| format!("opening {} (run `make data`)", cohort_path.display()))?;
    let (cohort, report) = read_cohort(&cohort_path.display().to_string(), std::io::BufReader::new(file));
    if !report.is_clean() {
        bail!("{}: {} problems", cohort_path.display(), report.problems.len());
    }
    let model = WorldModel::load(Path::new(WORLD_MODEL))?;
    let support = load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?;
    let courses = decision_points(&cohort, decisions, seed, first_step_share);
    let bar = ProgressBar::new(courses.len() as u64).with_style(ProgressStyle::with_template("teacher ({prefix}) {bar:30} {pos}/{len} decisions, eta {eta}").expect("valid template"));
    bar.set_prefix(name.to_string());
    let (examples, teacher): (Vec<Example>, TeacherReport) = teacher_examples(&courses, &model, &support, &llm.tokenizer, |_| bar.inc(1))?;
    bar.finish_and_clear();
    eprintln!("teacher ({name}): {teacher:?}");
    std::fs::write(&cache, serde_json::to_string(&examples)?)?;
    Ok(examples)
}
