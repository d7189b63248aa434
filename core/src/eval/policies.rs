//! Every policy the scoreboard knows, by name: the untrained baselines and
//! the trained ones, whose small model files ship in `public/models/baselines/`.

use std::path::{Path, PathBuf};

use crate::baselines::ai_clinician::AiClinician;
use crate::env::icu_sepsis::IcuSepsis;
use crate::policy::{Baseline, PolicyTable};

/// Where trained baselines are kept, relative to the repository root.
pub const BASELINES_DIR: &str = "public/models/baselines";
pub const AI_CLINICIAN: &str = "ai-clinician";
pub const DDQN: &str = "ddqn";
pub const WM_MPC: &str = "wm-mpc";
/// The world model the planner consults, relative to the repository root.
pub const WORLD_MODEL: &str = "public/models/world-model";

/// Scoreboard order.
pub const POLICY_NAMES: [&str; 7] = ["random", "clinicians", "no-treatment", "optimal", AI_CLINICIAN, DDQN, WM_MPC];

pub struct NamedPolicy {
    pub name: String,
    pub table: PolicyTable,
    /// Reads the true MDP: an upper bound, not a deployable policy.
    pub oracle: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("unknown policy {0:?}; known policies: {known}", known = POLICY_NAMES.join(", "))]
    Unknown(String),
    #[error("{path}: {message} (train it with `sepsis train {name}`)")]
    Model { name: String, path: PathBuf, message: String },
}

pub fn model_path(baselines_dir: &Path, name: &str) -> PathBuf {
    baselines_dir.join(format!("{name}.json"))
}

/// The trained AI Clinician (its clusters and logged action counts are also
/// the planner's support).
pub fn load_ai_clinician(baselines_dir: &Path) -> Result<AiClinician, LookupError> {
    let path = model_path(baselines_dir, AI_CLINICIAN);
    let model_error = |message: String| LookupError::Model { name: AI_CLINICIAN.into(), path: path.clone(), message };
    let text = std::fs::read_to_string(&path).map_err(|e| model_error(e.to_string()))?;
    let model: AiClinician = serde_json::from_str(&text).map_err(|e| model_error(e.to_string()))?;
    if model.action_counts.is_empty() {
        return Err(model_error("the file predates logged action counts".into()));
    }
    Ok(model)
}

pub fn named_policy(env: &IcuSepsis, name: &str, baselines_dir: &Path) -> Result<NamedPolicy, LookupError> {
    if let Some(baseline) = Baseline::from_name(name) {
        return Ok(NamedPolicy { name: name.into(), table: baseline.table(env), oracle: baseline == Baseline::Optimal });
    }
    match name {
        AI_CLINICIAN => Ok(NamedPolicy { name: name.into(), table: load_ai_clinician(baselines_dir)?.policy_table(env), oracle: false }),
        #[cfg(feature = "ml")]
        DDQN => {
            let stem = baselines_dir.join(name);
            let model_error = |message: String| LookupError::Model { name: name.into(), path: stem.with_extension("safetensors"), message };
            let model = crate::baselines::ddqn::Ddqn::load(&stem).map_err(|e| model_error(e.to_string()))?;
            Ok(NamedPolicy { name: name.into(), table: model.policy_table(env).map_err(|e| model_error(e.to_string()))?, oracle: false })
        }
        #[cfg(feature = "ml")]
        WM_MPC => {
            let stem = Path::new(WORLD_MODEL);
            let model_error = |message: String| LookupError::Model { name: "world-model".into(), path: stem.with_extension("safetensors"), message };
            let model = crate::world_model::WorldModel::load(stem).map_err(|e| model_error(e.to_string()))?;
            let support = load_ai_clinician(baselines_dir)?;
            let table = crate::planner::icu_sepsis::policy_table(&model, &support, env, &crate::planner::MpcConfig::default())
                .map_err(|e| model_error(e.to_string()))?;
            Ok(NamedPolicy { name: name.into(), table, oracle: false })
        }
        _ => Err(LookupError::Unknown(name.into())),
    }
}
