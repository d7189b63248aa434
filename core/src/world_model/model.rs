//! One ensemble member: a 2-layer GRU over the window with a Gaussian head
//! (mean and log sigma of every per-step feature, z units), and a separate
//! 1-layer GRU with an outcome head (logit of death by the end of the stay).
//! The outcome network is separate, as in the SepsisAgent paper, because a
//! shared one let the dynamics likelihood drown the outcome signal
//! (docs/world-model.md). Plain candle modules built from a `VarBuilder`, as
//! candle-transformers' models are.

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::rnn::{gru, GRUConfig, GRU, RNN};
use candle_nn::{linear, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

/// Bounds on the predicted log sigma (z units): e^-5 ~ 0.007 to e^1.5 ~ 4.5.
pub const LOG_SIGMA_RANGE: (f64, f64) = (-5.0, 1.5);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldModelConfig {
    /// Steps of history the model reads (paper: 6 = 24 h).
    pub window: usize,
    pub hidden: usize,
    pub members: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// Stop a member after this many epochs without a better validation loss.
    pub patience: usize,
    /// Hidden size of the outcome network's GRU.
    pub outcome_hidden: usize,
    /// Weight of the outcome loss against the dynamics loss.
    pub outcome_weight: f64,
    pub seed: u64,
}

impl Default for WorldModelConfig {
    fn default() -> Self {
        Self { window: 6, hidden: 128, members: 5, epochs: 20, batch: 256, learning_rate: 1e-3, patience: 3, outcome_hidden: 64, outcome_weight: 1.0, seed: 4 }
    }
}

pub struct Prediction {
    /// `batch x dynamic`, z units.
    pub mean: Tensor,
    pub log_sigma: Tensor,
    /// `batch`, logit of death by the end of the stay.
    pub outcome_logit: Tensor,
}

pub struct Member {
    gru1: GRU,
    gru2: GRU,
    mean: Linear,
    log_sigma: Linear,
    outcome_gru: GRU,
    outcome: Linear,
}

impl Member {
    pub fn new(input_dim: usize, dynamic_dim: usize, config: &WorldModelConfig, vb: VarBuilder) -> Result<Self> {
        let (hidden, outcome_hidden) = (config.hidden, config.outcome_hidden);
        Ok(Self {
            gru1: gru(input_dim, hidden, GRUConfig::default(), vb.pp("gru1"))?,
            gru2: gru(hidden, hidden, GRUConfig::default(), vb.pp("gru2"))?,
            mean: linear(hidden, dynamic_dim, vb.pp("mean"))?,
            log_sigma: linear(hidden, dynamic_dim, vb.pp("log_sigma"))?,
            outcome_gru: gru(input_dim, outcome_hidden, GRUConfig::default(), vb.pp("outcome_gru"))?,
            outcome: linear(outcome_hidden, 1, vb.pp("outcome"))?,
        })
    }

    /// `inputs`: `batch x window x input_dim`.
    pub fn forward(&self, inputs: &Tensor) -> Result<Prediction> {
        let (_, window, _) = inputs.dims3()?;
        let batch = inputs.dim(0)?;
        let (mut h1, mut h2, mut ho) = (self.gru1.zero_state(batch)?, self.gru2.zero_state(batch)?, self.outcome_gru.zero_state(batch)?);
        for t in 0..window {
            let x = inputs.i((.., t, ..))?.contiguous()?;
            h1 = self.gru1.step(&x, &h1)?;
            h2 = self.gru2.step(&h1.h, &h2)?;
            ho = self.outcome_gru.step(&x, &ho)?;
        }
        let h = h2.h;
        let log_sigma = self.log_sigma.forward(&h)?.clamp(LOG_SIGMA_RANGE.0 as f32, LOG_SIGMA_RANGE.1 as f32)?;
        Ok(Prediction { mean: self.mean.forward(&h)?, log_sigma, outcome_logit: self.outcome.forward(&ho.h)?.squeeze(1)? })
    }
}

/// Gaussian negative log-likelihood over observed next values (mean per
/// observed value), plus the outcome's binary cross-entropy.
pub fn loss(prediction: &Prediction, next: &Tensor, mask: &Tensor, died: &Tensor, outcome_weight: f64) -> Result<(Tensor, Tensor)> {
    let z = ((next - &prediction.mean)? * prediction.log_sigma.neg()?.exp()?)?;
    let per_value = (&prediction.log_sigma + (z.sqr()? * 0.5)?)?;
    let observed = mask.sum_all()?.maximum(1f32)?;
    let dynamics = (per_value * mask)?.sum_all()?.div(&observed)?;
    // BCE with logits, written from stable primitives: softplus(x) - y x.
    let x = &prediction.outcome_logit;
    let softplus = (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let outcome = (softplus - (died * x)?)?.mean_all()?;
    let total = (&dynamics + (&outcome * outcome_weight)?)?;
    Ok((total, dynamics))
}
