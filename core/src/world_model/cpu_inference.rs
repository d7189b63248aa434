//! The simulation's CPU forward pass, written for speed: candle's matmul for
//! the projections, then each GRU's gates fused into one pass over plain
//! `f32` slices with a vectorisable exponential. Through candle's own ops
//! every gate is a separate tensor op with a scalar `exp` per element, and
//! those, not the matmuls, were most of a candidate sweep's time
//! (docs/benchmarks.md). Training keeps candle's GRU (it needs gradients);
//! `simulate.rs` tests that both give the same predictions (1e-5).

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::model::LOG_SIGMA_RANGE;
use super::simulate::MemberOutput;

/// e^x for x in [-87, 88] (clamped outside), relative error below 1e-6:
/// round x / ln 2 to k, reduce to r in [-ln2/2, ln2/2], a degree-6 Taylor
/// polynomial for e^r, times 2^k built in the exponent bits. Branch-free, so
/// loops over it vectorise (SSE2 natively, simd128 in the browser).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// `x W^T` with the weight stored transposed (`inputs x outputs`); the bias
/// is added in the fused gate loop.
struct Projection {
    weight_t: Tensor,
    bias: Vec<f32>,
}

impl Projection {
    fn load(vb: &VarBuilder, outputs: usize, inputs: usize, weight: &str, bias: &str) -> Result<Self> {
        Ok(Self { weight_t: vb.get((outputs, inputs), weight)?.t()?.contiguous()?, bias: vb.get(outputs, bias)?.to_vec1()? })
    }

    fn apply(&self, x: &Tensor) -> Result<Vec<f32>> {
        x.matmul(&self.weight_t)?.flatten_all()?.to_vec1()
    }
}

struct Gru {
    input: Projection,
    recurrent: Projection,
    hidden: usize,
}

impl Gru {
    fn load(vb: VarBuilder, inputs: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            input: Projection::load(&vb, 3 * hidden, inputs, "weight_ih_l0", "bias_ih_l0")?,
            recurrent: Projection::load(&vb, 3 * hidden, hidden, "weight_hh_l0", "bias_hh_l0")?,
            hidden,
        })
    }

    /// One step for every row: the candle-nn / PyTorch GRU (gates r, z, n).
    fn step(&self, x: &Tensor, h: &mut Tensor) -> Result<()> {
        let gi = self.input.apply(x)?;
        let gh = self.recurrent.apply(h)?;
        let mut state: Vec<f32> = h.flatten_all()?.to_vec1()?;
        let n = self.hidden;
        let (bi, bh) = (&self.input.bias, &self.recurrent.bias);
        for ((row, gi), gh) in state.chunks_mut(n).zip(gi.chunks(3 * n)).zip(gh.chunks(3 * n)) {
            for j in 0..n {
                let r = sigmoid(gi[j] + bi[j] + gh[j] + bh[j]);
                let z = sigmoid(gi[n + j] + bi[n + j] + gh[n + j] + bh[n + j]);
                let candidate = tanh(gi[2 * n + j] + bi[2 * n + j] + r * (gh[2 * n + j] + bh[2 * n + j]));
                row[j] = z * row[j] + (1.0 - z) * candidate;
            }
        }
        *h = Tensor::from_vec(state, h.shape(), &Device::Cpu)?;
        Ok(())
    }
}

/// One member, for inference only.
pub struct FastMember {
    gru1: Gru,
    gru2: Gru,
    outcome_gru: Gru,
    stay_logit: candle_nn::Linear,
    mean: candle_nn::Linear,
    log_sigma: candle_nn::Linear,
    outcome: candle_nn::Linear,
}

/// A member's recurrent state for a batch of rows.
#[derive(Clone)]
pub struct FastState {
    h1: Tensor,
    h2: Tensor,
    outcome: Tensor,
}

impl FastState {
    /// Row `i` of the result is row `rows[i]` of `parts` stacked in order:
    /// reorders and repeats rows (many candidates from one context).
    pub fn select(parts: &[FastState], rows: &[u32]) -> Result<FastState> {
        let index = Tensor::new(rows, &Device::Cpu)?;
        let pick = |field: fn(&FastState) -> &Tensor| -> Result<Tensor> {
            let stacked: Vec<&Tensor> = parts.iter().map(field).collect();
            Tensor::cat(&stacked, 0)?.index_select(&index, 0)
        };
        Ok(FastState { h1: pick(|s| &s.h1)?, h2: pick(|s| &s.h2)?, outcome: pick(|s| &s.outcome)? })
    }
}

impl FastMember {
    pub fn load(vb: VarBuilder, input_dim: usize, dynamic_dim: usize, hidden: usize, outcome_hidden: usize) -> Result<Self> {
        Ok(Self {
            gru1: Gru::load(vb.pp("gru1"), input_dim, hidden)?,
            gru2: Gru::load(vb.pp("gru2"), hidden, hidden)?,
            outcome_gru: Gru::load(vb.pp("outcome_gru"), input_dim, outcome_hidden)?,
            stay_logit: candle_nn::linear(hidden, dynamic_dim, vb.pp("stay_logit"))?,
            mean: candle_nn::linear(hidden, dynamic_dim, vb.pp("mean"))?,
            log_sigma: candle_nn::linear(hidden, dynamic_dim, vb.pp("log_sigma"))?,
            outcome: candle_nn::linear(outcome_hidden, 1, vb.pp("outcome"))?,
        })
    }

    pub fn zero_state(&self, rows: usize) -> Result<FastState> {
        let zeros = |n: usize| Tensor::zeros((rows, n), candle_core::DType::F32, &Device::Cpu);
        Ok(FastState { h1: zeros(self.gru1.hidden)?, h2: zeros(self.gru2.hidden)?, outcome: zeros(self.outcome_gru.hidden)? })
    }

    /// Read one step (`rows x input_dim`).
    pub fn step(&self, x: &Tensor, state: &mut FastState) -> Result<()> {
        self.gru1.step(x, &mut state.h1)?;
        self.gru2.step(&state.h1, &mut state.h2)?;
        self.outcome_gru.step(x, &mut state.outcome)
    }

    pub fn heads(&self, state: &FastState) -> Result<MemberOutput> {
        let log_sigma = self.log_sigma.forward(&state.h2)?.clamp(LOG_SIGMA_RANGE.0 as f32, LOG_SIGMA_RANGE.1 as f32)?;
        Ok(MemberOutput {
            stay_logit: self.stay_logit.forward(&state.h2)?.flatten_all()?.to_vec1()?,
            mean: self.mean.forward(&state.h2)?.flatten_all()?.to_vec1()?,
            log_sigma: log_sigma.flatten_all()?.to_vec1()?,
            outcome_logit: self.outcome.forward(&state.outcome)?.flatten_all()?.to_vec1()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_exponential_is_accurate_over_the_range_the_gates_use() {
        let mut worst: f64 = 0.0;
        for i in -8000..=8000 {
            let x = i as f32 / 100.0;
            let exact = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - exact).abs() / exact);
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(exp(-200.0), exp(-87.0), "clamped below");
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7 && (tanh(0.3) - 0.3f32.tanh()).abs() < 1e-6);
        assert!((tanh(-9.0) + 1.0).abs() < 1e-6 && (tanh(9.0) - 1.0).abs() < 1e-6);
    }
}
