//! Every policy the scoreboard knows, by name: the untrained baselines and
//! the trained ones, whose small model files ship in `public/models/baselines/`
//! (the AI Clinician in `public/models/`: the app's worker uses its clusters).

use std::path::{Path, PathBuf};

#[cfg(all(feature = "llm", feature = "eval"))]
use crate::agent::runtime::Decoding;
use crate::baselines::ai_clinician::AiClinician;
use crate::env::icu_sepsis::IcuSepsis;
use crate::policy::{Baseline, PolicyTable};

/// Where trained baselines are kept, relative to the repository root.
pub const BASELINES_DIR: &str = "public/models/baselines";
/// The AI Clinician: its clusters and logged action counts are also the
/// planner's support and the cohort report's states, in the CLI and the app.
pub const AI_CLINICIAN_MODEL: &str = "public/models/ai-clinician.json";
pub const AI_CLINICIAN: &str = "ai-clinician";
pub const DDQN: &str = "ddqn";
pub const WM_MPC: &str = "wm-mpc";
pub const LLM_ZERO_SHOT: &str = "llm-zero-shot";
pub const LLM_ZERO_SHOT_WM: &str = "llm-zero-shot-wm";
/// The agent after curriculum stage 1 alone (patient dynamics: it has
/// learnt to write the next state, not the loop), with the world model.
pub const AGENT_STAGE1: &str = "agent-stage1";
/// Stage 2 trained on top of stage 1 (`configs/agent-stage12.json`), with
/// the world model.
pub const AGENT_STAGE12: &str = "agent-stage12";
/// The agent after behaviour cloning of the wm-mpc teacher (curriculum
/// stage 2), with the world model as its simulate tool, and without it.
pub const AGENT_BC: &str = "agent-bc";
pub const AGENT_BC_NO_SIM: &str = "agent-bc-no-sim";
/// All three stages (GRPO in the world model after stages 1 and 2), with
/// the world model, and with the simulate tool removed at inference.
pub const AGENT: &str = "agent";
pub const AGENT_NO_SIM: &str = "agent-no-sim";
/// The stage-1 adapter (`sepsis train agent --stage dynamics`).
pub const AGENT_STAGE1_ADAPTER: &str = "public/models/agent-stage1.safetensors";
/// Stages 1 then 2 (`sepsis train agent --stage bc --config configs/agent-stage12.json`).
pub const AGENT_STAGE12_ADAPTER: &str = "public/models/agent-stage12.safetensors";
/// The stage-3 adapter (`sepsis train agent --stage rl`), the one the app
/// recommends with (the manifest lists it; `worker/src/agent.rs`).
pub const AGENT_ADAPTER: &str = "public/models/agent.safetensors";
/// Stage 2 alone (`sepsis train agent --stage bc`): the app's adapter until
/// 2026-11-28, kept for its scoreboard rows.
pub const AGENT_BC_ADAPTER: &str = "public/models/agent-bc.safetensors";

/// An LLM row of the scoreboard: the adapter on the base model (none: the
/// untrained model) and whether the world model answers its simulate calls.
#[cfg(all(feature = "llm", feature = "eval"))]
pub struct AgentRow {
    pub name: &'static str,
    /// The adapter's file and the stage that trains it.
    pub adapter: Option<(&'static str, &'static str)>,
    pub simulates: bool,
}

#[cfg(all(feature = "llm", feature = "eval"))]
const AGENT_ROWS: [AgentRow; 8] = [
    AgentRow { name: LLM_ZERO_SHOT, adapter: None, simulates: false },
    AgentRow { name: LLM_ZERO_SHOT_WM, adapter: None, simulates: true },
    AgentRow { name: AGENT_STAGE1, adapter: Some((AGENT_STAGE1_ADAPTER, "dynamics")), simulates: true },
    AgentRow { name: AGENT_STAGE12, adapter: Some((AGENT_STAGE12_ADAPTER, "bc")), simulates: true },
    AgentRow { name: AGENT_BC_NO_SIM, adapter: Some((AGENT_BC_ADAPTER, "bc")), simulates: false },
    AgentRow { name: AGENT_BC, adapter: Some((AGENT_BC_ADAPTER, "bc")), simulates: true },
    AgentRow { name: AGENT_NO_SIM, adapter: Some((AGENT_ADAPTER, "rl")), simulates: false },
    AgentRow { name: AGENT, adapter: Some((AGENT_ADAPTER, "rl")), simulates: true },
];

/// The LLM row called `name` (`llm-zero-shot`, `agent`, ...): what the
/// scoreboard decides with, and what `sepsis recommend --agent NAME` runs.
#[cfg(all(feature = "llm", feature = "eval"))]
pub fn agent_row(name: &str) -> Option<&'static AgentRow> {
    AGENT_ROWS.iter().find(|row| row.name == name)
}

/// The agent's LLM (`make fetch` converts it), relative to the repository root.
pub const LLM_MODEL: &str = ".cache/models/SmolLM2-135M-Instruct.Q8_0.gguf";
/// Where the agent rows keep their decisions: resumable, and tracked in the
/// repository, because the eight LLM rows take about three hours of this
/// machine's CPU to decide; with the records `make eval` re-decides only
/// what a changed model, prompt or world model asks for, on any machine.
pub const DECISIONS_DIR: &str = "docs/agent-decisions";
/// Where an experiment's adapter (`sepsis eval --adapter FILE`) keeps its
/// decisions: one file per row and adapter, untracked (`.cache/` is ignored), so
/// scoring a candidate resumes after an interruption and never rewrites the
/// scoreboard's records.
pub const EXPERIMENT_DECISIONS_DIR: &str = ".cache/experiments/agent-decisions";
/// The world model the planner consults, relative to the repository root.
pub const WORLD_MODEL: &str = "public/models/world-model";

/// Scoreboard order.
pub const POLICY_NAMES: [&str; 15] = [
    "random",
    "clinicians",
    "no-treatment",
    "optimal",
    AI_CLINICIAN,
    DDQN,
    WM_MPC,
    LLM_ZERO_SHOT,
    LLM_ZERO_SHOT_WM,
    AGENT_STAGE1,
    AGENT_STAGE12,
    AGENT_BC_NO_SIM,
    AGENT_BC,
    AGENT_NO_SIM,
    AGENT,
];

pub struct NamedPolicy {
    pub name: String,
    pub table: PolicyTable,
    /// Reads the true MDP: an upper bound, not a deployable policy.
    pub oracle: bool,
    /// How an LLM agent behaved (agent rows only).
    pub agent: Option<crate::eval::scoreboard::AgentStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("unknown policy {0:?}; known policies: {known}", known = POLICY_NAMES.join(", "))]
    Unknown(String),
    #[error("{path}: {message} (train it with `sepsis train {name}`)")]
    Model { name: String, path: PathBuf, message: String },
    #[error("--adapter replaces the adapter of an LLM row that has one; {0:?} has none (rows with one: {rows})", rows = llm_row_names(true))]
    NoAdapter(String),
    #[error("--decoding changes how an LLM row decides; {0:?} is not one (LLM rows: {rows})", rows = llm_row_names(false))]
    NotAnLlmRow(String),
}

/// What an experiment changes in an LLM row (`sepsis eval --adapter FILE
/// --decoding JSON`); the default changes nothing and is the scoreboard.
/// An experiment's decisions are recorded under `EXPERIMENT_DECISIONS_DIR`,
/// never beside the scoreboard's, so scoring a candidate touches nothing
/// that `results.md` is built from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Experiment<'a> {
    /// Replaces the row's shipped adapter.
    pub adapter: Option<&'a Path>,
    /// Replaces `Decoding::DEFAULT`.
    #[cfg(feature = "llm")]
    pub decoding: Option<crate::agent::runtime::Decoding>,
}

impl Experiment<'_> {
    /// Whether this changes anything.
    pub fn is_some(&self) -> bool {
        #[cfg(feature = "llm")]
        if self.decoding.is_some() {
            return true;
        }
        self.adapter.is_some()
    }
}

/// The LLM rows (`with_adapter`: only those that decide with a trained
/// adapter), for error messages.
#[cfg_attr(not(all(feature = "llm", feature = "eval")), allow(unused_variables))]
fn llm_row_names(with_adapter: bool) -> String {
    #[cfg(all(feature = "llm", feature = "eval"))]
    return AGENT_ROWS.iter().filter(|row| !with_adapter || row.adapter.is_some()).map(|row| row.name).collect::<Vec<_>>().join(", ");
    #[cfg(not(all(feature = "llm", feature = "eval")))]
    return "none in this build".into();
}

/// The trained AI Clinician (`AI_CLINICIAN_MODEL`).
pub fn load_ai_clinician(path: &Path) -> Result<AiClinician, LookupError> {
    let model_error = |message: String| LookupError::Model { name: AI_CLINICIAN.into(), path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| model_error(e.to_string()))?;
    let model: AiClinician = serde_json::from_str(&text).map_err(|e| model_error(e.to_string()))?;
    if model.action_counts.is_empty() {
        return Err(model_error("the file predates logged action counts".into()));
    }
    Ok(model)
}

/// A scoreboard row by name. `baselines_dir` holds the DDQN's files;
/// `world_model` is the stem of the world model that `wm-mpc` and the
/// simulating agent rows consult (`WORLD_MODEL` unless an experiment says
/// otherwise); `support` the AI Clinician's file, whose clusters and counts
/// are also `wm-mpc`'s support (`AI_CLINICIAN_MODEL` unless an experiment
/// says otherwise). Without the `ml` feature the first two are not read: the
/// rows they serve need candle. `experiment` changes an LLM row's adapter or
/// decoding ([`Experiment`]).
#[cfg_attr(not(feature = "ml"), allow(unused_variables))]
pub fn named_policy(env: &IcuSepsis, name: &str, baselines_dir: &Path, world_model: &Path, support: &Path, experiment: Experiment) -> Result<NamedPolicy, LookupError> {
    if experiment.is_some() {
        #[cfg(all(feature = "llm", feature = "eval"))]
        if let Some(row) = agent_row(name) {
            let adapter = match (experiment.adapter, row.adapter) {
                (Some(_), None) => return Err(LookupError::NoAdapter(name.into())),
                (Some(file), Some((_, stage))) => Some((file, stage)),
                (None, shipped) => shipped.map(|(path, stage)| (Path::new(path), stage)),
            };
            return llm_row(env, row, adapter, world_model, Records::Experiment, experiment.decoding.unwrap_or(Decoding::DEFAULT));
        }
        return Err(match experiment.adapter {
            Some(_) => LookupError::NoAdapter(name.into()),
            None => LookupError::NotAnLlmRow(name.into()),
        });
    }
    if let Some(baseline) = Baseline::from_name(name) {
        return Ok(NamedPolicy { name: name.into(), table: baseline.table(env), oracle: baseline == Baseline::Optimal, agent: None });
    }
    match name {
        AI_CLINICIAN => Ok(NamedPolicy { name: name.into(), table: load_ai_clinician(support)?.policy_table(env), oracle: false, agent: None }),
        #[cfg(feature = "ml")]
        DDQN => {
            let stem = baselines_dir.join(name);
            let model_error = |message: String| LookupError::Model { name: name.into(), path: stem.with_extension("safetensors"), message };
            let model = crate::baselines::ddqn::Ddqn::load(&stem).map_err(|e| model_error(e.to_string()))?;
            Ok(NamedPolicy { name: name.into(), table: model.policy_table(env).map_err(|e| model_error(e.to_string()))?, oracle: false, agent: None })
        }
        #[cfg(feature = "ml")]
        WM_MPC => {
            let stem = world_model;
            let model_error = |message: String| LookupError::Model { name: "world-model".into(), path: stem.with_extension("safetensors"), message };
            let model = crate::world_model::WorldModel::load(stem).map_err(|e| model_error(e.to_string()))?;
            let support = load_ai_clinician(support)?;
            let table = crate::planner::icu_sepsis::policy_table(&model, &support, env, &crate::planner::MpcConfig::default())
                .map_err(|e| model_error(e.to_string()))?;
            Ok(NamedPolicy { name: name.into(), table, oracle: false, agent: None })
        }
        _ => {
            #[cfg(all(feature = "llm", feature = "eval"))]
            if let Some(row) = agent_row(name) {
                let adapter = row.adapter.map(|(path, stage)| (Path::new(path), stage));
                return llm_row(env, row, adapter, world_model, Records::Scoreboard, Decoding::DEFAULT);
            }
            Err(LookupError::Unknown(name.into()))
        }
    }
}

/// A LoRA adapter file (trained by `sepsis train agent --stage STAGE`) and
/// the SHA-256 of its bytes.
#[cfg(feature = "llm")]
pub fn load_adapter(path: impl AsRef<Path>, stage: &str) -> Result<(crate::llm::model::LoraAdapter, String), LookupError> {
    let path = path.as_ref();
    let adapter_error = |message: String| LookupError::Model { name: format!("agent --stage {stage}"), path: path.into(), message };
    let bytes = std::fs::read(path).map_err(|e| adapter_error(e.to_string()))?;
    let adapter = crate::llm::model::LoraAdapter::from_safetensors(&bytes).map_err(|e| adapter_error(e.to_string()))?;
    Ok((adapter, crate::manifest::sha256_hex(&bytes)))
}

/// Where an LLM row's decisions are recorded.
#[cfg(all(feature = "llm", feature = "eval"))]
enum Records {
    /// `DECISIONS_DIR/ROW.jsonl`: the shipped adapter's, behind `results.md`.
    Scoreboard,
    /// `EXPERIMENT_DECISIONS_DIR/ROW-SHA[-decoding-DSHA].jsonl`: an
    /// experiment's, by the first 12 hex digits of its adapter's SHA-256
    /// and, for a decoding other than the default, the first 8 of its JSON's.
    Experiment,
}

/// Where an experiment on row `name` records its decisions: by its adapter's
/// SHA-256 (`adapter_sha256`; none: the base model) and, when it is not the
/// default, its decoding's. An adapter tried with the default decoding keeps
/// the name it had before decodings could be tried.
#[cfg(all(feature = "llm", feature = "eval"))]
fn experiment_records(name: &str, adapter_sha256: Option<&str>, decoding: Decoding) -> PathBuf {
    let adapter_tag = adapter_sha256.map_or("no-adapter", |sha256| &sha256[..12]);
    let decoding_tag = match decoding == Decoding::DEFAULT {
        true => String::new(),
        false => format!("-decoding-{}", &crate::manifest::sha256_hex(serde_json::to_string(&decoding).expect("plain data").as_bytes())[..8]),
    };
    Path::new(EXPERIMENT_DECISIONS_DIR).join(format!("{name}-{adapter_tag}{decoding_tag}.jsonl"))
}

/// An LLM agent row decided with `adapter` (file and stage; none: the base
/// model): its decision in every state, from the recorded ones where they
/// exist.
#[cfg(all(feature = "llm", feature = "eval"))]
fn llm_row(env: &IcuSepsis, row: &AgentRow, adapter: Option<(&Path, &str)>, world_model_stem: &Path, records: Records, decoding: Decoding) -> Result<NamedPolicy, LookupError> {
    let name = row.name;
    // The adapter first: a wrong file is reported before the base model loads.
    let adapter = adapter.map(|(path, stage)| load_adapter(path, stage).map(|(lora, sha256)| (path, stage, lora, sha256))).transpose()?;
    let llm_error = |message: String| LookupError::Model { name: "llm".into(), path: PathBuf::from(LLM_MODEL), message };
    let file = std::fs::File::open(LLM_MODEL).map_err(|e| llm_error(format!("{e} (run `make fetch`)")))?;
    let size = file.metadata().map_err(|e| llm_error(e.to_string()))?.len();
    let mut llm = crate::llm::generate::Llm::from_gguf(&mut std::io::BufReader::new(file)).map_err(|e| llm_error(e.to_string()))?;
    let mut identity = format!("{LLM_MODEL} {size} bytes, no adapter");
    let mut observation = crate::agent::observation::ObservationFormat::Course;
    let cache = match records {
        Records::Scoreboard => Path::new(DECISIONS_DIR).join(format!("{name}.jsonl")),
        Records::Experiment => experiment_records(name, adapter.as_ref().map(|(_, _, _, sha256)| sha256.as_str()), decoding),
    };
    if let Some((path, stage, lora, sha256)) = adapter {
        observation = lora.observation;
        llm = llm.with_adapter(&lora).map_err(|e| LookupError::Model { name: format!("agent --stage {stage}"), path: path.into(), message: e.to_string() })?;
        // The decision cache is keyed by the adapter's contents.
        identity = format!("{LLM_MODEL} {size} bytes, adapter sha256 {sha256}");
    }
    let world_model = if row.simulates {
        let stem = world_model_stem;
        let weights = stem.with_extension("safetensors");
        let wm_error = |message: String| LookupError::Model { name: "world-model".into(), path: weights.clone(), message };
        // What the simulations say is part of every decision: a retrained
        // world model must not reuse the old model's decisions.
        let bytes = std::fs::read(&weights).map_err(|e| wm_error(e.to_string()))?;
        let model = crate::world_model::WorldModel::load(stem).map_err(|e| wm_error(e.to_string()))?;
        let simulator = crate::agent::runtime::WorldModelSimulator::identity(&model, &bytes).map_err(|e| wm_error(e.to_string()))?;
        identity = format!("{identity}, {simulator}");
        Some(model)
    } else {
        None
    };
    let practice = match observation {
        crate::agent::observation::ObservationFormat::Course => None,
        crate::agent::observation::ObservationFormat::CourseAndLoggedPractice => Some(load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?),
    };
    if let Some(folder) = cache.parent() {
        std::fs::create_dir_all(folder).map_err(|e| llm_error(format!("creating {}: {e}", folder.display())))?;
    }
    eprintln!("{name}: one decision per state, cached in {}", cache.display());
    let (table, stats) = crate::eval::agent_policy::llm_policy_table(env, &std::sync::Arc::new(llm), &identity, world_model.as_ref(), practice.as_ref(), decoding, &cache)
        .map_err(|e| llm_error(e.to_string()))?;
    Ok(NamedPolicy { name: name.into(), table, oracle: false, agent: Some(stats) })
}

#[cfg(all(test, feature = "llm", feature = "eval"))]
mod tests {
    use super::*;

    fn env() -> IcuSepsis {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        IcuSepsis::load(&root.join(crate::env::icu_sepsis::DEFAULT_DIR)).expect("the ICU-Sepsis files (make fetch)")
    }

    fn lookup(name: &str, adapter: &Path) -> Result<NamedPolicy, LookupError> {
        named_policy(&env(), name, Path::new(BASELINES_DIR), Path::new(WORLD_MODEL), Path::new(AI_CLINICIAN_MODEL), Experiment { adapter: Some(adapter), ..Experiment::default() })
    }

    fn three_candidates() -> Decoding {
        let Decoding::Constrained { thought_tokens, max_simulate_calls, faithful, supported_proposals, prescribes_best, .. } = Decoding::DEFAULT else { unreachable!("the default is constrained") };
        Decoding::Constrained { thought_tokens, max_simulate_calls, faithful, full_proposals: true, supported_proposals, prescribes_best }
    }

    #[test]
    fn an_experiments_decoding_applies_only_to_llm_rows() {
        let experiment = Experiment { decoding: Some(three_candidates()), ..Experiment::default() };
        for name in ["clinicians", AI_CLINICIAN, WM_MPC] {
            match named_policy(&env(), name, Path::new(BASELINES_DIR), Path::new(WORLD_MODEL), Path::new(AI_CLINICIAN_MODEL), experiment) {
                Err(error @ LookupError::NotAnLlmRow(_)) => assert!(error.to_string().contains(LLM_ZERO_SHOT), "{error}"),
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name} took a decoding"),
            }
        }
    }

    #[test]
    fn each_experiment_records_its_decisions_apart() {
        let sha = "9c3f3e7c39bd0123456789abcdef";
        let adapter_only = experiment_records(AGENT, Some(sha), Decoding::DEFAULT);
        assert_eq!(adapter_only, Path::new(EXPERIMENT_DECISIONS_DIR).join("agent-9c3f3e7c39bd.jsonl"));
        let decoded = experiment_records(AGENT, Some(sha), three_candidates());
        assert!(decoded.starts_with(EXPERIMENT_DECISIONS_DIR), "{}", decoded.display());
        assert_ne!(decoded, adapter_only);
        assert_ne!(decoded, experiment_records(AGENT, None, three_candidates()));
        assert_ne!(decoded, experiment_records(AGENT_BC, Some(sha), three_candidates()));
    }

    #[test]
    fn an_experiments_adapter_applies_only_to_llm_rows_that_have_one() {
        for name in ["clinicians", AI_CLINICIAN, LLM_ZERO_SHOT] {
            match lookup(name, Path::new("candidate.safetensors")) {
                Err(error @ LookupError::NoAdapter(_)) => assert!(error.to_string().contains(AGENT), "{error}"),
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name} took an adapter"),
            }
        }
    }

    #[test]
    fn an_experiments_adapter_is_read_in_place_of_the_shipped_one() {
        let candidate = Path::new("/nonexistent/candidate.safetensors");
        match lookup(AGENT_STAGE12, candidate) {
            Err(LookupError::Model { name, path, .. }) => {
                assert_eq!(path, candidate);
                assert_eq!(name, "agent --stage bc");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("decided without the candidate adapter"),
        }
    }
}
