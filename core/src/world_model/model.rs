//! One ensemble member: a 2-layer GRU over the window with a mixture head
//! for every per-step feature (z units): the probability that the value
//! stays exactly as it is, and a Gaussian (mean, log sigma) for the value
//! when it changes (docs/world-model.md says why); and a separate
//! 1-layer GRU with an outcome head (logit of death by the end of the stay).
//! The outcome network is separate, as in the SepsisAgent paper, because a
//! shared one let the dynamics likelihood drown the outcome signal
//! (docs/world-model.md). Plain candle modules built from a `VarBuilder`, as
//! candle-transformers' models are.

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::rnn::{gru, GRUConfig, GRUState, GRU, RNN};
use candle_nn::{linear, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

/// Bounds on the predicted log sigma (z units): e^-5 ~ 0.007 to e^1.5 ~ 4.5.
pub const LOG_SIGMA_RANGE: (f64, f64) = (-5.0, 1.5);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldModelConfig {
    /// Steps the model reads: 6 of history (the paper's 24 h) plus up to 6 simulated.
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
    /// Train each member on its own bootstrap sample of the training
    /// patients (as many drawn with replacement), so that the members can
    /// disagree where the data is thin; otherwise every member sees every
    /// window and only seeds differ.
    #[serde(default)]
    pub bootstrap: bool,
}

impl Default for WorldModelConfig {
    fn default() -> Self {
        Self { window: 12, hidden: 128, members: 5, epochs: 20, batch: 256, learning_rate: 1e-3, patience: 3, outcome_hidden: 64, outcome_weight: 1.0, seed: 4, bootstrap: false }
    }
}

pub struct Prediction {
    /// `batch x dynamic`: logit of "the value stays exactly as it is now".
    pub stay_logit: Tensor,
    /// `batch x dynamic`, z units: the Gaussian of the value if it changes.
    pub mean: Tensor,
    pub log_sigma: Tensor,
    /// `batch`, logit of death by the end of the stay.
    pub outcome_logit: Tensor,
}

/// The recurrent state of one member for a batch: it carries a simulation
/// forward one step at a time.
#[derive(Clone)]
pub struct MemberState {
    h1: GRUState,
    h2: GRUState,
    outcome: GRUState,
}

pub struct Member {
    gru1: GRU,
    gru2: GRU,
    stay_logit: Linear,
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
            stay_logit: linear(hidden, dynamic_dim, vb.pp("stay_logit"))?,
            mean: linear(hidden, dynamic_dim, vb.pp("mean"))?,
            log_sigma: linear(hidden, dynamic_dim, vb.pp("log_sigma"))?,
            outcome_gru: gru(input_dim, outcome_hidden, GRUConfig::default(), vb.pp("outcome_gru"))?,
            outcome: linear(outcome_hidden, 1, vb.pp("outcome"))?,
        })
    }

    pub fn zero_state(&self, batch: usize) -> Result<MemberState> {
        Ok(MemberState { h1: self.gru1.zero_state(batch)?, h2: self.gru2.zero_state(batch)?, outcome: self.outcome_gru.zero_state(batch)? })
    }

    /// Read one step (`batch x input_dim`) into the state.
    pub fn step(&self, x: &Tensor, state: &MemberState) -> Result<MemberState> {
        let h1 = self.gru1.step(x, &state.h1)?;
        let h2 = self.gru2.step(&h1.h, &state.h2)?;
        let outcome = self.outcome_gru.step(x, &state.outcome)?;
        Ok(MemberState { h1, h2, outcome })
    }

    /// The predictions from a state: next-step mixture and outcome logit.
    pub fn heads(&self, state: &MemberState) -> Result<Prediction> {
        let h = &state.h2.h;
        let log_sigma = self.log_sigma.forward(h)?.clamp(LOG_SIGMA_RANGE.0 as f32, LOG_SIGMA_RANGE.1 as f32)?;
        Ok(Prediction { stay_logit: self.stay_logit.forward(h)?, mean: self.mean.forward(h)?, log_sigma, outcome_logit: self.outcome.forward(&state.outcome.h)?.squeeze(1)? })
    }

    /// `inputs`: `batch x window x input_dim`, left-padded with all-zero
    /// steps. Padding steps leave the state untouched (a real step always has
    /// a one-hot action, so it is never all zero): a window is read exactly
    /// as its real steps from a zero state, which is what lets a simulation
    /// carry the state forward one step at a time instead of re-reading the
    /// window every step (docs/world-model.md).
    pub fn forward(&self, inputs: &Tensor) -> Result<Prediction> {
        let (batch, window, _) = inputs.dims3()?;
        let mut state = self.zero_state(batch)?;
        for t in 0..window {
            let x = inputs.i((.., t, ..))?.contiguous()?;
            let real = x.abs()?.sum_keepdim(1)?.gt(0f32)?;
            let next = self.step(&x, &state)?;
            let keep = |new: &GRUState, old: &GRUState| -> Result<GRUState> {
                Ok(GRUState { h: real.broadcast_as(new.h.shape())?.where_cond(&new.h, &old.h)? })
            };
            state = MemberState { h1: keep(&next.h1, &state.h1)?, h2: keep(&next.h2, &state.h2)?, outcome: keep(&next.outcome, &state.outcome)? };
        }
        self.heads(&state)
    }
}

/// What a window is trained to predict, `batch x dynamic` unless noted.
pub struct Targets {
    /// Next step's values (z units; 0 where missing) and 1 where observed.
    pub next: Tensor,
    pub next_mask: Tensor,
    /// The current step's values and mask: a value can only "stay" if it is
    /// observed now.
    pub current: Tensor,
    pub current_mask: Tensor,
    /// `batch`: 1 if the patient died by the end of the stay.
    pub died: Tensor,
}

/// Values closer than this in z units count as unchanged: both sides are
/// the same clinical number normalised the same way, so a stay is exact.
pub const STAY_TOLERANCE: f32 = 1e-6;

/// Negative log-likelihood of the mixture over observed next values (mean
/// per observed value), plus the outcome's binary cross-entropy. Returns
/// (total, dynamics). The mixture is a hurdle model: a value observed now
/// stays with probability p = sigmoid(stay_logit) (loss -log p) or changes
/// (-log(1 - p) plus the Gaussian NLL of the new value); a value missing now
/// can only be drawn from the Gaussian.
pub fn loss(prediction: &Prediction, targets: &Targets, outcome_weight: f64) -> Result<(Tensor, Tensor)> {
    let Targets { next, next_mask, current, current_mask, died } = targets;
    let z = ((next - &prediction.mean)? * prediction.log_sigma.neg()?.exp()?)?;
    let gaussian = (&prediction.log_sigma + (z.sqr()? * 0.5)?)?;
    let stayed = ((next - current)?.abs()?.lt(STAY_TOLERANCE)?.to_dtype(next.dtype())? * current_mask)?;
    let changed_if_could = (current_mask - &stayed)?;
    let l = &prediction.stay_logit;
    let stay_term = ((softplus(&l.neg()?)? * &stayed)? + (softplus(l)? * &changed_if_could)?)?;
    let per_value = (stay_term + (gaussian * stayed.affine(-1.0, 1.0)?)?)?;
    let observed = next_mask.sum_all()?.maximum(1f32)?;
    let dynamics = (per_value * next_mask)?.sum_all()?.div(&observed)?;
    let x = &prediction.outcome_logit;
    let outcome = (softplus(x)? - (died * x)?)?.mean_all()?;
    let total = (&dynamics + (&outcome * outcome_weight)?)?;
    Ok((total, dynamics))
}

/// log(1 + e^x), written from stable primitives: relu(x) + log(1 + e^-|x|).
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_mixture_loss_is_the_hurdle_likelihood_of_each_value() {
        let t = |v: &[f32]| Tensor::from_slice(v, (1, v.len()), &Device::Cpu).unwrap();
        let prediction = Prediction {
            stay_logit: t(&[0.3, -0.7, 2.0]),
            mean: t(&[0.0, 0.4, 1.0]),
            log_sigma: t(&[0.0, -0.5, 0.2]),
            outcome_logit: Tensor::new(&[0.8f32], &Device::Cpu).unwrap(),
        };
        // Feature 0 stays at 0.5; feature 1 moves from 0 to 1; feature 2 is
        // missing now (so it cannot stay) and observed next at 2.
        let targets = Targets {
            next: t(&[0.5, 1.0, 2.0]),
            next_mask: t(&[1.0, 1.0, 1.0]),
            current: t(&[0.5, 0.0, 0.0]),
            current_mask: t(&[1.0, 1.0, 0.0]),
            died: Tensor::new(&[1.0f32], &Device::Cpu).unwrap(),
        };
        let softplus = |x: f64| (1.0 + x.exp()).ln();
        let gaussian = |x: f64, mean: f64, log_sigma: f64| log_sigma + 0.5 * ((x - mean) / log_sigma.exp()).powi(2);
        let stays = softplus(-0.3);
        let moves = softplus(-0.7) + gaussian(1.0, 0.4, -0.5);
        let missing_now = gaussian(2.0, 1.0, 0.2);
        let dynamics = (stays + moves + missing_now) / 3.0;
        let outcome = softplus(0.8) - 0.8;
        let (total, d) = loss(&prediction, &targets, 2.0).unwrap();
        assert!((d.to_scalar::<f32>().unwrap() as f64 - dynamics).abs() < 1e-5);
        assert!((total.to_scalar::<f32>().unwrap() as f64 - (dynamics + 2.0 * outcome)).abs() < 1e-5);
    }
}
