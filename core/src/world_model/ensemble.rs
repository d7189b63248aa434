//! The trained ensemble for inference, natively and in the worker: built
//! from the card (JSON) and the weights (safetensors bytes).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::card::ModelCard;
use super::cpu_inference::FastMember;
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

    /// The next step's clinical values from one member's predicted means
    /// (z units): per-step features replaced, statics carried over.
    pub fn predicted_values(&self, current: &[Option<f64>], means: &[f32]) -> Vec<Option<f64>> {
        let mut next = current.to_vec();
        for (d, &f) in self.card.layout.dynamic.iter().enumerate() {
            next[f] = Some(self.card.normaliser.value(f, means[d] as f64));
        }
        next
    }

    /// Every member's prediction for a batch of windows (`batch x window x input`).
    pub fn predict(&self, inputs: &Tensor) -> Result<Vec<Prediction>> {
        self.members.iter().map(|m| m.forward(inputs)).collect()
    }
}

/// Per-example summaries of an ensemble's predictions, in z units.
pub struct EnsembleSummary {
    /// Mean over members of the predicted means, `batch x dynamic`.
    pub mean: Vec<Vec<f32>>,
    /// Moment-matched predictive SD: sqrt(mean sigma^2 + variance of the means).
    pub sd: Vec<Vec<f32>>,
    /// SD of the members' means, averaged over features: the disagreement.
    pub disagreement: Vec<f32>,
    /// Mean over members of the predicted probability of death.
    pub death: Vec<f32>,
}

pub fn summarise(predictions: &[Prediction]) -> Result<EnsembleSummary> {
    let k = predictions.len() as f32;
    let means: Vec<Vec<Vec<f32>>> = predictions.iter().map(|p| p.mean.to_vec2()).collect::<Result<_>>()?;
    let sigmas: Vec<Vec<Vec<f32>>> = predictions.iter().map(|p| p.log_sigma.exp()?.to_vec2()).collect::<Result<_>>()?;
    let deaths: Vec<Vec<f32>> =
        predictions.iter().map(|p| candle_nn::ops::sigmoid(&p.outcome_logit)?.to_vec1()).collect::<Result<_>>()?;
    let (batch, dims) = (means[0].len(), means[0][0].len());
    let mut summary = EnsembleSummary { mean: vec![], sd: vec![], disagreement: vec![], death: vec![] };
    for b in 0..batch {
        let mut mean = vec![0.0; dims];
        let mut sd = vec![0.0; dims];
        let mut spread = 0.0;
        for d in 0..dims {
            let m: f32 = means.iter().map(|member| member[b][d]).sum::<f32>() / k;
            let between: f32 = means.iter().map(|member| (member[b][d] - m).powi(2)).sum::<f32>() / k;
            let within: f32 = sigmas.iter().map(|member| member[b][d].powi(2)).sum::<f32>() / k;
            mean[d] = m;
            sd[d] = (within + between).sqrt();
            spread += between.sqrt();
        }
        summary.mean.push(mean);
        summary.sd.push(sd);
        summary.disagreement.push(spread / dims as f32);
        summary.death.push(deaths.iter().map(|member| member[b]).sum::<f32>() / k);
    }
    Ok(summary)
}
