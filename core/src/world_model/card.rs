//! What ships beside the world model's weights (`world-model.json`): the
//! configuration, the feature layout and normaliser the inputs need, and the
//! training history of every member.

use serde::{Deserialize, Serialize};

use super::data::Layout;
use super::memory::TransitionMemory;
use super::model::WorldModelConfig;
use crate::cohort::normaliser::Normaliser;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub member: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_dynamics_nll: f64,
    pub seconds: f64,
}

/// A member's progress, saved beside its weights after every epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub epochs_done: usize,
    pub best_validation_loss: Option<f64>,
    /// Absent from cards that keep each part's best epoch apart (the git
    /// branch `experiment/wm-per-part-selection`), which this reads too.
    #[serde(default)]
    pub best_epoch: usize,
    pub finished: bool,
    pub history: Vec<EpochLog>,
}

/// What ships beside the weights (`world-model.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub config: WorldModelConfig,
    pub layout: Layout,
    pub normaliser: Normaliser,
    pub training: Vec<MemberState>,
    /// The logged transitions the first simulated step is drawn from where
    /// they are plentiful (`memory.rs`); added by `sepsis train
    /// world-model-memory`. A card without one simulates with the GRU alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<TransitionMemory>,
}

