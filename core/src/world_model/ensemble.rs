//! The trained ensemble for inference, natively and in the worker: built
//! from the card (JSON) and the weights (safetensors bytes).

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::VarBuilder;

use super::card::ModelCard;
use super::cpu_inference::FastMember;
use super::mixture::{expected_values, Component};
use super::model::{Member, Prediction};
use crate::action::Action;

/// A patient's course as the model reads it: clinical values and the action
/// given at each step, oldest first.
pub type History = Vec<(Vec<Option<f64>>, Action)>;

pub struct WorldModel {
    pub card: ModelCard,
    members: Vec<Member>,
    /// The same weights laid out for the simulation's fast CPU path.
    fast: Vec<FastMember>,
}

impl WorldModel {
    pub fn from_bytes(card_json: &str, safetensors: Vec<u8>) -> Result<Self> {
        let card: ModelCard = serde_json::from_str(card_json).map_err(candle_core::Error::wrap)?;
        let vb = VarBuilder::from_buffered_safetensors(safetensors, DType::F32, &Device::Cpu)?;
        let (input_dim, dynamic_dim) = (card.layout.input_dim(), card.layout.dynamic.len());
        let members = (0..card.config.members)
            .map(|k| Member::new(input_dim, dynamic_dim, &card.config, vb.pp(format!("member{k}"))))
            .collect::<Result<_>>()?;
        let (hidden, outcome_hidden) = (card.config.hidden, card.config.outcome_hidden);
        let fast = (0..card.config.members)
            .map(|k| FastMember::load(vb.pp(format!("member{k}")), input_dim, dynamic_dim, hidden, outcome_hidden))
            .collect::<Result<_>>()?;
        Ok(Self { card, members, fast })
    }

    /// `STEM.json` and `STEM.safetensors`, as `sepsis train world-model` writes them.
    pub fn load(stem: &std::path::Path) -> Result<Self> {
        let card = std::fs::read_to_string(stem.with_extension("json")).map_err(candle_core::Error::wrap)?;
        let weights = std::fs::read(stem.with_extension("safetensors")).map_err(candle_core::Error::wrap)?;
        Self::from_bytes(&card, weights)
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    pub fn member(&self, k: usize) -> &Member {
        &self.members[k]
    }

    pub fn fast_member(&self, k: usize) -> &FastMember {
        &self.fast[k]
    }

    /// The newest window of each history, as one input batch.
    pub fn encode(&self, histories: &[History]) -> Result<Tensor> {
        let (layout, window) = (&self.card.layout, self.card.config.window);
        let mut inputs = Vec::with_capacity(histories.len() * window * layout.input_dim());
        for history in histories {
            let steps: Vec<(&[Option<f64>], Action)> = history.iter().map(|(v, a)| (v.as_slice(), *a)).collect();
            layout.encode_window(&self.card.normaliser, &steps, window, &mut inputs);
        }
        Tensor::from_vec(inputs, (histories.len(), window, layout.input_dim()), &Device::Cpu)
    }

    /// The next step's clinical values from per-step feature values in z
    /// units: per-step features replaced, statics carried over.
    pub fn predicted_values(&self, current: &[Option<f64>], means: &[f32]) -> Vec<Option<f64>> {
        let mut next = current.to_vec();
        for (d, &f) in self.card.layout.dynamic.iter().enumerate() {
            next[f] = Some(self.card.normaliser.value(f, means[d] as f64));
        }
        next
    }

    /// The current values in z units (`None` where missing), in the order of
    /// the per-step features.
    pub fn current_z(&self, current: &[Option<f64>]) -> Vec<Option<f64>> {
        self.card.layout.dynamic.iter().map(|&f| current[f].map(|v| self.card.normaliser.z(f, v))).collect()
    }

    /// One member's expected next clinical values for one row of its heads'
    /// outputs: each value stays with the member's stay probability or moves
    /// to its Gaussian mean ([`Component::expected`]).
    pub fn expected_next(&self, current: &[Option<f64>], stay_logit: &[f32], mean: &[f32], log_sigma: &[f32]) -> Vec<Option<f64>> {
        let z: Vec<f32> = expected_values(&self.current_z(current), stay_logit, mean, log_sigma).into_iter().map(|v| v as f32).collect();
        self.predicted_values(current, &z)
    }

    /// Every member's prediction for a batch of windows (`batch x window x input`).
    pub fn predict(&self, inputs: &Tensor) -> Result<Vec<Prediction>> {
        self.members.iter().map(|m| m.forward(inputs)).collect()
    }
}

/// Per-example summaries of an ensemble's predictions, in z units.
pub struct EnsembleSummary {
    /// `batch x dynamic x members`: each member's forecast of each value.
    pub forecasts: Vec<Vec<Vec<Component>>>,
    /// `batch x dynamic`: the current values the forecasts start from.
    pub current: Vec<Vec<Option<f64>>>,
    /// SD over members of their expected next values, averaged over features.
    pub disagreement: Vec<f32>,
    /// Mean over members of the predicted probability of death.
    pub death: Vec<f32>,
}

/// The ensemble's predictions for the windows `inputs` (`batch x window x
/// input`) that produced them: the current values are the windows' newest
/// step.
pub fn summarise(predictions: &[Prediction], inputs: &Tensor) -> Result<EnsembleSummary> {
    let to_rows = |t: &Tensor| -> Result<Vec<Vec<f32>>> { t.to_vec2() };
    let stays: Vec<Vec<Vec<f32>>> = predictions.iter().map(|p| to_rows(&p.stay_logit)).collect::<Result<_>>()?;
    let means: Vec<Vec<Vec<f32>>> = predictions.iter().map(|p| to_rows(&p.mean)).collect::<Result<_>>()?;
    let log_sigmas: Vec<Vec<Vec<f32>>> = predictions.iter().map(|p| to_rows(&p.log_sigma)).collect::<Result<_>>()?;
    let deaths: Vec<Vec<f32>> =
        predictions.iter().map(|p| candle_nn::ops::sigmoid(&p.outcome_logit)?.to_vec1()).collect::<Result<_>>()?;
    let (batch, window, _) = inputs.dims3()?;
    let newest: Vec<Vec<f32>> = inputs.i((.., window - 1, ..))?.to_vec2()?;
    let (dims, k) = (means[0][0].len(), predictions.len() as f64);
    let mut summary = EnsembleSummary { forecasts: vec![], current: vec![], disagreement: vec![], death: vec![] };
    for b in 0..batch {
        let current: Vec<Option<f64>> = (0..dims).map(|d| (newest[b][dims + d] > 0.0).then_some(newest[b][d] as f64)).collect();
        let forecasts: Vec<Vec<Component>> = (0..dims)
            .map(|d| (0..predictions.len()).map(|m| Component::new(current[d], stays[m][b][d] as f64, means[m][b][d] as f64, log_sigmas[m][b][d] as f64)).collect())
            .collect();
        let spread: f64 = forecasts
            .iter()
            .zip(&current)
            .map(|(members, &now)| {
                let expected: Vec<f64> = members.iter().map(|c| c.expected(now)).collect();
                let mean = expected.iter().sum::<f64>() / k;
                (expected.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / k).sqrt()
            })
            .sum();
        summary.disagreement.push((spread / dims as f64) as f32);
        summary.death.push((deaths.iter().map(|member| member[b] as f64).sum::<f64>() / k) as f32);
        summary.forecasts.push(forecasts);
        summary.current.push(current);
    }
    Ok(summary)
}
