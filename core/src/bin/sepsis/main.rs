//! `sepsis`: the native command-line tool for SepsisAgent Web: evaluation on
//! ICU-Sepsis, policy tables, cohort generation, and model-file checks. Data, training and
//! agent commands join as they land.

mod recommend;
mod report;
mod train_agent;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sepsis_core::baselines::ai_clinician::{AiClinician, Config as AiClinicianConfig};
use sepsis_core::baselines::ddqn::{Config as DdqnConfig, Ddqn};
use sepsis_core::cohort::normaliser::Normaliser;
use sepsis_core::world_model::card::ModelCard;
use sepsis_core::world_model::train::{export, train_member, Checkpoints};
use sepsis_core::eval::results_file::write_section;
use sepsis_core::world_model::evaluate::{evaluate as evaluate_world_model, markdown as world_model_markdown};
use sepsis_core::world_model::{Layout, Windows, WorldModel, WorldModelConfig};
use sepsis_core::cohort::csv_format::{read_cohort, write_cohort};
use sepsis_core::cohort::Cohort;
use sepsis_core::env::cohort_sampling::{sample_cohort, split};
use sepsis_core::env::icu_sepsis::{IcuSepsis, DEFAULT_DIR};
use sepsis_core::agent::runtime::Decoding;
use sepsis_core::eval::policies::{load_adapter, load_ai_clinician, named_policy, Experiment, AI_CLINICIAN_MODEL, BASELINES_DIR, POLICY_NAMES, WORLD_MODEL};
use sepsis_core::eval::scoreboard::{agent_markdown, estimator_errors, markdown, Scoreboard, LOGGED_EPISODES, LOGGED_SEED};
use sepsis_core::manifest::{sha256_hex, Manifest, Verifier};
use sepsis_core::policy::Baseline;

#[derive(Parser)]
#[command(name = "sepsis", version, about = "SepsisAgent Web: research decision support for sepsis treatment (not a medical device)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score policies on an environment (the scoreboard).
    Eval(EvalArgs),
    /// Write a policy's action probabilities for every patient state as CSV.
    PolicyTable(PolicyTableArgs),
    /// Train a baseline policy from a logged cohort.
    Train {
        #[command(subcommand)]
        command: TrainCommand,
    },
    /// Generate cohorts in the documented CSV format.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Model manifest tools.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// One decision of the propose-simulate-refine loop for one patient, with its whole trace.
    Recommend(recommend::RecommendArgs),
    /// The app's cohort report natively: the world-model planner's decision at every step of a cohort against the clinicians'.
    Report(report::ReportArgs),
    /// The agent's LLM.
    Llm {
        #[command(subcommand)]
        command: LlmCommand,
    },
}

#[derive(Subcommand)]
enum LlmCommand {
    /// Rewrite the GGUF's Q4_1 blocks as Q8_0 (candle has SIMD kernels for Q8_0; `make fetch` runs this once).
    Quantize {
        #[arg(long, default_value = ".cache/llm-source/SmolLM2-135M-Instruct.Q4_1.gguf")]
        input: PathBuf,
        #[arg(long, default_value = ".cache/models/SmolLM2-135M-Instruct.Q8_0.gguf")]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EnvName {
    /// The ICU-Sepsis MDP (exact evaluation by state).
    IcuSepsis,
}

#[derive(Args)]
struct EnvArgs {
    /// Environment to evaluate on.
    #[arg(long, value_enum, default_value = "icu-sepsis")]
    env: EnvName,
    /// Folder with dynamics.npz and admissible_actions.txt (fetched by `make fetch`).
    #[arg(long, default_value = DEFAULT_DIR)]
    data_dir: PathBuf,
    /// Folder with the DDQN baseline's model files (the AI Clinician is `public/models/ai-clinician.json`).
    #[arg(long, default_value = BASELINES_DIR)]
    baselines_dir: PathBuf,
    /// World model (STEM.json + STEM.safetensors) that wm-mpc and the simulating agent rows consult.
    #[arg(long, default_value = WORLD_MODEL)]
    world_model: PathBuf,
    /// The AI Clinician's clusters and counts: the ai-clinician row, and wm-mpc's support.
    #[arg(long, default_value = AI_CLINICIAN_MODEL)]
    support: PathBuf,
    /// An experiment: decide the LLM row named by --policy with this adapter instead of its shipped one.
    /// Its decisions are recorded in .cache/experiments/agent-decisions/ (one file per row and adapter),
    /// never in docs/agent-decisions/, so a candidate is scored without touching the scoreboard.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// An experiment: decide the LLM row named by --policy with this decoding (JSON, as results.md prints
    /// the default) instead of the default. Recorded apart as --adapter is; the two combine.
    #[arg(long, value_parser = parse_decoding)]
    decoding: Option<Decoding>,
}

impl EnvArgs {
    fn experiment(&self) -> Experiment<'_> {
        Experiment { adapter: self.adapter.as_deref(), decoding: self.decoding }
    }
}

fn parse_decoding(json: &str) -> Result<Decoding, String> {
    serde_json::from_str(json).map_err(|e| {
        let default = serde_json::to_string(&Decoding::DEFAULT).expect("plain data");
        format!("{e}; expected a decoding such as the default, {default}")
    })
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct EvalArgs {
    #[command(subcommand)]
    what: Option<EvalWhat>,
    #[command(flatten)]
    env: EnvArgs,
    /// Policy to score: random, clinicians, no-treatment, optimal, ai-clinician, ddqn, wm-mpc, llm-zero-shot, llm-zero-shot-wm.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    policy: Option<String>,
    /// Score every policy; print a Markdown table and write it to --results.
    #[arg(long)]
    all: bool,
    /// Where --all writes its table.
    #[arg(long, default_value = "docs/results.md")]
    results: PathBuf,
    /// One JSON object per policy instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum EvalWhat {
    /// The best a learner could do from logged clinicians' data of each size,
    /// seeing the MDP's own states (written to docs/results.md).
    DataCeiling {
        /// Cohort sizes (episodes): 14,000 and 105,000 are the training splits of
        /// 20,000- and 150,000-episode cohorts.
        #[arg(long, value_delimiter = ',', default_value = "14000,50000,105000,150000")]
        episodes: Vec<usize>,
        /// Thresholds: an action is a candidate in a state with at least this many logged
        /// steps. Each size also gets the support rule's (`action::support_threshold`).
        #[arg(long, value_delimiter = ',', default_value = "20,50,100")]
        min_counts: Vec<u32>,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// The support model whose rule the agent and wm-mpc keep to (for the in-support optimum).
        #[arg(long, default_value = AI_CLINICIAN_MODEL)]
        support: PathBuf,
        #[arg(long, default_value = DEFAULT_DIR)]
        data_dir: PathBuf,
        #[arg(long, default_value = "docs/results.md")]
        results: PathBuf,
    },
    /// How much wm-mpc's exact value depends on its horizon, support
    /// threshold and disagreement penalty (written to docs/results.md).
    PlannerSensitivity {
        #[arg(long, default_value = WORLD_MODEL)]
        world_model: PathBuf,
        /// The planner's support clusters (and the memory's, where the model has one).
        #[arg(long, default_value = AI_CLINICIAN_MODEL)]
        support: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,6")]
        horizons: Vec<usize>,
        /// Support thresholds; the support model's own (the scoreboard's) is always added.
        #[arg(long, value_delimiter = ',', default_value = "20,50,100")]
        min_supports: Vec<u32>,
        #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
        disagreement_penalties: Vec<f64>,
        #[arg(long, default_value = DEFAULT_DIR)]
        data_dir: PathBuf,
        #[arg(long, default_value = "docs/results.md")]
        results: PathBuf,
    },
    /// Where wm-mpc loses value: its dynamics and its value swapped in turn
    /// for ICU-Sepsis's truth or for counts from the training split
    /// (written to docs/results.md).
    PlannerDiagnosis {
        #[arg(long, default_value = WORLD_MODEL)]
        world_model: PathBuf,
        /// The planner's support clusters (and the memory's, where the model has one).
        #[arg(long, default_value = AI_CLINICIAN_MODEL)]
        support: PathBuf,
        /// The training split, for transitions counted by state id.
        #[arg(long, default_value = ".cache/data/icu-sepsis.train.csv")]
        train: PathBuf,
        #[arg(long, default_value = DEFAULT_DIR)]
        data_dir: PathBuf,
        #[arg(long, default_value = "docs/results.md")]
        results: PathBuf,
    },
    /// Curriculum stage 1: how well the agent's LLM writes the next 4 h,
    /// with the stage-1 adapter and without, against the world model and
    /// persistence (written to docs/results.md).
    AgentDynamics {
        /// The stage-1 adapter (`sepsis train agent --stage dynamics`).
        #[arg(long, default_value = "public/models/agent-stage1.safetensors")]
        adapter: PathBuf,
        #[arg(long, default_value = ".cache/data/icu-sepsis.test.csv")]
        cohort: PathBuf,
        /// Sampled (patient, step) points with a logged next step.
        #[arg(long, default_value_t = 100)]
        points: usize,
        #[arg(long, default_value_t = 2027)]
        seed: u64,
        #[arg(long, default_value = "docs/results.md")]
        results: PathBuf,
    },
    /// How well the world model predicts (written to its section of docs/results.md).
    WorldModel {
        /// Model stem (STEM.json + STEM.safetensors).
        #[arg(long, default_value = WORLD_MODEL)]
        model: PathBuf,
        /// Held-out cohort (`make data` writes the test split).
        #[arg(long, default_value = ".cache/data/icu-sepsis.test.csv")]
        cohort: PathBuf,
        /// ICU-Sepsis files, for the out-of-support disagreement check.
        #[arg(long, default_value = DEFAULT_DIR)]
        data_dir: PathBuf,
        #[arg(long, default_value = "docs/results.md")]
        results: PathBuf,
    },
}

#[derive(Args)]
struct PolicyTableArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Policy name (see `sepsis eval --help`).
    #[arg(long)]
    policy: String,
    /// Output CSV: `state,p0,...,p24`, one row per patient state 0..712.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// k-means states + policy iteration on the logged MDP (Komorowski et al. 2018).
    AiClinician {
        /// Training cohort CSV (`make data` writes .cache/data/icu-sepsis.train.csv).
        #[arg(long, default_value = ".cache/data/icu-sepsis.train.csv")]
        cohort: PathBuf,
        /// k-means clusters (Komorowski et al.: 750).
        #[arg(long, default_value_t = 750)]
        clusters: usize,
        /// Logged steps an action needs in a cluster before the policy may choose it
        /// (default: ICU-Sepsis's rate for admissible actions at the cohort's size,
        /// never below 20: `action::support_threshold`).
        #[arg(long)]
        min_action_count: Option<usize>,
        #[arg(long, default_value_t = 2018)]
        seed: u64,
        /// Where to write the model (JSON).
        #[arg(long, default_value = AI_CLINICIAN_MODEL)]
        out: PathBuf,
    },
    /// Dueling double DQN on clinical features with the Raghu reward (candle, CPU).
    Ddqn(DdqnArgs),
    /// The Clinical World Model ensemble (GRU, candle, CPU); resumes from its checkpoints.
    WorldModel(WorldModelArgs),
    /// The world model's memory of logged transitions (core/src/world_model/memory.rs):
    /// counted in the training split by the support clusters and planned over (each cluster's
    /// survival under the best supported treatments onward), written into the model's card.
    WorldModelMemory {
        /// Training cohort CSV (the split the world model and the support clusters were trained on).
        #[arg(long, default_value = ".cache/data/icu-sepsis.train.csv")]
        cohort: PathBuf,
        /// The support clusters (`sepsis train ai-clinician`).
        #[arg(long, default_value = AI_CLINICIAN_MODEL)]
        support: PathBuf,
        /// Model stem: STEM.json gains the memory (the model is loaded first, to check it).
        #[arg(long, default_value = WORLD_MODEL)]
        model: PathBuf,
        /// Logged transitions a cluster and action need before they are drawn from
        /// (20, the planner's support threshold).
        #[arg(long, default_value_t = 20)]
        min_count: u32,
    },
    /// The agent's LoRA adapters, one curriculum stage at a time; resumes from its checkpoints.
    Agent(train_agent::TrainAgentArgs),
}

#[derive(Args)]
struct WorldModelArgs {
    /// Training configuration (JSON).
    #[arg(long, default_value = "configs/world-model.json")]
    config: PathBuf,
    /// Override the configuration's seed.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value = ".cache/data/icu-sepsis.train.csv")]
    train: PathBuf,
    #[arg(long, default_value = ".cache/data/icu-sepsis.validation.csv")]
    validation: PathBuf,
    /// Checkpoint folder; a run with the same folder continues where the last one stopped.
    #[arg(long, default_value = ".cache/checkpoints/world-model")]
    checkpoints: PathBuf,
    /// Output stem: writes STEM.safetensors (all members) and STEM.json (card).
    #[arg(long, default_value = WORLD_MODEL)]
    out: PathBuf,
    /// Train only these members (0-based, e.g. `--members 0,2,4`): one process per
    /// core, each on its own members, sharing the checkpoint folder. The model is
    /// written by the run that finds every member finished.
    #[arg(long, value_delimiter = ',')]
    members: Option<Vec<usize>>,
}

#[derive(Args)]
struct DdqnArgs {
    /// Training cohort CSV.
    #[arg(long, default_value = ".cache/data/icu-sepsis.train.csv")]
    train: PathBuf,
    /// Validation cohort CSV (TD error logged while training).
    #[arg(long, default_value = ".cache/data/icu-sepsis.validation.csv")]
    validation: PathBuf,
    /// Gradient steps.
    #[arg(long, default_value_t = 30_000)]
    steps: usize,
    #[arg(long, default_value_t = 2017)]
    seed: u64,
    /// Output stem: writes STEM.safetensors and STEM.json.
    #[arg(long, default_value = "public/models/baselines/ddqn")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Sample episodes from ICU-Sepsis under the clinicians' policy, in clinical units.
    IcuSepsis {
        #[arg(long, default_value = DEFAULT_DIR)]
        data_dir: PathBuf,
        /// Number of patients (episodes).
        #[arg(long)]
        episodes: usize,
        /// Random seed; the same seed gives the same file.
        #[arg(long)]
        seed: u64,
        /// Output CSV with every patient.
        #[arg(long)]
        out: PathBuf,
        /// Also write the patient-level split beside it: NAME.train.csv,
        /// NAME.validation.csv, NAME.test.csv (70 / 15 / 15 %).
        #[arg(long)]
        split: bool,
    },
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Verify that every file listed in the manifest exists in DIR with the
    /// listed size and SHA-256.
    Check {
        /// The manifest to check against.
        #[arg(long, default_value = "public/models/manifest.json")]
        manifest: PathBuf,
        /// Folder holding the model files.
        #[arg(long)]
        dir: PathBuf,
    },
    /// After retraining: rewrite the size and SHA-256 of every listed file
    /// found in DIR (files not there, like the fetched LLM, are left as listed).
    Refresh {
        #[arg(long, default_value = "public/models/manifest.json")]
        manifest: PathBuf,
        #[arg(long, default_value = "public/models")]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Eval(args) => eval(args),
        Command::PolicyTable(args) => policy_table(args),
        Command::Train { command: TrainCommand::AiClinician { cohort, clusters, min_action_count, seed, out } } => {
            let config = AiClinicianConfig { clusters, seed, ..AiClinicianConfig::default() };
            train_ai_clinician(&cohort, config, min_action_count, &out)
        }
        Command::Train { command: TrainCommand::Ddqn(args) } => train_ddqn(args),
        Command::Train { command: TrainCommand::WorldModel(args) } => train_world_model(args),
        Command::Train { command: TrainCommand::WorldModelMemory { cohort, support, model, min_count } } => train_world_model_memory(&cohort, &support, &model, min_count),
        Command::Train { command: TrainCommand::Agent(args) } => train_agent::run(args),
        Command::Data { command: DataCommand::IcuSepsis { data_dir, episodes, seed, out, split } } => {
            sample_data(&data_dir, episodes, seed, &out, split)
        }
        Command::Manifest { command: ManifestCommand::Check { manifest, dir } } => check_manifest(&manifest, &dir),
        Command::Manifest { command: ManifestCommand::Refresh { manifest, dir } } => refresh_manifest(&manifest, &dir),
        Command::Llm { command: LlmCommand::Quantize { input, out } } => quantize_llm(&input, &out),
        Command::Recommend(args) => recommend::run(args),
        Command::Report(args) => report::run(args),
    }
}

fn quantize_llm(input: &Path, out: &Path) -> Result<()> {
    use candle_core::quantized::GgmlDType;
    let started = std::time::Instant::now();
    let mut reader = std::io::BufReader::new(std::fs::File::open(input).with_context(|| format!("opening {} (run `make fetch`)", input.display()))?);
    // Write beside the target and rename, so an interrupted run leaves no half file.
    let partial = out.with_extension("gguf.part");
    let mut writer = std::io::BufWriter::new(std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?);
    let report = sepsis_core::llm::quantize::requantize(&mut reader, &mut writer, GgmlDType::Q4_1, GgmlDType::Q8_0)
        .with_context(|| format!("re-quantizing {}", input.display()))?;
    drop(writer);
    std::fs::rename(&partial, out)?;
    eprintln!(
        "wrote {} ({} of {} tensors Q4_1 -> Q8_0, {:.1} s)",
        out.display(),
        report.converted,
        report.tensors,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn load_env(args: &EnvArgs) -> Result<IcuSepsis> {
    match args.env {
        EnvName::IcuSepsis => Ok(IcuSepsis::load(&args.data_dir)?),
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    match &args.what {
        Some(EvalWhat::WorldModel { model, cohort, data_dir, results }) => return eval_world_model(model, cohort, data_dir, results),
        Some(EvalWhat::AgentDynamics { adapter, cohort, points, seed, results }) => return eval_agent_dynamics(adapter, cohort, *points, *seed, results),
        Some(EvalWhat::DataCeiling { episodes, min_counts, seed, support, data_dir, results }) => {
            return eval_data_ceiling(episodes, min_counts, *seed, support, data_dir, results)
        }
        Some(EvalWhat::PlannerSensitivity { world_model, support, horizons, min_supports, disagreement_penalties, data_dir, results }) => {
            return eval_planner_sensitivity(world_model, support, horizons, min_supports, disagreement_penalties, data_dir, results)
        }
        Some(EvalWhat::PlannerDiagnosis { world_model, support, train, data_dir, results }) => {
            return eval_planner_diagnosis(world_model, support, train, data_dir, results)
        }
        None => {}
    }
    let env = load_env(&args.env)?;
    let names: Vec<String> = match &args.policy {
        Some(name) => vec![name.clone()],
        None => POLICY_NAMES.iter().map(|n| n.to_string()).collect(),
    };
    if args.all && args.env.experiment().is_some() {
        bail!("--adapter and --decoding score one experiment (--policy NAME); the scoreboard (--all) is the shipped adapters' with the default decoding");
    }
    let policies = names
        .iter()
        .map(|name| named_policy(&env, name, &args.env.baselines_dir, &args.env.world_model, &args.env.support, args.env.experiment()))
        .collect::<Result<Vec<_>, _>>()?;
    let board = Scoreboard::new(&env);
    let rows = policies.iter().map(|p| board.score_named(p)).collect::<Result<Vec<_>, _>>()?;
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else {
        print!("{}", markdown(&rows));
    }
    if args.all {
        // The agents' support threshold, as their observations state it.
        let min_support = load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?.min_support();
        let text = format!(
            "## ICU-Sepsis scoreboard\n\n\
             Written by `sepsis eval --env icu-sepsis --all` (`make eval`).\n\n\
             Environment: the ICU-Sepsis MDP (`icu-sepsis` 2.0.1, MIT). *Exact value* is the survival \
             probability from one linear solve per policy. WIS, WPDIS and DR (weighted doubly robust with \
             tabular FQE) are estimated from a logged cohort of {logged} clinicians' episodes (the test split \
             of {LOGGED_EPISODES} sampled with seed {LOGGED_SEED}); evaluation policies softened with eps = 0.01; \
             95% intervals from {boot} bootstrap resamples of episodes; ESS = effective sample size of the \
             weights. G1, G2, out-of-support and guideline adherence are shares of decisions weighted by the \
             policy's exact expected visits (definitions: `docs/guidelines.md`).\n\n{}\n\
             ### The LLM agents' behaviour\n\n\
             Over the {states} patient states, each decided once from its clinical values as a one-step \
             course (ICU-Sepsis is Markov in its state); the policy above is those decisions. Constrained \
             decoding (`docs/agent.md`): {decoding}: a short thought, then the tool call written to the \
             grammar; with the world model the first call simulates.{decoding_rules} *Valid \
             protocol*: the agent's own prescription with no malformed turn and no fallback; constrained \
             decoding makes a malformed call impossible, so only fallbacks can lower it (what the base model \
             writes when free: `docs/agent.md`). Decisions are \
             recorded in `docs/agent-decisions/` (one file per row, keyed by everything that determines a decision) so an interrupted run resumes and an unchanged row is read back, not decided again.\n\n{}\n\
             ## Off-policy estimators against the truth\n\n\
             Signed error of each estimate against the exact value; *covered* when the 95% interval \
             contains the exact value.\n\n{}",
            markdown(&rows),
            agent_markdown(&rows),
            estimator_errors(&rows),
            states = sepsis_core::env::icu_sepsis::N_PATIENT_STATES,
            decoding = serde_json::to_string(&sepsis_core::agent::runtime::Decoding::DEFAULT)?,
            decoding_rules = {
                let mut rules = String::new();
                if let sepsis_core::agent::runtime::Decoding::Constrained { faithful, supported_proposals, prescribes_best, .. } = sepsis_core::agent::runtime::Decoding::DEFAULT {
                    if faithful {
                        rules += " Faithful: the first thought begins with the patient's MAP and lactate status written from the values, \
                                  and a prescription names a candidate the agent simulated, one showing the survival its thought \
                                  states when any does.";
                    }
                    if faithful && prescribes_best {
                        rules += " Prescribed best: the thought after a simulation begins with the survival of the best \
                                  candidate shown as the teacher ranks them (survival less the spread and 0.05 per flag, on the \
                                  simulation's unrounded figures), written from the answer, and the agent prescribes that candidate; \
                                  what it proposes is its own.";
                    }
                    if supported_proposals {
                        rules += &format!(
                            " Supported proposals: where the observation shows the clinicians' practice, a simulate call \
                             lists only candidates they gave at least {min_support} times in states like this one (as the teacher's do)."
                        );
                    }
                }
                rules
            },
            logged = rows.first().map(|r| r.logged_episodes).unwrap_or(0),
            boot = sepsis_core::eval::ope::BOOTSTRAP_SAMPLES,
        );
        write_section(&args.results, "scoreboard", &text).with_context(|| format!("writing {}", args.results.display()))?;
        eprintln!("wrote {}", args.results.display());
    }
    Ok(())
}

fn eval_data_ceiling(episodes: &[usize], min_counts: &[u32], seed: u64, support: &Path, data_dir: &Path, results: &Path) -> Result<()> {
    let env = IcuSepsis::load(data_dir)?;
    let support_model = load_ai_clinician(support)?;
    let started = std::time::Instant::now();
    let rows = sepsis_core::eval::ceiling::ceiling(&env, episodes, min_counts, seed);
    let table = sepsis_core::eval::ceiling::markdown(&rows);
    print!("{table}");
    let in_support = sepsis_core::eval::ceiling::in_support_optimum(&env, &support_model);
    println!("in-support optimum ({}, threshold {}): {in_support:.4}", support.display(), support_model.min_support());
    let text = format!(
        "## What logged data allows\n\n\
         Written by `sepsis eval data-ceiling` ({secs:.0} s). Exact ICU-Sepsis values of two learners that see the MDP's own \
         state ids in the first N clinicians' episodes of the seed-{seed} stream (`make data` samples its cohort from the \
         same stream and trains on 70 % of it) and may only choose actions logged at least *min. logged count* times in a \
         state; *(rule)* marks the threshold our models use with N training episodes (`action::support_threshold`; \
         definitions: `core/src/eval/ceiling.rs`). They show what the same data gives a learner that knows the states, the \
         yardstick for `wm-mpc` and the agent it teaches, which see clinical features; they are estimates, not bounds (the \
         in-support optimum below is the bound). For reference: clinicians 0.7818, optimal 0.8751, target for \
         `wm-mpc` 0.84.\n\n{table}\n\
         **In-support optimum: {in_support:.4}.** ICU-Sepsis's own optimum (value iteration on its true transitions) among \
          policies that prescribe in each state only what the support model (`{support}`) allows for the state's clinical \
          values, as the agent and `wm-mpc` see it (logged at least {threshold} times in the state's cluster of the training \
          split), and anything where it allows nothing (`ceiling::in_support_optimum`). It needs no estimate, so no policy \
          that keeps to the rule can exceed it, however good its world model.\n",
        secs = started.elapsed().as_secs_f64(),
        support = support.display(),
        threshold = support_model.min_support(),
    );
    write_section(results, "data-ceiling", &text).with_context(|| format!("writing {}", results.display()))?;
    eprintln!("wrote {}", results.display());
    Ok(())
}

fn eval_planner_sensitivity(stem: &Path, support: &Path, horizons: &[usize], min_supports: &[u32], penalties: &[f64], data_dir: &Path, results: &Path) -> Result<()> {
    use sepsis_core::eval::planner_sensitivity::{markdown, sensitivity};
    let env = IcuSepsis::load(data_dir)?;
    let model = WorldModel::load(stem).with_context(|| format!("loading {}", stem.display()))?;
    let support = load_ai_clinician(support)?;
    let started = std::time::Instant::now();
    let rows = sensitivity(&env, &model, &support, horizons, min_supports, penalties).map_err(|e| anyhow::anyhow!(e))?;
    let table = markdown(&rows, support.min_support());
    print!("{table}");
    let text = format!(
        "## How much `wm-mpc` depends on its settings\n\n\
         Written by `sepsis eval planner-sensitivity` ({secs:.0} s) over `{stem}`. The `wm-mpc` planner \
         (`core/src/planner.rs`) scored exactly on ICU-Sepsis at each combination of horizon (steps each \
         candidate is held), support threshold (clinicians' logged count in the state's cluster below which \
         an action is not chosen) and penalty per unit of ensemble SD of predicted survival; guideline \
         penalty {guideline} throughout. A sensitivity analysis, not a tuning: the scoreboard's row keeps the \
         defaults chosen before this grid was run. For reference: clinicians 0.7818, target 0.84; what a learner that knows the \
         states gets from the training split at the support model's threshold ({min_support}), and the in-support optimum, \
         are in the section above.\n\n{table}",
        min_support = support.min_support(),
        secs = started.elapsed().as_secs_f64(),
        stem = stem.display(),
        guideline = sepsis_core::planner::MpcConfig::default().guideline_penalty,
    );
    write_section(results, "planner-sensitivity", &text).with_context(|| format!("writing {}", results.display()))?;
    eprintln!("wrote {}", results.display());
    Ok(())
}

fn eval_planner_diagnosis(stem: &Path, support: &Path, train: &Path, data_dir: &Path, results: &Path) -> Result<()> {
    use sepsis_core::eval::planner_diagnosis::{diagnose, markdown};
    let env = IcuSepsis::load(data_dir)?;
    let model = WorldModel::load(stem).with_context(|| format!("loading {}", stem.display()))?;
    let support = load_ai_clinician(support)?;
    let cohort = read_cohort_file(train)?;
    // Transitions are counted by ICU-Sepsis state id, which only sampled cohorts carry.
    if let Some((patient, step)) = cohort.patients.iter().find_map(|p| p.steps.iter().find(|s| s.state.is_none()).map(|s| (p, s))) {
        anyhow::bail!(
            "{}: patient {} step {}: column icu_sepsis_state is empty; expected the ICU-Sepsis state id that `sepsis data icu-sepsis` writes",
            train.display(),
            patient.id,
            step.index
        );
    }
    let started = std::time::Instant::now();
    let min_support = support.min_support();
    let diagnosis = diagnose(&env, &model, &support, &cohort, min_support).map_err(|e| anyhow::anyhow!(e))?;
    let table = markdown(&diagnosis);
    print!("{table}");
    let text = format!(
        "## Where `wm-mpc` loses value\n\n\
         Written by `sepsis eval planner-diagnosis` ({secs:.0} s) over `{stem}` and `{train}`. A planner that looks one \
         step ahead needs how each action moves the patient (dynamics) and how good the state it leads to is (value). \
         Each row chooses, in every ICU-Sepsis state planned from its clinical values, the supported action (logged at \
         least {min_support} times in the state's cluster, as `wm-mpc`) with the best expected value of the state \
         reached, and is scored exactly. The world model's dynamics are each member's expected next values mapped to \
         the nearest ICU-Sepsis state; its value is the outcome network read after a state with each action weighted \
         by how often clinicians gave it there. Rows with ICU-Sepsis's transitions or the clinicians' exact value use \
         what no learner has: they show what each part of the model would be worth if it were right \
         (`core/src/eval/planner_diagnosis.rs`). For reference: clinicians 0.7818, target 0.84.\n\n{table}",
        secs = started.elapsed().as_secs_f64(),
        stem = stem.display(),
        train = train.display(),
    );
    write_section(results, "planner-diagnosis", &text).with_context(|| format!("writing {}", results.display()))?;
    eprintln!("wrote {}", results.display());
    Ok(())
}

fn eval_agent_dynamics(adapter_path: &Path, cohort_path: &Path, points: usize, seed: u64, results: &Path) -> Result<()> {
    use sepsis_core::curriculum::dynamics::{dynamics_points, evaluate, markdown};
    let cohort = read_cohort_file(cohort_path)?;
    let points = dynamics_points(&cohort, points, seed);
    let model = WorldModel::load(Path::new(WORLD_MODEL)).with_context(|| format!("loading {WORLD_MODEL}"))?;
    let base = train_agent::load_llm()?;
    let (adapter, _) = load_adapter(adapter_path, "dynamics")?;
    let trained = base.with_adapter(&adapter)?;
    let mut reports = Vec::new();
    for (name, llm) in [("base (no adapter)", base), ("stage 1", trained)] {
        let bar = ProgressBar::new(points.len() as u64).with_style(ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} points, eta {eta}").expect("valid template"));
        bar.set_prefix(name);
        let report = evaluate(&std::sync::Arc::new(llm), &model, &points, |done| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        eprintln!("{name}: {} of {} answers parse ({:.0} s)", report.parsed, report.points, report.seconds);
        reports.push((name, report));
    }
    let body = markdown(&reports);
    print!("{body}");
    let text = format!(
        "## Curriculum stage 1: the agent's LLM predicts the next 4 h\n\nWritten by `sepsis eval agent-dynamics` on {} points of `{}` (seed {seed}); adapter `{}`.\n\n{body}",
        points.len(),
        cohort_path.display(),
        adapter_path.display()
    );
    write_section(results, "agent-dynamics", &text).with_context(|| format!("writing {}", results.display()))?;
    Ok(())
}

fn eval_world_model(stem: &Path, cohort_path: &Path, data_dir: &Path, results: &Path) -> Result<()> {
    let model = WorldModel::load(stem).with_context(|| format!("loading {} (train it with `sepsis train world-model`)", stem.display()))?;
    let cohort = read_cohort_file(cohort_path)?;
    let env = IcuSepsis::load(data_dir)?;
    let started = std::time::Instant::now();
    let support = load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?;
    let report = evaluate_world_model(&model, &cohort, Some(&env), Some(&support), 7)?;
    let body = world_model_markdown(&report, &stem.display().to_string());
    print!("{body}");
    let text = format!(
        "## Clinical World Model\n\nWritten by `sepsis eval world-model` on `{}` ({} members).\n\n{body}",
        cohort_path.display(),
        model.members()
    );
    write_section(results, "world-model", &text).with_context(|| format!("writing {}", results.display()))?;
    eprintln!("wrote {} ({:.0} s)", results.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn policy_table(args: PolicyTableArgs) -> Result<()> {
    let env = load_env(&args.env)?;
    let table = named_policy(&env, &args.policy, &args.env.baselines_dir, &args.env.world_model, &args.env.support, args.env.experiment())?.table;
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    table.write_csv(std::io::BufWriter::new(file))?;
    eprintln!("wrote {} ({} states)", args.out.display(), table.rows().len());
    Ok(())
}

/// Read a cohort file; any problem stops the command with the full report.
fn read_cohort_file(path: &Path) -> Result<Cohort> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {} (run `make data` to create the ICU-Sepsis cohort)", path.display()))?;
    let (cohort, report) = read_cohort(&path.display().to_string(), std::io::BufReader::new(file));
    if !report.is_clean() {
        for problem in report.problems.iter().take(20) {
            eprintln!("{problem}");
        }
        bail!("{}: {} problems; {} patients set aside", path.display(), report.problems.len(), report.patients_excluded.len());
    }
    if cohort.unknown_outcomes() > 0 {
        bail!("{}: {} patients have outcome \"unknown\"; training and evaluation need every outcome", path.display(), cohort.unknown_outcomes());
    }
    Ok(cohort)
}

fn train_ai_clinician(cohort_path: &Path, config: AiClinicianConfig, min_action_count: Option<usize>, out: &Path) -> Result<()> {
    let cohort = read_cohort_file(cohort_path)?;
    let threshold = sepsis_core::action::support_threshold(cohort.patients.len()) as usize;
    let config = AiClinicianConfig { min_action_count: min_action_count.unwrap_or(threshold), ..config };
    eprintln!("training ai-clinician on {} patients ({} steps): {config:?}", cohort.patients.len(), cohort.steps());
    let model = AiClinician::train(&cohort, config);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_string(&model)?).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} ({} clusters with data)", out.display(), model.support.iter().filter(|&&n| n > 0).count());
    Ok(())
}

fn train_world_model_memory(cohort_path: &Path, support_path: &Path, stem: &Path, min_count: u32) -> Result<()> {
    let cohort = read_cohort_file(cohort_path)?;
    let support = load_ai_clinician(support_path)?;
    let card_path = stem.with_extension("json");
    let mut model = WorldModel::load(stem).with_context(|| format!("loading the world model {}", stem.display()))?;
    let memory = sepsis_core::world_model::memory::fit::fit(&cohort, &support, &model.card, min_count)
        .with_context(|| format!("{} against {}", support_path.display(), card_path.display()))?;
    let transitions: u64 = memory.rows.iter().flat_map(|r| &r.next).map(|&(_, n)| u64::from(n)).sum();
    eprintln!(
        "memory: {} (cluster, action) pairs with at least {min_count} logged transitions, {transitions} of the {} transitions in {}",
        memory.rows.len(),
        cohort.steps(),
        cohort_path.display()
    );
    model.card.memory = Some(memory);
    // Compact: written out with indentation, the memory's arrays alone would be megabytes.
    std::fs::write(&card_path, serde_json::to_string(&model.card)? + "\n").with_context(|| format!("writing {}", card_path.display()))?;
    eprintln!("wrote {}", card_path.display());
    Ok(())
}

fn train_ddqn(args: DdqnArgs) -> Result<()> {
    let train = read_cohort_file(&args.train)?;
    let validation = read_cohort_file(&args.validation)?;
    let config = DdqnConfig { steps: args.steps, seed: args.seed, ..DdqnConfig::default() };
    eprintln!("training ddqn on {} transitions: {config:?}", train.steps());
    let bar = ProgressBar::new(config.steps as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {elapsed} elapsed, eta {eta} {msg}").expect("valid template"));
    let started = std::time::Instant::now();
    let model = Ddqn::train(&train, &validation, config, |p| {
        bar.set_position(p.step as u64);
        bar.set_message(format!("train loss {:.3}, validation TD error {:.3}", p.train_loss, p.validation_td_error.unwrap_or(f64::NAN)));
    })?;
    bar.finish();
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    model.save(&args.out)?;
    eprintln!("wrote {}.safetensors and .json in {:.0} s", args.out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn train_world_model(args: WorldModelArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let mut config: WorldModelConfig = serde_json::from_str(&text).with_context(|| format!("{} is not a world-model configuration", args.config.display()))?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let train = read_cohort_file(&args.train)?;
    let validation = read_cohort_file(&args.validation)?;
    let normaliser = Normaliser::fit(&train);
    let layout = Layout::default();
    let train_windows = Windows::build(&train, &normaliser, &layout, config.window);
    let validation_windows = Windows::build(&validation, &normaliser, &layout, config.window);
    eprintln!("world model: {} training and {} validation windows; {config:?}", train_windows.len(), validation_windows.len());
    let checkpoints = Checkpoints::new(&args.checkpoints)?;
    let chosen: Vec<usize> = args.members.clone().unwrap_or_else(|| (0..config.members).collect());
    if let Some(&m) = chosen.iter().find(|&&m| m >= config.members) {
        bail!("--members {m}: the configuration has members 0 to {}", config.members - 1);
    }
    for &member in &chosen {
        let bar = ProgressBar::new(0)
            .with_style(ProgressStyle::with_template("member {prefix} {bar:30} {pos}/{len} batches, eta {eta} {msg}").expect("valid template"));
        bar.set_prefix(format!("{}/{}", member + 1, config.members));
        let state = train_member(
            member,
            &train_windows,
            &validation_windows,
            &config,
            &checkpoints,
            |epoch, b, batches, loss| {
                bar.set_length(batches as u64);
                bar.set_position(b as u64);
                bar.set_message(format!("epoch {epoch}, train loss {loss:.3}"));
            },
            |log| {
                // Printed outside the bar so it also reaches logs when stderr is not a terminal.
                bar.suspend(|| {
                    eprintln!(
                        "member {} epoch {}: train {:.4}, validation {:.4} (dynamics NLL {:.4}), {:.0} s",
                        log.member + 1, log.epoch, log.train_loss, log.validation_loss, log.validation_dynamics_nll, log.seconds
                    )
                });
                bar.reset();
            },
        )?;
        bar.finish_and_clear();
        eprintln!("member {}: best validation loss {:.4} at epoch {}", member + 1, state.best_validation_loss.unwrap_or(f64::NAN), state.best_epoch);
    }
    let training = match checkpoints.all_finished(config.members) {
        Ok(states) => states,
        Err(unfinished) => {
            eprintln!("members {unfinished:?} (0-based) are still to train; the run that finishes the last one writes {}", args.out.display());
            return Ok(());
        }
    };
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    export(&ModelCard { config, layout, normaliser, training, memory: None }, &checkpoints, &args.out)?;
    eprintln!("wrote {}.safetensors and .json", args.out.display());
    Ok(())
}

fn write_cohort_file(cohort: &Cohort, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_cohort(cohort, std::io::BufWriter::new(file)).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {} ({} patients, {} steps)", path.display(), cohort.patients.len(), cohort.steps());
    Ok(())
}

fn sample_data(data_dir: &Path, episodes: usize, seed: u64, out: &Path, with_split: bool) -> Result<()> {
    let env = IcuSepsis::load(data_dir)?;
    let cohort = sample_cohort(&env, &Baseline::Clinicians.table(&env), episodes, seed);
    write_cohort_file(&cohort, out)?;
    if with_split {
        let parts = split(&cohort, seed);
        for (name, part) in [("train", &parts.train), ("validation", &parts.validation), ("test", &parts.test)] {
            write_cohort_file(part, &out.with_extension(format!("{name}.csv")))?;
        }
    }
    Ok(())
}

fn refresh_manifest(manifest_path: &Path, dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut manifest = Manifest::from_json(&text).with_context(|| format!("in {}", manifest_path.display()))?;
    for file in &mut manifest.files {
        let Ok(bytes) = std::fs::read(dir.join(&file.name)) else { continue };
        let sha256 = sha256_hex(&bytes);
        if file.sha256 != sha256 {
            println!("updated {} ({} bytes)", file.name, bytes.len());
        }
        (file.bytes, file.sha256) = (bytes.len() as u64, sha256);
    }
    std::fs::write(manifest_path, serde_json::to_string_pretty(&manifest)? + "\n")?;
    Ok(())
}

fn check_manifest(manifest_path: &Path, dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::from_json(&text).with_context(|| format!("in {}", manifest_path.display()))?;
    let mut failures = 0;
    for file in &manifest.files {
        let path = dir.join(&file.name);
        let result = std::fs::File::open(&path)
            .with_context(|| format!("opening {}", path.display()))
            .and_then(|mut reader| {
                let mut verifier = Verifier::new(file);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut reader, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    verifier.update(&buf[..n]);
                }
                Ok(verifier.finish()?)
            });
        match result {
            Ok(()) => println!("ok      {} ({} bytes)", file.name, file.bytes),
            Err(e) => {
                failures += 1;
                println!("FAILED  {}: {e:#}", file.name);
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} model files failed verification", manifest.files.len());
    }
    Ok(())
}
