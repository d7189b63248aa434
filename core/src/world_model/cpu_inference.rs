//! The simulation's CPU forward pass, written for speed: plain `f32` rows,
//! each projection one `gemm` call with its bias already in the output
//! (in the browser our own kernel, `wasm_matmul.rs`), and each GRU's gates
//! fused into one pass with a vectorisable exponential.
//! Through candle's own ops every gate is a separate tensor op with a scalar
//! `exp` per element, and every op a copy into a new tensor; those, not the
//! matmuls, were most of a candidate sweep's time (docs/benchmarks.md).
//! Natively the gate loop is also compiled for AVX2 and picked at run time;
//! in the browser it is written in wasm SIMD (`simd128` below).
//! Training keeps candle's GRU (it needs gradients); `simulate.rs` tests that
//! both give the same predictions (1e-5).

use candle_core::Result;
use candle_nn::VarBuilder;

use super::model::LOG_SIGMA_RANGE;
use super::simulate::MemberOutput;

/// `exp`'s constants, shared by the scalar version and the browser's SIMD one.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two, so that k ln 2 is subtracted without rounding error.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the
/// low mantissa bits: bits(t) - bits(ROUND) = k exactly for |k| < 2^22.
const ROUND: f32 = 12_582_912.0;
/// The clamp that keeps 2^k a normal float.
const EXP_RANGE: (f32, f32) = (-87.0, 88.0);
/// The Taylor coefficients of e^r, highest degree first (Horner's order).
const EXP_TAYLOR: [f32; 7] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];

/// e^x for x in [-87, 88] (clamped outside), relative error below 1e-6:
/// round x / ln 2 to k, reduce to r in [-ln2/2, ln2/2], a degree-6 Taylor
/// polynomial for e^r, times 2^k built in the exponent bits. Branch-free and
/// without a float-to-int conversion (Rust's saturating `as i32` is scalar
/// code on x86), so loops over it vectorise (SSE2/AVX2 natively).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_RANGE.0, EXP_RANGE.1);
    let t = x * LOG2E + ROUND;
    let k = t - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = EXP_TAYLOR[1..].iter().fold(EXP_TAYLOR[0], |p, &c| c + r * p);
    let k_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(k_bits.wrapping_add(127) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// `x W^T + b` for a batch of rows, the weight stored transposed
/// (`inputs x outputs`, row-major) so that gemm reads it contiguously.
struct Projection {
    weight_t: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
    /// The same weights for the browser's own kernel (`weight_t` stays for
    /// `stack`).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    packed: super::wasm_matmul::PackedWeights,
}

impl Projection {
    fn load(vb: &VarBuilder, outputs: usize, inputs: usize, weight: &str, bias: &str) -> Result<Self> {
        let weight_t = vb.get((outputs, inputs), weight)?.t()?.contiguous()?.flatten_all()?.to_vec1()?;
        Ok(Self::new(weight_t, vb.get(outputs, bias)?.to_vec1()?, inputs, outputs))
    }

    fn new(weight_t: Vec<f32>, bias: Vec<f32>, inputs: usize, outputs: usize) -> Self {
        Self {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            packed: super::wasm_matmul::PackedWeights::pack(&weight_t, &bias, inputs, outputs),
            weight_t,
            bias,
            inputs,
            outputs,
        }
    }

    /// Heads side by side: one projection whose outputs are each part's in turn.
    fn stack(parts: &[Projection]) -> Self {
        let inputs = parts[0].inputs;
        assert!(parts.iter().all(|p| p.inputs == inputs), "stacked projections read the same inputs");
        let outputs: usize = parts.iter().map(|p| p.outputs).sum();
        let mut weight_t = Vec::with_capacity(inputs * outputs);
        for k in 0..inputs {
            for p in parts {
                weight_t.extend_from_slice(&p.weight_t[k * p.outputs..(k + 1) * p.outputs]);
            }
        }
        Self::new(weight_t, parts.iter().flat_map(|p| p.bias.iter().copied()).collect(), inputs, outputs)
    }

    /// `x W^T + b`, `rows x outputs` for `x` of `rows x inputs`, with gemm
    /// (natively its AVX-512 or AVX2 kernel with fused multiply-add, picked
    /// at run time).
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len() % self.inputs, 0, "rows of {} inputs", self.inputs);
        let rows = x.len() / self.inputs;
        let mut out = self.bias.repeat(rows);
        if rows > 0 {
            gemm_multiply_add(&self.weight_t, self.inputs, self.outputs, x, &mut out);
        }
        out
    }

    /// The same in the browser (`wasm_matmul.rs`): about 1.3x gemm's simd128
    /// kernel, 1.7x with relaxed SIMD's fused multiply-add.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len() % self.inputs, 0, "rows of {} inputs", self.inputs);
        self.packed.apply(x)
    }
}

/// `out += x W^T` with gemm, for `weight_t` of `inputs x outputs`, `x` of
/// `rows x inputs` and `out` of `rows x outputs`, all row-major. The native
/// projections' kernel; the browser benchmark also times it against ours.
pub fn gemm_multiply_add(weight_t: &[f32], inputs: usize, outputs: usize, x: &[f32], out: &mut [f32]) {
    let rows = x.len() / inputs;
    assert!(weight_t.len() == inputs * outputs && x.len() == rows * inputs && out.len() == rows * outputs, "weights {inputs} x {outputs}, x rows x {inputs}, out rows x {outputs}");
    // SAFETY: the three matrices are row-major (column stride 1, row stride
    // the width) with the lengths checked above.
    // out = 1 * out + 1 * x W^T.
    unsafe {
        gemm::gemm(
            rows,
            outputs,
            inputs,
            out.as_mut_ptr(),
            1,
            outputs as isize,
            true,
            x.as_ptr(),
            1,
            inputs as isize,
            weight_t.as_ptr(),
            1,
            outputs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One GRU layer's update of `state` (`rows x n`) from its input and
/// recurrent projections (`rows x 3n` each, biases included): the
/// candle-nn / PyTorch GRU with gates r, z, n.
#[inline(always)]
fn gates_body(state: &mut [f32], gi: &[f32], gh: &[f32], n: usize) {
    for ((h, gi), gh) in state.chunks_exact_mut(n).zip(gi.chunks_exact(3 * n)).zip(gh.chunks_exact(3 * n)) {
        // Equal-length slices, so the loop below has no bounds checks.
        let (i_r, i_z, i_n) = (&gi[..n], &gi[n..2 * n], &gi[2 * n..3 * n]);
        let (h_r, h_z, h_n) = (&gh[..n], &gh[n..2 * n], &gh[2 * n..3 * n]);
        for j in 0..n {
            let r = sigmoid(i_r[j] + h_r[j]);
            let z = sigmoid(i_z[j] + h_z[j]);
            let candidate = tanh(i_n[j] + r * h_n[j]);
            h[j] = z * h[j] + (1.0 - z) * candidate;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gates_avx2(state: &mut [f32], gi: &[f32], gh: &[f32], n: usize) {
    gates_body(state, gi, gh, n)
}

fn gates(state: &mut [f32], gi: &[f32], gh: &[f32], n: usize) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if n % 4 == 0 {
        return simd128::gates(state, gi, gh, n);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { gates_avx2(state, gi, gh, n) };
    }
    gates_body(state, gi, gh, n)
}

/// The gates written in wasm SIMD. The same loop left to LLVM's vectoriser
/// took 0.31 ms for 400 rows of 128 in the relaxed-SIMD build and this one
/// 0.235 (medians of 200 in headless Chromium); in the sweep the
/// auto-vectorised loop of the baseline build took 2.5 times its own
/// microbenchmark, so the browser no longer depends on how LLVM compiles it.
/// The arithmetic is `exp`'s above, one vector of 4 units at a time.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    use super::super::wasm_matmul::madd;

    #[inline(always)]
    fn exp(x: v128) -> v128 {
        use super::{EXP_RANGE, EXP_TAYLOR, LN2_HI, LN2_LO, LOG2E, ROUND};
        let c = f32x4_splat;
        // pmin / pmax: one instruction each, unlike min / max (NaN rules).
        let x = f32x4_pmax(f32x4_pmin(x, c(EXP_RANGE.1)), c(EXP_RANGE.0));
        let t = f32x4_add(f32x4_mul(x, c(LOG2E)), c(ROUND));
        let k = f32x4_sub(t, c(ROUND));
        let r = f32x4_sub(f32x4_sub(x, f32x4_mul(k, c(LN2_HI))), f32x4_mul(k, c(LN2_LO)));
        let p = EXP_TAYLOR[1..].iter().fold(c(EXP_TAYLOR[0]), |p, &coefficient| madd(r, p, c(coefficient)));
        let k_bits = i32x4_sub(t, i32x4_splat(ROUND.to_bits() as i32));
        f32x4_mul(p, i32x4_shl(i32x4_add(k_bits, i32x4_splat(127)), 23))
    }

    #[inline(always)]
    fn sigmoid(x: v128) -> v128 {
        let one = f32x4_splat(1.0);
        f32x4_div(one, f32x4_add(one, exp(f32x4_neg(x))))
    }

    /// `gates_body` for `n` a multiple of 4.
    pub fn gates(state: &mut [f32], gi: &[f32], gh: &[f32], n: usize) {
        assert!(n % 4 == 0 && state.len() % n == 0 && gi.len() == 3 * state.len() && gh.len() == gi.len(), "rows of {n} units, gates of 3 x {n}");
        for ((h, gi), gh) in state.chunks_exact_mut(n).zip(gi.chunks_exact(3 * n)).zip(gh.chunks_exact(3 * n)) {
            for j in (0..n).step_by(4) {
                // SAFETY: j + 4 <= n, so every load and the store stay inside
                // `h` (n floats) and `gi` / `gh` (3n floats).
                unsafe {
                    let load = |s: &[f32], at: usize| v128_load(s.as_ptr().add(at) as *const v128);
                    let r = sigmoid(f32x4_add(load(gi, j), load(gh, j)));
                    let z = sigmoid(f32x4_add(load(gi, n + j), load(gh, n + j)));
                    let before = f32x4_add(load(gi, 2 * n + j), f32x4_mul(r, load(gh, 2 * n + j)));
                    // tanh(v) = 2 sigmoid(2v) - 1
                    let candidate = f32x4_sub(f32x4_mul(f32x4_splat(2.0), sigmoid(f32x4_add(before, before))), f32x4_splat(1.0));
                    // z h + (1 - z) candidate
                    let h_old = load(h, j);
                    let h_new = f32x4_add(f32x4_mul(z, h_old), f32x4_mul(f32x4_sub(f32x4_splat(1.0), z), candidate));
                    v128_store(h.as_mut_ptr().add(j) as *mut v128, h_new);
                }
            }
        }
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

    /// One step for every row of `x` (`rows x inputs`).
    fn step(&self, x: &[f32], h: &mut [f32]) {
        let (gi, gh) = (self.input.apply(x), self.recurrent.apply(h));
        gates(h, &gi, &gh, self.hidden);
    }
}

/// One member, for inference only.
pub struct FastMember {
    gru1: Gru,
    gru2: Gru,
    outcome_gru: Gru,
    /// stay logit, mean and log sigma side by side: one product per step.
    dynamics: Projection,
    outcome: Projection,
    dynamic_dim: usize,
    input_dim: usize,
}

/// A member's recurrent state for a batch of rows (`rows x hidden` each).
#[derive(Clone, Debug)]
pub struct FastState {
    rows: usize,
    h1: Vec<f32>,
    h2: Vec<f32>,
    outcome: Vec<f32>,
}

impl FastState {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `i` of the result is row `rows[i]` of `parts` stacked in order:
    /// reorders and repeats rows (many candidates from one context).
    pub fn select(parts: &[FastState], rows: &[u32]) -> FastState {
        let pick = |field: fn(&FastState) -> &Vec<f32>| -> Vec<f32> {
            let width = parts.first().map_or(0, |p| field(p).len() / p.rows.max(1));
            let stacked: Vec<f32> = parts.iter().flat_map(|p| field(p).iter().copied()).collect();
            rows.iter().flat_map(|&r| stacked[r as usize * width..(r as usize + 1) * width].iter().copied()).collect()
        };
        FastState { rows: rows.len(), h1: pick(|s| &s.h1), h2: pick(|s| &s.h2), outcome: pick(|s| &s.outcome) }
    }
}

impl FastMember {
    pub fn load(vb: VarBuilder, input_dim: usize, dynamic_dim: usize, hidden: usize, outcome_hidden: usize) -> Result<Self> {
        let head = |name: &str| Projection::load(&vb.pp(name), dynamic_dim, hidden, "weight", "bias");
        Ok(Self {
            gru1: Gru::load(vb.pp("gru1"), input_dim, hidden)?,
            gru2: Gru::load(vb.pp("gru2"), hidden, hidden)?,
            outcome_gru: Gru::load(vb.pp("outcome_gru"), input_dim, outcome_hidden)?,
            dynamics: Projection::stack(&[head("stay_logit")?, head("mean")?, head("log_sigma")?]),
            outcome: Projection::load(&vb.pp("outcome"), 1, outcome_hidden, "weight", "bias")?,
            dynamic_dim,
            input_dim,
        })
    }

    pub fn zero_state(&self, rows: usize) -> FastState {
        FastState {
            rows,
            h1: vec![0.0; rows * self.gru1.hidden],
            h2: vec![0.0; rows * self.gru2.hidden],
            outcome: vec![0.0; rows * self.outcome_gru.hidden],
        }
    }

    /// Read one step: `x` is `rows x input_dim`, one row per state row.
    pub fn step(&self, x: &[f32], state: &mut FastState) {
        assert_eq!(x.len(), state.rows * self.input_dim, "one input row of {} per state row", self.input_dim);
        self.gru1.step(x, &mut state.h1);
        self.gru2.step(&state.h1, &mut state.h2);
        self.outcome_gru.step(x, &mut state.outcome);
    }

    pub fn heads(&self, state: &FastState) -> MemberOutput {
        let d = self.dynamic_dim;
        let all = self.dynamics.apply(&state.h2);
        let mut output = MemberOutput {
            stay_logit: Vec::with_capacity(state.rows * d),
            mean: Vec::with_capacity(state.rows * d),
            log_sigma: Vec::with_capacity(state.rows * d),
            outcome_logit: self.outcome.apply(&state.outcome),
        };
        for row in all.chunks_exact(3 * d) {
            output.stay_logit.extend_from_slice(&row[..d]);
            output.mean.extend_from_slice(&row[d..2 * d]);
            output.log_sigma.extend(row[2 * d..].iter().map(|v| v.clamp(LOG_SIGMA_RANGE.0 as f32, LOG_SIGMA_RANGE.1 as f32)));
        }
        output
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
