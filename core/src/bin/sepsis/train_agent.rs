//! `sepsis train agent --stage ...`: LoRA adapters on the agent's LLM, one
//! curriculum stage at a time. Stage 1 (`dynamics`): the patient's next
//! line from the course and the treatment given. Stage 2 (`bc`): behaviour
//! cloning of the `wm-mpc` teacher's propose-simulate-refine decisions; the
//! teacher's examples are generated once and kept beside the checkpoints.
//! Stage 3 (`rl`): GRPO inside the world model from the stage-2 adapter.
//! Training resumes from its checkpoint folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sepsis_core::curriculum::dynamics::{dynamics_points, example as dynamics_example};
use sepsis_core::curriculum::example::Example;
use sepsis_core::curriculum::grpo::{proposal_decides, train_grpo, GrpoConfig, RewardedState};
use sepsis_core::curriculum::lora_training::{train_lora, Checkpoint, LoraTrainingConfig};
use sepsis_core::agent::observation::ObservationFormat;
use sepsis_core::agent::runtime::WorldModelSimulator;
use sepsis_core::curriculum::teacher::{decision_points, teacher_examples, TeacherReport, TEACHER};
use sepsis_core::eval::policies::{load_adapter, load_ai_clinician, AI_CLINICIAN_MODEL, LLM_MODEL, WORLD_MODEL};
use sepsis_core::llm::generate::Llm;
use sepsis_core::llm::model::LoraAdapter;
use sepsis_core::world_model::WorldModel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    /// Stage 1: patient-dynamics SFT (write the next 4 h from the course and the treatment).
    Dynamics,
    /// Stage 2: behaviour cloning of the wm-mpc teacher's decisions.
    Bc,
    /// Stage 3: GRPO inside the world model, from a stage-2 adapter.
    Rl,
}

impl Stage {
    /// The stage's configuration, checkpoint folder and adapter, unless given.
    fn defaults(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Stage::Dynamics => ("configs/agent-dynamics.json", ".cache/checkpoints/agent-dynamics", "public/models/agent-stage1.safetensors"),
            Stage::Bc => ("configs/agent-bc.json", ".cache/checkpoints/agent-bc", "public/models/agent-bc.safetensors"),
            Stage::Rl => ("configs/agent-rl.json", ".cache/checkpoints/agent-rl", "public/models/agent.safetensors"),
        }
    }
}

#[derive(Args)]
pub struct TrainAgentArgs {
    #[arg(long, value_enum)]
    stage: Stage,
    /// Stage configuration (JSON) [default: configs/agent-dynamics.json, configs/agent-bc.json or configs/agent-rl.json].
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = ".cache/data/icu-sepsis.train.csv")]
    train: PathBuf,
    #[arg(long, default_value = ".cache/data/icu-sepsis.validation.csv")]
    validation: PathBuf,
    /// Checkpoints (and the teacher's examples); a run with the same folder continues
    /// [default: .cache/checkpoints/agent-dynamics, agent-bc or agent-rl].
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// Where the trained adapter goes [default: public/models/agent-stage1.safetensors, agent-bc.safetensors or agent.safetensors].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The arguments with the stage's defaults filled in.
struct Paths {
    config: PathBuf,
    checkpoints: PathBuf,
    out: PathBuf,
}

impl TrainAgentArgs {
    fn paths(&self) -> Paths {
        let (config, checkpoints, out) = self.stage.defaults();
        Paths {
            config: self.config.clone().unwrap_or_else(|| config.into()),
            checkpoints: self.checkpoints.clone().unwrap_or_else(|| checkpoints.into()),
            out: self.out.clone().unwrap_or_else(|| out.into()),
        }
    }
}

/// Stage 1's data and training.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DynamicsConfig {
    /// (patient, step) points sampled from the training split.
    train_points: usize,
    /// From the validation split.
    validation_points: usize,
    #[serde(flatten)]
    training: LoraTrainingConfig,
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

/// Stage 3's states and training.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RlConfig {
    /// Validation states (greedy decisions scored at each checkpoint).
    validation_states: usize,
    /// Share of states (training and validation) that are the first step
    /// of a stay; absent: every step equally likely.
    #[serde(default)]
    first_step_share: Option<f64>,
    /// The stage-2 adapter to start from (and to stay near: the KL term).
    init: PathBuf,
    /// Train and validate only on states where the agent's proposal decides
    /// its prescription (`grpo::proposal_decides`). Elsewhere a group's
    /// decisions all prescribe the same: runs on every state had 0-3 of 4
    /// groups with signal a step (docs/training.md).
    #[serde(default)]
    choice_states_only: bool,
    #[serde(flatten)]
    grpo: GrpoConfig,
}

pub fn run(args: TrainAgentArgs) -> Result<()> {
    match args.stage {
        Stage::Dynamics => dynamics(&args),
        Stage::Bc => behaviour_cloning(&args),
        Stage::Rl => reinforcement(&args),
    }
}

pub fn load_llm() -> Result<Llm> {
    let file = std::fs::File::open(LLM_MODEL).with_context(|| format!("opening {LLM_MODEL} (run `make fetch`)"))?;
    Ok(Llm::from_gguf(&mut std::io::BufReader::new(file))?)
}

fn dynamics(args: &TrainAgentArgs) -> Result<()> {
    let paths = args.paths();
    let text = std::fs::read_to_string(&paths.config).with_context(|| format!("reading {}", paths.config.display()))?;
    let config: DynamicsConfig = serde_json::from_str(&text).with_context(|| format!("{} is not a stage-1 (dynamics) configuration", paths.config.display()))?;
    let llm = load_llm()?;
    let examples = |path: &Path, n: usize, seed: u64| -> Result<Vec<Example>> {
        let cohort = crate::read_cohort_file(path)?;
        Ok(dynamics_points(&cohort, n, seed).iter().map(|p| dynamics_example(&llm.tokenizer, p)).collect())
    };
    let train = examples(&args.train, config.train_points, config.training.seed)?;
    let validation = examples(&args.validation, config.validation_points, config.training.seed ^ 1)?;
    let tokens: usize = train.iter().map(|e| e.tokens.len()).sum();
    let targets: usize = train.iter().map(Example::target_count).sum();
    eprintln!("stage 1 (dynamics): {} training examples ({tokens} tokens, {targets} written), {} validation; {:?}", train.len(), validation.len(), config.training);
    fit(&llm, None, &train, &validation, &config.training, &paths)
}

fn behaviour_cloning(args: &TrainAgentArgs) -> Result<()> {
    let paths = args.paths();
    let text = std::fs::read_to_string(&paths.config).with_context(|| format!("reading {}", paths.config.display()))?;
    let config: BcConfig = serde_json::from_str(&text).with_context(|| format!("{} is not a behaviour-cloning configuration", paths.config.display()))?;
    let llm = load_llm()?;
    std::fs::create_dir_all(&paths.checkpoints)?;
    let share = config.first_step_share;
    let format = config.training.observation;
    let train = examples(&paths, &llm, &args.train, "train", config.teacher_decisions, config.training.seed, share, format)?;
    let validation = examples(&paths, &llm, &args.validation, "validation", config.validation_decisions, config.training.seed ^ 1, share, format)?;
    let init = config.init.as_deref().map(|path| load_adapter(path, "dynamics").map(|(adapter, _)| adapter)).transpose()?;
    let tokens: usize = train.iter().map(|e| e.tokens.len()).sum();
    eprintln!("behaviour cloning: {} training examples ({tokens} tokens), {} validation; {:?}", train.len(), validation.len(), config.training);
    fit(&llm, init.as_ref(), &train, &validation, &config.training, &paths)
}

fn reinforcement(args: &TrainAgentArgs) -> Result<()> {
    let paths = args.paths();
    let text = std::fs::read_to_string(&paths.config).with_context(|| format!("reading {}", paths.config.display()))?;
    let config: RlConfig = serde_json::from_str(&text).with_context(|| format!("{} is not a stage-3 (rl) configuration", paths.config.display()))?;
    let llm = load_llm()?;
    let (init, _) = load_adapter(&config.init, "bc")?;
    let model = WorldModel::load(Path::new(WORLD_MODEL))?;
    let support = load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?;
    let grpo = &config.grpo;
    let states = |path: &Path, n: usize, seed: u64| -> Result<Vec<RewardedState>> {
        let cohort = crate::read_cohort_file(path)?;
        // Choice states are about half of all; draw enough to find n.
        let drawn = if config.choice_states_only { 8 * n } else { n };
        let mut courses = decision_points(&cohort, drawn, seed, config.first_step_share);
        if config.choice_states_only {
            courses.retain(|course| proposal_decides(&support.practice(&course.last().expect("a decision point has a step").values)));
            anyhow::ensure!(courses.len() >= n, "{}: {} of {drawn} decision points offer the agent a choice; {n} wanted", path.display(), courses.len());
            courses.truncate(n);
        }
        Ok(courses.into_iter().enumerate().map(|(i, c)| RewardedState::new(&model, &support, c, &grpo.reward, i as u32)).collect::<candle_core::Result<_>>()?)
    };
    let train = states(&args.train, grpo.steps * grpo.states_per_step, grpo.seed)?;
    let validation = states(&args.validation, config.validation_states, grpo.seed ^ 1)?;
    let which = if config.choice_states_only { " (states where the proposal decides)" } else { "" };
    eprintln!("stage 3 (GRPO in the world model): {} training states{which} in groups of {}, {} validation states; {grpo:?}", train.len(), grpo.group, validation.len());
    let checkpoint = Checkpoint::new(&paths.checkpoints)?;
    let bar = ProgressBar::new(grpo.steps as u64).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps, eta {eta} {msg}").expect("valid template"));
    let log_path = paths.checkpoints.join("log.jsonl");
    let adapter = train_grpo(
        &llm,
        &init,
        &train,
        &validation,
        &model,
        grpo,
        &checkpoint,
        |log| {
            bar.set_position(log.step as u64);
            bar.set_message(format!("reward {:.2}, {}/{} groups with signal, KL {:.4}", log.mean_reward, log.groups_with_signal, log.groups, log.kl));
            append_json_line(&log_path, log);
        },
        |validation| {
            bar.suspend(|| eprintln!("step {}: validation reward {:.3}, survival {:.4}, unsupported {:.1}%, with violations {:.1}%", validation.step, validation.mean_reward, validation.mean_survival, 100.0 * validation.unsupported, 100.0 * validation.with_violations));
            append_json_line(&log_path, validation);
        },
    )?;
    bar.finish_and_clear();
    if let Some(parent) = paths.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    adapter.save(&paths.out)?;
    eprintln!("wrote {}", paths.out.display());
    Ok(())
}

/// One record of a run's `log.jsonl`. The log is a convenience copy of what
/// the checkpoint state holds, so a failed write does not stop training.
fn append_json_line(path: &Path, record: &impl Serialize) {
    let line = serde_json::to_string(record).expect("plain data");
    let _ = std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
}

/// Train (or resume) the adapters with a progress bar, log every validation
/// to `log.jsonl` in the checkpoint folder, and write the best adapter.
fn fit(llm: &Llm, init: Option<&LoraAdapter>, train: &[Example], validation: &[Example], training: &LoraTrainingConfig, paths: &Paths) -> Result<()> {
    let checkpoint = Checkpoint::new(&paths.checkpoints)?;
    let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps, eta {eta} {msg}").expect("valid template"));
    let log_path = paths.checkpoints.join("log.jsonl");
    let adapter = train_lora(
        &llm.model,
        init,
        train,
        validation,
        training,
        &checkpoint,
        |step, total, loss| {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.3}"));
        },
        |log| {
            bar.suspend(|| eprintln!("step {} (epoch {}): train {:.4}, validation {:.4}, {:.0} tokens/s", log.step, log.epoch, log.train_loss, log.validation_loss, log.tokens_per_second));
            append_json_line(&log_path, log);
        },
    )?;
    bar.finish_and_clear();
    if let Some(parent) = paths.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    adapter.save(&paths.out)?;
    eprintln!("wrote {} (best validation loss {:?})", paths.out.display(), checkpoint.state().best_validation_loss);
    Ok(())
}

/// The teacher's examples from `cohort_path`, generated once and kept in
/// the checkpoint folder.
#[allow(clippy::too_many_arguments)]
fn examples(paths: &Paths, llm: &Llm, cohort_path: &Path, name: &str, decisions: usize, seed: u64, first_step_share: Option<f64>, format: ObservationFormat) -> Result<Vec<Example>> {
    let share = first_step_share.map(|s| format!("-first{s}")).unwrap_or_default();
    // Examples of another teacher, of the same one reading other answers, or
    // written for another observation format, are not reused; nor are those
    // of the same teacher over other models or another cohort file (a
    // refitted memory or support model changes what it prescribes).
    let model = WorldModel::load(Path::new(WORLD_MODEL))?;
    let weights = format!("{WORLD_MODEL}.safetensors");
    let weights = std::fs::read(&weights).with_context(|| format!("reading {weights} to identify the teacher's examples"))?;
    let mut identity = format!("{TEACHER}; observation {format:?}; {}", WorldModelSimulator::identity(&model, &weights)?);
    for file in [AI_CLINICIAN_MODEL.to_string(), cohort_path.display().to_string()] {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {file} to identify the teacher's examples"))?;
        identity.push_str(&format!("; {file} {}", sepsis_core::manifest::sha256_hex(&bytes)));
    }
    let teacher = sepsis_core::manifest::sha256_hex(identity.as_bytes());
    let cache = paths.checkpoints.join(format!("teacher-{name}-{decisions}-{seed}{share}-{}.json", &teacher[..8]));
    if let Ok(text) = std::fs::read_to_string(&cache) {
        return serde_json::from_str(&text).with_context(|| format!("{} is damaged: delete it to regenerate", cache.display()));
    }
    let cohort = crate::read_cohort_file(cohort_path)?;
    let support = load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?;
    let courses = decision_points(&cohort, decisions, seed, first_step_share);
    let bar = ProgressBar::new(courses.len() as u64).with_style(ProgressStyle::with_template("teacher ({prefix}) {bar:30} {pos}/{len} decisions, eta {eta}").expect("valid template"));
    bar.set_prefix(name.to_string());
    let (examples, teacher): (Vec<Example>, TeacherReport) = teacher_examples(&courses, &model, &support, &llm.tokenizer, format, |_| bar.inc(1))?;
    bar.finish_and_clear();
    eprintln!("teacher ({name}): {teacher:?}");
    std::fs::write(&cache, serde_json::to_string(&examples)?)?;
    Ok(examples)
}
